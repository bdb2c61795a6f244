"""YOLOv6's P6 models (N6/S6/M6/L6, four detection levels to stride 64): ``import-yolov6`` gives Ultralytics models
that compute what YOLOv6's own code computes, with YOLOv6's head (``--head yolov6``) or a new YOLOv8 head.

The networks are YOLOv6 0.3.0's own P6 classes (PyPI ``yolov6detect``), with BN statistics measured on the photos,
random BN affine values and prediction weights, saved as YOLOv6 saves them, in 0.3.x and 0.4.x naming
(``yolov6_zoo_models.py``). On Ultralytics' bus.jpg and zidane.jpg letterboxed by YOLOv6's code, every backbone and
neck output is compared tensor for tensor, and YOLOv6's inference output before and after NMS; then ONNX Runtime
running the export, and one fine-tuning epoch. The default run takes N6 at full size and the M6 and L6 designs at
N's depth and width; ``YOLOV6_IMPORT_ALL=1`` adds S6, M6 and L6 at full size.
"""

import os

import pytest
import torch
from torch import nn
import yaml

pytest.importorskip("yolov6.models.yolo", reason="YOLOv6's code is not installed: pip install --no-deps "
                                                  "yolov6detect==0.4.1 tqdm (the test extra lists tqdm)")
import yolov6_models as ym  # noqa: E402
import yolov6_zoo_models as zoo  # noqa: E402
from ultralytics import YOLO  # noqa: E402

from yolov8_efficientrep.checkpoints import load_checkpoint  # noqa: E402
from yolov8_efficientrep.fusion import fuse_model, sample_image  # noqa: E402
from yolov8_efficientrep.graphs import onnx_unfused_nodes  # noqa: E402
from yolov8_efficientrep.heads import EffiDeHead  # noqa: E402
from yolov8_efficientrep.importer.forms import FORMS  # noqa: E402

from helpers import REPO, RTOL, first_then_slow, relative_difference  # noqa: E402

SIZE = 256  # the photos' longer side: P6 maps of 4x4 and 4x3 pixels
# (design, size, naming) -> the whole model the import must pick, the YOLOv6 head tensors it must leave out
CASES = {
    "N6, 0.3.x": (("n6", "n", "0.3"), "yolov6n-repbifpan-p6", {"proj", "proj_conv"}),
    "M6 design at N size, 0.3.x (DFL)": (("m6", "n", "0.3"), "yolov6n-cspbifpan-p6", set()),
    "L6 design at N size, 0.4.x (DFL, SiLU layers)": (("l6", "n", "0.4"), "yolov6n-cspbifpan-silu-p6", set()),
}
MORE_CASES = {  # every published P6 size at full size
    "S6, 0.3.x": (("n6", "s", "0.3"), "yolov6s-repbifpan-p6", {"proj", "proj_conv"}),
    "M6, 0.3.x": (("m6", "m", "0.3"), "yolov6m-cspbifpan-p6", set()),
    "L6, 0.3.x": (("l6", "l", "0.3"), "yolov6l-cspbifpan-silu-p6", set()),
    "L6, 0.4.x": (("l6", "l", "0.4"), "yolov6l-cspbifpan-silu-p6", set()),
}
if os.environ.get("YOLOV6_IMPORT_ALL") == "1":
    CASES.update(MORE_CASES)
N6, L6 = "N6, 0.3.x", "L6 design at N size, 0.4.x (DFL, SiLU layers)"
P6_CONFIGS = ("repbifpan-p6", "cspbifpan-p6", "cspbifpan-silu-p6")


@pytest.fixture(scope="module")
def photos() -> dict[str, torch.Tensor]:
    return {name: zoo.photo(name, SIZE) for name in zoo.PHOTOS}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Return a function: case -> (YOLOv6's network, its file, the --head yolov6 import, what the command printed)."""
    made = {}

    def get(case: str):
        if case not in made:
            (design, size, naming), _, _ = CASES[case]
            model = zoo.calibrated(ym.build(zoo.p6_config(design, size), naming), SIZE)
            folder = tmp_path_factory.mktemp("p6")
            source = zoo.save(model, folder / f"yolov6{size}6.pt", naming)
            output, printed = zoo.import_with_head(source)
            made[case] = model, source, output, printed
        return made[case]

    return get


@pytest.mark.parametrize("case", first_then_slow(CASES))
def test_p6_import_with_its_head_gives_yolov6s_features_and_detections(case, imported, photos):
    yolov6, _, output, printed = imported(case)
    (design, size, naming), model_name, dropped = CASES[case]
    assert printed.startswith(f"yolov6{size}6 (v3.0, ") and f"-> {model_name}" in printed
    ours, checkpoint = load_checkpoint(output)
    head = ours.model[-1]
    assert type(head) is EffiDeHead and head.nl == 4 and head.stride.tolist() == [8, 16, 32, 64]
    assert {key.split(".")[1] for key in checkpoint["yolov6_import"]["dropped"]} == dropped
    form = next(form for form in FORMS if form.whole_config == model_name.replace(f"yolov6{size}", "yolov6", 1))
    layers = form.backbone_outputs + form.neck_outputs

    agreement = zoo.whole_model_agreement(ours, yolov6, layers, photos)  # 5 backbone, 4 neck outputs
    print(f"{case}: {printed.splitlines()[0]}\n  {agreement}")


def test_p6_import_under_a_yolov8_head_keeps_every_backbone_and_neck_tensor(imported, photos, tmp_path):
    yolov6, source, _, _ = imported(L6)
    form = next(form for form in FORMS if form.config == "yolov8-cspbifpan-silu-p6")
    ours, _, printed, difference = zoo.import_under_a_new_head(
        source, tmp_path / "yolov8n6.pt", form.backbone_outputs + form.neck_outputs, yolov6, photos["bus.jpg"])
    assert printed.startswith("yolov6n6 (v3.0, CSPBep-P6 + CSPRepBiFPAN-P6, Conv+BN+SiLU) -> "
                              "yolov8n-cspbifpan-silu-p6: backbone 242/242, neck 378/378 tensors; Detect head "
                              "initialized for nc=4"), printed
    assert type(ours.model[-1]).__name__ == "Detect" and ours.model[-1].nl == 4
    print(f"{printed.splitlines()[0]}; features {difference:.1e}")


@pytest.mark.slow  # the development run exports YOLOv6's detection head (test_yolov6_head.py)
def test_p6_onnx_export_gives_yolov6s_detections_in_onnxruntime(imported):
    yolov6, _, output, _ = imported(N6)
    onnx_file = YOLO(output).export(format="onnx", imgsz=SIZE, device="cpu")  # fused and checked by the plugin
    assert onnx_unfused_nodes(onnx_file) == []
    images = [zoo.photo(name, SIZE, rect=False) for name in zoo.PHOTOS]  # the export's fixed square input
    print(f"ONNX Runtime vs YOLOv6, {N6}: {zoo.onnx_agreement(onnx_file, yolov6, images)}")


@pytest.mark.slow  # it trains
def test_one_fine_tuning_epoch_of_the_p6_import_runs(imported, shapes_data, tmp_path):
    _, _, output, _ = imported(N6)
    losses = zoo.one_fine_tuning_epoch(output, shapes_data, tmp_path)
    print(f"one epoch from {N6} at imgsz 64: losses {losses}")


@pytest.mark.parametrize("stem", [f"yolov6-{name}" for name in P6_CONFIGS])
def test_p6_configs_build_from_scratch_and_fuse_to_the_same_outputs(stem, randomize_bn):
    """The yolov6-* configs from scratch, and their rows against the yolov8-* twins' (built by the imports)."""
    model = YOLO(REPO / "cfg" / f"{stem.replace('-', 'n-', 1)}.yaml").model
    assert model.stride.tolist() == [8, 16, 32, 64]
    randomize_bn(model)
    for branch in (*model.model[-1].cv2, *model.model[-1].cv3):  # predictions that read the features (init: zero)
        nn.init.normal_(branch[-1].weight, std=0.1)
    image = sample_image(128, 128)
    fused = fuse_model(model, imgsz=128)  # a fused copy, checked by the plugin; compared again here
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        assert relative_difference(fused(image)[0], model(image)[0]) <= RTOL
    ours = yaml.safe_load((REPO / "cfg" / f"{stem}.yaml").read_text())
    theirs = yaml.safe_load((REPO / "cfg" / f"{stem.replace('yolov6-', 'yolov8-')}.yaml").read_text())
    *rows, last = ours["backbone"] + ours["head"]
    assert rows == (theirs["backbone"] + theirs["head"])[:-1] and ours["scales"] == theirs["scales"]
    assert theirs["head"][-1] == [[35, 38, 41, 44], 1, "Detect", ["nc"]]
    assert last == [[35, 38, 41, 44], 1, "EffiDeHead", ["nc", 0 if "rep" in stem else 16]]
