"""YOLOv6-Lite S/M/L (YOLOv6 0.4.0): the plugin's Lite blocks fuse to the same outputs, the yolov6-lite configs build
from scratch with YOLOv6-Lite's published parameter counts, and ``import-yolov6`` gives Ultralytics models that
compute what YOLOv6-Lite computes, with its head (``--head yolov6``) or a new YOLOv8 head.

The YOLOv6-Lite networks are stand-ins reproducing tag 0.4.0's classes (``yolov6_zoo_models.py``; the 0.3.0 code on
PyPI has none of them) with YOLOv6 0.3.0's own weight initialization, anchors and box decoding, BN statistics measured
on the photos, random BN affine values, conv biases and prediction weights, saved as YOLOv6 0.4.x saves them. On
Ultralytics' bus.jpg and zidane.jpg letterboxed by YOLOv6's code to 320 (YOLOv6-Lite's size), every backbone and neck
output and YOLOv6's inference output before and after NMS are compared; then ONNX Runtime running the export, and one
fine-tuning epoch.
"""

import copy

import pytest
import torch
from torch import nn

from yolov8_efficientrep.lite_blocks import DPBlock, LiteCSPBlock, LiteEffiBlockS1, LiteEffiBlockS2, SplitAdd

from helpers import REPO, RTOL, first_then_slow, relative_difference, yolov6_module

SIZE = 320  # YOLOv6-Lite's published input size


def ultralytics_fuse(block: nn.Module) -> nn.Module:
    """Return a copy of ``block`` fused by Ultralytics' own ``BaseModel.fuse()`` (Conv+BN folding, as export does)."""
    from ultralytics.nn.tasks import BaseModel

    wrapper = BaseModel()
    wrapper.model = nn.Sequential(copy.deepcopy(block))
    return wrapper.fuse(verbose=False).model[0]


@pytest.mark.parametrize("block, c1", [
    (DPBlock(16, 16, 5, 1), 16), (DPBlock(16, 32, 3, 2), 16), (LiteEffiBlockS1(32, 32, 16), 32),
    (LiteEffiBlockS2(24, 32, 16), 24), (LiteEffiBlockS2(32, 48, 24, s=1), 32), (LiteCSPBlock(32, 16, 5), 32),
], ids=lambda value: type(value).__name__ if isinstance(value, nn.Module) else str(value))
def test_lite_blocks_fold_their_bn_to_the_same_outputs(block, c1, randomize_bn):
    block = randomize_bn(block)
    x = torch.randn(2, c1, 20, 20)
    with torch.no_grad():
        unfused = block(x)
        fused_block = ultralytics_fuse(block)
        fused = fused_block(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused_block.modules())
    assert relative_difference(fused, unfused) < RTOL


def test_lite_s1_block_keeps_half_the_channels_and_interleaves_them(randomize_bn):
    block = randomize_bn(LiteEffiBlockS1(8, 8, 4))
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        y = block(x)
    assert torch.equal(y[:, 0::2], x[:, :4])  # the first half passes through, on the even channels after the shuffle
    assert torch.equal(SplitAdd(8, 4)(x), x[:, :4] + x[:, 4:])


@pytest.mark.parametrize("build, message", [
    (lambda: LiteEffiBlockS1(16, 32, 8), "c1 must equal c2"),
    (lambda: LiteEffiBlockS1(15, 15, 8), "c1 must be even"),
    (lambda: LiteEffiBlockS2(16, 31, 8), "c2 must be even"),
    (lambda: DPBlock(16, 16, 4), "kernel k must be an odd positive integer"),
    (lambda: SplitAdd(16, 16), "twice the output's channels"),
])
def test_lite_blocks_reject_bad_arguments_by_name(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# --- the configs and the import (needs YOLOv6's code) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo():
    return yolov6_module("yolov6_zoo_models")


@pytest.mark.parametrize("size, params", [("s", 0.55), ("m", 0.79), ("l", 1.09)])
def test_lite_configs_build_from_scratch_with_yolov6s_counts_and_fuse_to_the_same_outputs(size, params, randomize_bn):
    """Built from scratch; the import tests prove the layers YOLOv6's own, this the published size, and fusion."""
    import yaml
    from ultralytics import YOLO

    from yolov8_efficientrep.fusion import fuse_model, sample_image

    model = YOLO(REPO / "cfg" / f"yolov6-lite-{size}.yaml").model
    assert model.stride.tolist() == [8, 16, 32, 64] and type(model.model[-1]).__name__ == "LiteEffiDeHead"
    for branch in (*model.model[-1].cv2, *model.model[-1].cv3):  # predictions that read the features (init: zero)
        nn.init.normal_(branch[-1].weight, std=0.1)
    fused = fuse_model(randomize_bn(model), imgsz=128)  # checked by the plugin; compared again below
    count = sum(p.numel() for p in fused.parameters())
    assert abs(count / 1e6 - params) <= 0.015, count  # YOLOv6-Lite's published count, in millions (2 decimals)
    image = sample_image(128, 128)
    with torch.no_grad():
        assert relative_difference(fused(image)[0], model(image)[0]) <= RTOL
    ours = yaml.safe_load((REPO / "cfg" / f"yolov6-lite-{size}.yaml").read_text())
    theirs = yaml.safe_load((REPO / "cfg" / f"yolov8-lite-{size}.yaml").read_text())
    assert ours["backbone"] + ours["head"][:-1] == theirs["backbone"] + theirs["head"][:-1]
    assert theirs["head"][-1] == [[16, 19, 22, 26], 1, "Detect", ["nc"]]
    assert ours["head"][-1] == [[16, 19, 22, 26], 1, "LiteEffiDeHead", ["nc"]]


@pytest.fixture(scope="module")
def imported(zoo, tmp_path_factory):
    """Return a function: size -> (YOLOv6-Lite's network, its file, the --head yolov6 import, what was printed)."""
    made = {}

    def get(size: str):
        if size not in made:
            model = zoo.calibrated(zoo.build_lite(size), SIZE)
            folder = tmp_path_factory.mktemp("lite")
            source = zoo.save_04(model, folder / f"yolov6lite_{size}.pt")
            output, printed = zoo.import_with_head(source)
            made[size] = model, source, output, printed
        return made[size]

    return get


@pytest.mark.parametrize("size", first_then_slow("sml"))
def test_lite_import_with_its_head_gives_yolov6s_features_and_detections(size, zoo, imported):
    from yolov8_efficientrep.checkpoints import load_checkpoint
    from yolov8_efficientrep.heads import LiteEffiDeHead
    from yolov8_efficientrep.importer.forms import FORMS

    yolov6, _, output, printed = imported(size)
    assert printed.startswith(f"yolov6lite_{size} (0.4.0, Lite_EffiBackbone + Lite_EffiNeck) -> yolov6-lite-{size}: ")
    assert "YOLOv6's LiteEffiDeHead for nc=80 (reg_preds: plain distances)" in printed
    ours, checkpoint = load_checkpoint(output)
    assert type(ours.model[-1]) is LiteEffiDeHead and checkpoint["yolov6_import"]["dropped"] == []
    form = next(form for form in FORMS if form.config == f"yolov8-lite-{size}")
    images = {name: zoo.photo(name, SIZE) for name in zoo.PHOTOS}
    agreement = zoo.whole_model_agreement(ours, yolov6, form.backbone_outputs + form.neck_outputs, images)
    print(f"YOLOv6-Lite-{size.upper()}: {printed.splitlines()[0]}\n  {agreement}")  # 3 backbone, 4 neck outputs


def test_lite_import_under_a_yolov8_head_keeps_every_backbone_and_neck_tensor(zoo, imported, tmp_path):
    yolov6, source, _, _ = imported("s")
    ours, _, printed, difference = zoo.import_under_a_new_head(
        source, tmp_path / "yolov8-lite-s.pt", (3, 5, 7, 16, 19, 22, 26), yolov6, zoo.photo("bus.jpg", SIZE))
    assert printed.startswith("yolov6lite_s (0.4.0, Lite_EffiBackbone + Lite_EffiNeck) -> yolov8-lite-s: backbone "
                              "410/410, neck 226/226 tensors; Detect head initialized for nc=4"), printed
    assert type(ours.model[-1]).__name__ == "Detect" and ours.model[-1].nl == 4
    print(f"{printed.splitlines()[0]}; features {difference:.1e}")


@pytest.mark.slow  # the development run exports YOLOv6's detection head (test_yolov6_head.py)
def test_lite_onnx_export_gives_yolov6s_detections_in_onnxruntime(zoo, imported):
    from ultralytics import YOLO

    from yolov8_efficientrep.graphs import onnx_unfused_nodes

    yolov6, _, output, _ = imported("s")
    onnx_file = YOLO(output).export(format="onnx", imgsz=SIZE, device="cpu")  # fused and checked by the plugin
    assert onnx_unfused_nodes(onnx_file) == []
    images = [zoo.photo(name, SIZE, rect=False) for name in zoo.PHOTOS]  # the export's fixed square input
    print(f"ONNX Runtime vs YOLOv6-Lite-S: {zoo.onnx_agreement(onnx_file, yolov6, images)}")


@pytest.mark.slow  # it trains
def test_one_fine_tuning_epoch_of_the_lite_import_runs(zoo, imported, shapes_data, tmp_path):
    _, _, output, _ = imported("s")
    losses = zoo.one_fine_tuning_epoch(output, shapes_data, tmp_path)
    print(f"one epoch from YOLOv6-Lite-S at imgsz 64: losses {losses}")
