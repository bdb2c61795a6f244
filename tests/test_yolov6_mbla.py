"""YOLOv6 0.4's MBLA models (S/M/L/X_mbla: the v3.0 CSP design with Multi-Branch Layer Aggregation stages):
``MBLABlock`` lays out its branches as YOLOv6 does and folds its BN to the same outputs, the yolov6-mbla config builds
from scratch, and ``import-yolov6`` gives Ultralytics models that compute what YOLOv6 computes, with its head
(``--head yolov6``) or a new YOLOv8 head.

The networks are YOLOv6 0.3.0's own CSP backbone and neck (PyPI ``yolov6detect``) with its BepC3 stages replaced by
stand-ins of tag 0.4.0's ``MBLABlock`` and ``BottleRep3`` (``yolov6_zoo_models.py``), in 0.4.x's names, BN statistics
measured on the photos, random BN affine values, shortcut weights and prediction weights, saved as YOLOv6 0.4.x saves
them. On Ultralytics' bus.jpg and zidane.jpg letterboxed by YOLOv6's code, every backbone and neck output and YOLOv6's
inference output before and after NMS are compared; then ONNX Runtime running the export, and one fine-tuning epoch.
The default run imports S_mbla at full size; ``YOLOV6_IMPORT_ALL=1`` adds M, L and X (X: the three-branch stages of
depth 1.0).
"""

import copy
import os

import pytest
import torch
from torch import nn

from yolov8_efficientrep.csp_blocks import MBLABlock, mbla_branches

from helpers import REPO, RTOL, first_then_slow, relative_difference, yolov6_module

SIZE = 256
SIZES = ["s", "m", "l", "x"] if os.environ.get("YOLOV6_IMPORT_ALL") == "1" else ["s"]


def ultralytics_fuse(block: nn.Module) -> nn.Module:
    """Return a copy of ``block`` fused by Ultralytics' own ``BaseModel.fuse()`` (Conv+BN folding, as export does)."""
    from ultralytics.nn.tasks import BaseModel

    wrapper = BaseModel()
    wrapper.model = nn.Sequential(copy.deepcopy(block))
    return wrapper.fuse(verbose=False).model[0]


def test_mbla_block_lays_out_its_branches_as_yolov6_and_folds_its_bn(randomize_bn):
    assert [mbla_branches(n) for n in (1, 2, 4, 6, 8, 12, 16)] == [
        [0, 1], [0, 1], [0, 1, 2], [0, 2, 3], [0, 2, 4], [0, 4, 6], [0, 4, 8]]
    block = randomize_bn(MBLABlock(32, 32, 8, 0.5, "ConvBNAct", "silu"))
    assert [len(chain) for chain in block.m] == [2, 4] and block.cv1.conv.out_channels == 3 * 16
    assert block.cv2.conv.in_channels == (2 + 4 + 3) * 16  # every map: three branch inputs and six unit outputs
    x = torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        unfused = block(x)
        fused = ultralytics_fuse(block)(x)
    assert relative_difference(fused, unfused) < RTOL


@pytest.fixture(scope="module")
def zoo():
    return yolov6_module("yolov6_zoo_models")


def test_mbla_block_matches_yolov6s_branches_at_every_depth(zoo):
    for n in range(1, 17):
        assert [len(chain) for chain in zoo.MBLABlock(16, 16, n).m] == mbla_branches(n)[1:], n


def test_mbla_config_builds_from_scratch_and_fuses_to_the_same_outputs(randomize_bn):
    import yaml
    from ultralytics import YOLO

    from yolov8_efficientrep.fusion import fuse_model, sample_image

    model = YOLO(REPO / "cfg" / "yolov6s-mbla.yaml").model
    for branch in (*model.model[-1].cv2, *model.model[-1].cv3):  # predictions that read the features (init: zero)
        nn.init.normal_(branch[-1].weight, std=0.1)
    fused = fuse_model(randomize_bn(model), imgsz=128)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    image = sample_image(128, 128)
    with torch.no_grad():
        assert relative_difference(fused(image)[0], model(image)[0]) <= RTOL
    ours = yaml.safe_load((REPO / "cfg" / "yolov6-mbla.yaml").read_text())
    theirs = yaml.safe_load((REPO / "cfg" / "yolov8-mbla.yaml").read_text())
    *rows, last = ours["backbone"] + ours["head"]
    assert rows == (theirs["backbone"] + theirs["head"])[:-1] and ours["scales"] == theirs["scales"]
    assert last == [[25, 28, 31], 1, "EffiDeHead", ["nc", 16]]


@pytest.fixture(scope="module")
def imported(zoo, tmp_path_factory):
    """Return a function: size -> (YOLOv6's MBLA network, its file, the --head yolov6 import, what was printed)."""
    made = {}

    def get(size: str):
        if size not in made:
            model = zoo.calibrated(zoo.build_mbla(size), SIZE, 32)
            folder = tmp_path_factory.mktemp("mbla")
            source = zoo.save_04(model, folder / f"yolov6{size}_mbla.pt")
            output, printed = zoo.import_with_head(source)
            made[size] = model, source, output, printed
        return made[size]

    return get


@pytest.mark.parametrize("size", first_then_slow(SIZES))
def test_mbla_import_with_its_head_gives_yolov6s_features_and_detections(size, zoo, imported):
    from yolov8_efficientrep.checkpoints import load_checkpoint
    from yolov8_efficientrep.heads import EffiDeHead
    from yolov8_efficientrep.importer.forms import FORMS

    yolov6, _, output, printed = imported(size)
    assert printed.startswith(f"yolov6{size}_mbla (0.4.0, CSPBep + CSPRepBiFPAN, Conv+BN+SiLU, MBLABlock stages) -> "
                              f"yolov6{size}-mbla: "), printed
    assert "YOLOv6's EffiDeHead for nc=80 (reg_preds: 17 DFL bins per side)" in printed
    ours, _ = load_checkpoint(output)
    assert type(ours.model[-1]) is EffiDeHead and type(ours.model[2]) is MBLABlock
    form = next(form for form in FORMS if form.config == "yolov8-mbla")
    images = {name: zoo.photo(name, SIZE, 32) for name in zoo.PHOTOS}
    agreement = zoo.whole_model_agreement(ours, yolov6, form.backbone_outputs + form.neck_outputs, images)
    print(f"YOLOv6-{size.upper()}_mbla: {printed.splitlines()[0]}\n  {agreement}")  # 4 backbone, 3 neck outputs


def test_mbla_import_under_a_yolov8_head_keeps_every_backbone_and_neck_tensor(zoo, imported, tmp_path):
    yolov6, source, _, _ = imported("s")
    ours, _, printed, difference = zoo.import_under_a_new_head(
        source, tmp_path / "yolov8s-mbla.pt", (2, 4, 6, 9, 25, 28, 31), yolov6, zoo.photo("bus.jpg", SIZE, 32))
    assert printed.startswith("yolov6s_mbla (0.4.0, CSPBep + CSPRepBiFPAN, Conv+BN+SiLU, MBLABlock stages) -> "
                              "yolov8s-mbla: backbone 242/242, neck 352/352 tensors; Detect head initialized for nc=4")
    assert type(ours.model[-1]).__name__ == "Detect"
    print(f"{printed.splitlines()[0]}; features {difference:.1e}")


@pytest.mark.slow  # the development run exports YOLOv6's detection head (test_yolov6_head.py)
def test_mbla_onnx_export_gives_yolov6s_detections_in_onnxruntime(zoo, imported):
    from ultralytics import YOLO

    from yolov8_efficientrep.graphs import onnx_unfused_nodes

    yolov6, _, output, _ = imported("s")
    onnx_file = YOLO(output).export(format="onnx", imgsz=SIZE, device="cpu")  # fused and checked by the plugin
    assert onnx_unfused_nodes(onnx_file) == []
    images = [zoo.photo(name, SIZE, 32, rect=False) for name in zoo.PHOTOS]  # the export's fixed square input
    print(f"ONNX Runtime vs YOLOv6-S_mbla: {zoo.onnx_agreement(onnx_file, yolov6, images)}")


@pytest.mark.slow  # it trains
def test_one_fine_tuning_epoch_of_the_mbla_import_runs(zoo, imported, shapes_data, tmp_path):
    _, _, output, _ = imported("s")
    losses = zoo.one_fine_tuning_epoch(output, shapes_data, tmp_path)
    print(f"one epoch from YOLOv6-S_mbla at imgsz 64: losses {losses}")
