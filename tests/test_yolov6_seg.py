"""YOLOv6-Seg N/S/M/L/X (YOLOv6 0.4.1): the yolov6-*-seg configs build from scratch with YOLOv6-Seg's published
parameter counts and fuse to the same outputs, and ``import-yolov6`` gives Ultralytics segmentation models that compute
what YOLOv6-Seg computes, with its head (``--head yolov6``: ``EffiDeSegHead``) or a new YOLOv8 Segment head.

The YOLOv6-Seg networks are YOLOv6 0.3.0's own backbone and neck code with a stand-in of 0.4.1's segmentation head
(``yolov6_seg_models.py``), BN statistics measured on the photos, random BN affine values, conv biases and prediction
weights, saved as YOLOv6 0.4.x saves them. On Ultralytics' bus.jpg and zidane.jpg letterboxed by YOLOv6's code, every
backbone and neck output, the boxes and class scores before and after NMS, the mask coefficients, the prototypes and
the masks after NMS (YOLOv6's ``non_max_suppression_seg`` and ``handle_proto_test`` against Ultralytics' NMS and
``process_mask_native``) are compared; then ONNX Runtime running the export, and one fine-tuning epoch.
"""

import contextlib
import os
from unittest import mock

import pytest
import torch

from helpers import REPO, RTOL, first_then_slow, relative_difference, yolov6_module

LAYERS = (2, 4, 6, 9, 25, 28, 31)  # the rows of YOLOv6's backbone outputs (P2-P5) and neck outputs (P3-P5)
SIZE = 320  # the photos' longer side
# The imports checked whole: (size, design, a --fuse_ab run) -> the config and scale that take it. YOLOv6-Seg-N, and
# the M and L/X designs (CSPBep with DFL; conv_silu layers) at N's size, for the suite's time, the M design from a
# --fuse_ab run (whose anchor-based predictions inference never reads); YOLOV6_IMPORT_ALL=1 adds every released size
# at full size (measured in docs/yolov6-import.md).
CASES = {"N": ("n", "n", False, "yolov6n-repbifpan-seg"),
         "M design at N size, a --fuse_ab run": ("n", "m", True, "yolov6n-cspbifpan-seg"),
         "L/X design at N size": ("n", "l", False, "yolov6n-cspbifpan-silu-seg")}
MORE_CASES = {"S": ("s", "n", False, "yolov6s-repbifpan-seg"), "M": ("m", "m", False, "yolov6m-cspbifpan-seg"),
              "L": ("l", "l", False, "yolov6l-cspbifpan-silu-seg"),
              "X": ("x", "l", False, "yolov6x-cspbifpan-silu-seg")}
if os.environ.get("YOLOV6_IMPORT_ALL") == "1":
    CASES.update(MORE_CASES)
# YOLOv6 thresholds upsampled sigmoids at 0.5, Ultralytics upsampled logits at 0: where a mask edge crosses a prototype
# pixel (4 image pixels) the two cross at slightly different points, so masks may differ next to a mask edge, nowhere
# else. Measured: within 1 pixel (pixels touching an edge of either mask); allowed: 3.
EDGE_PIXELS = 3


@pytest.fixture(scope="module")
def seg():
    return yolov6_module("yolov6_seg_models")


def test_seg_config_builds_from_scratch_with_yolov6s_count_and_fuses_to_the_same_outputs(randomize_bn):
    """Built from scratch (scale n); the import tests prove the layers YOLOv6's own, this the published size (4.9 M,
    on YOLOv6's deploy form) and fusion of the prototypes and mask branch beside the rest."""
    import yaml
    from torch import nn
    from ultralytics import YOLO

    from yolov8_efficientrep.fusion import fuse_model, sample_image
    from yolov8_efficientrep.heads import EffiDeSegHead

    model = YOLO(REPO / "cfg" / "yolov6n-repbifpan-seg.yaml")
    head = model.model.model[-1]
    assert model.task == "segment" and type(head) is EffiDeSegHead and (head.nm, head.npr) == (32, 64)
    for branch in (*head.cv2, *head.cv3):  # predictions that read the features (init: zero)
        nn.init.normal_(branch[-1].weight, std=0.1)
    unfused = randomize_bn(model.model)
    fused = fuse_model(unfused, imgsz=128)  # checked by the plugin; compared again below, prototypes included
    assert round(sum(p.numel() for p in fused.parameters()) / 1e6, 1) == 4.9  # YOLOv6-Seg-N's published count
    image = sample_image(128, 128)
    with torch.no_grad():
        (ours, proto), _ = fused(image)
        (theirs, expected), _ = unfused(image)
    assert ours.shape == (1, 4 + 80 + 32, 336) and proto.shape == (1, 32, 32, 32)
    assert relative_difference(ours, theirs) <= RTOL and relative_difference(proto, expected) <= RTOL
    for design in ("repbifpan", "cspbifpan", "cspbifpan-silu"):
        ours, theirs = (yaml.safe_load((REPO / "cfg" / f"yolov{v}-{design}-seg.yaml").read_text()) for v in (6, 8))
        detection = yaml.safe_load((REPO / "cfg" / f"yolov8-{design}.yaml").read_text())
        assert ours["backbone"] + ours["head"][:-1] == theirs["backbone"] + theirs["head"][:-1] == \
            detection["backbone"] + detection["head"][:-1]
        assert theirs["head"][-1] == [[25, 28, 31], 1, "Segment", ["nc", 32, 256]]
        assert ours["head"][-1] == [[25, 28, 31], 1, "EffiDeSegHead", ["nc", 0 if design == "repbifpan" else 16]]


@pytest.fixture(scope="module")
def imported(seg, tmp_path_factory):
    """Return a function: case -> (YOLOv6-Seg's network, its file, the --head yolov6 import, what the import
    printed)."""
    import yolov6_zoo_models as zoo

    made = {}

    def get(case: str):
        if case not in made:
            size, design, fuse_ab, _ = CASES[case]
            model = zoo.calibrated(seg.build_seg(size, design=design, fuse_ab=fuse_ab), SIZE)
            source = seg.save_seg(model, tmp_path_factory.mktemp("seg") / f"yolov6{size}_seg.pt")
            output, printed = zoo.import_with_head(source)
            made[case] = model, source, output, printed
        return made[case]

    return get


def edge_distance(ours: torch.Tensor, theirs: torch.Tensor) -> int:
    """Return how far (pixels; 0 where they agree) the pixels where two stacks of boolean masks differ lie from a mask
    boundary of either stack: 1 for pixels touching a pixel of the other value, 2 for their neighbours, ..."""
    import torch.nn.functional as F

    def edge_pixels(masks: torch.Tensor) -> torch.Tensor:  # (n, 1, h, w): 1 where a neighbour has the other value
        masks = masks.float()[:, None]
        return (F.max_pool2d(masks, 3, 1, 1) != -F.max_pool2d(-masks, 3, 1, 1)).float()

    differ = ours ^ theirs
    if not differ.any():
        return 0
    # only masks that differ, in the window around their differing pixels: no pixel outside it can be a mask boundary
    # within the distances measured (up to EDGE_PIXELS + 1, plus one for the boundary's own neighbours)
    masks, margin = differ.flatten(1).any(1), EDGE_PIXELS + 2
    (top, bottom), (left, right) = ((int(i.min()), int(i.max())) for i in differ.any(0).nonzero().T)
    window = slice(max(top - margin, 0), bottom + margin + 1), slice(max(left - margin, 0), right + margin + 1)
    ours, theirs, differ = (stack[masks][:, window[0], window[1]] for stack in (ours, theirs, differ))
    edges = torch.maximum(edge_pixels(ours), edge_pixels(theirs))
    distance = 0
    while differ.any() and distance <= EDGE_PIXELS:
        distance += 1
        differ &= ~(F.max_pool2d(edges, 2 * distance - 1, 1, distance - 1)[:, 0] > 0)
    return distance


def mask_agreement(ours: tuple, theirs: tuple, image: torch.Tensor, tolerance: float = RTOL) -> tuple[float, ...]:
    """Compare an imported model's inference output ``((decoded, prototypes), ...)`` with YOLOv6-Seg's
    (``seg_inference``) on one image: boxes and scores before and after NMS (``detections_match``), mask coefficients
    and prototypes, and each detection's mask after NMS. Return (boxes, scores, coefficients, prototypes relative;
    the masks' differences' distance from a mask edge, pixels; the IoU of all masks together; detections)."""
    import yolov6_seg_models as seg
    import yolov6_zoo_models as zoo
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import process_mask_native

    (decoded, prototypes), (pred, protos, coefficients) = ours, theirs
    boxes, scores, _, _, count = zoo.detections_match(decoded[:, :84], pred, tolerance)
    measured = relative_difference(decoded[:, 84:].transpose(1, 2), coefficients[..., 1:]), \
        relative_difference(prototypes, protos)
    assert max(measured) <= tolerance, measured
    conf = zoo.nms_confidence(pred)
    expected, masks = seg.yolov6_masks(theirs, image.shape[2:], conf)
    found = non_max_suppression(decoded, conf, zoo.IOU, nc=80, max_det=zoo.MAX_DET, max_wh=zoo.MAX_WH)[0]
    found = found[zoo.paired_detections(found, expected)]
    ours_masks = process_mask_native(prototypes[0], found[:, 6:], found[:, :4], image.shape[2:]).bool()
    distance = edge_distance(ours_masks, masks)
    assert distance <= EDGE_PIXELS, distance
    overlap = ((ours_masks & masks).sum() / (ours_masks | masks).sum()).item()
    return boxes, scores, *measured, distance, overlap, count


@pytest.mark.parametrize("case", first_then_slow(CASES))
def test_seg_import_with_its_head_gives_yolov6s_features_detections_and_masks(case, seg, imported):
    import yolov6_models as ym
    import yolov6_zoo_models as zoo

    from yolov8_efficientrep.checkpoints import load_checkpoint
    from yolov8_efficientrep.heads import EffiDeSegHead

    yolov6, _, output, printed = imported(case)
    size, _, fuse_ab, config = CASES[case]
    assert printed.startswith(f"yolov6{size}_seg (0.4.1, ") and f" -> {config}: " in printed
    assert "YOLOv6's EffiDeSegHead for nc=80" in printed and " (scale " not in printed  # the config's own scale
    assert ("left out: cls_preds_ab, reg_preds_ab, seg_preds_ab)" in printed) == fuse_ab
    ours, checkpoint = load_checkpoint(output)
    assert type(ours.model[-1]) is EffiDeSegHead and checkpoint["train_args"]["task"] == "segment"
    largest = [0.0] * 5
    for name in zoo.PHOTOS:
        image = zoo.photo(name, SIZE)
        features = zoo.layer_outputs(ours, LAYERS, image), ym.features(yolov6, image)
        maps = max(relative_difference(a, b) for a, b in zip(*features))
        assert maps <= RTOL, (name, maps)
        with torch.no_grad():
            measured = mask_agreement(ours(image)[0], seg.seg_inference(yolov6, image), image)
        largest = [max(largest[0], maps), *(max(a, b) for a, b in zip(largest[1:], measured[:4]))]
        print(f"YOLOv6-Seg {case}, {name}: the same {measured[6]} detections; masks' IoU {measured[5]:.4f}, differing "
              f"only within {measured[4]} px of a mask edge")
    print(f"{printed.splitlines()[0]}\n  features {largest[0]:.1e}, boxes {largest[1]:.1e}, scores {largest[2]:.1e}, "
          f"mask coefficients {largest[3]:.1e}, prototypes {largest[4]:.1e} relative")


def test_seg_import_under_a_yolov8_segment_head_keeps_every_backbone_and_neck_tensor(seg, imported, tmp_path):
    import yolov6_zoo_models as zoo

    yolov6, source, _, _ = imported("N")
    ours, checkpoint, printed, difference = zoo.import_under_a_new_head(
        source, tmp_path / "yolov8n-repbifpan-seg.pt", LAYERS, yolov6, zoo.photo("bus.jpg", SIZE))
    assert printed.startswith("yolov6n_seg (0.4.1, EfficientRep + RepBiFPAN) -> yolov8n-repbifpan-seg: backbone "
                              "340/340, neck 348/348 tensors; Segment head initialized for nc=4"), printed
    assert type(ours.model[-1]).__name__ == "Segment" and checkpoint["train_args"]["task"] == "segment"
    print(f"{printed.splitlines()[0]}; features {difference:.1e}")


def _solo_head(seg, model):
    return mock.patch.object(seg.Detect, "__module__", "yolov6.models.heads.effidehead_fuseab_seg_solo")


def _sixteen_coefficients(seg, model):
    model.detect.seg_preds = torch.nn.ModuleList(torch.nn.Conv2d(conv.in_channels, 16, 1)
                                                 for conv in model.detect.seg_preds)
    return contextlib.nullcontext()


def _bilinear_prototypes(seg, model):
    model.detect.seg_proto[0].upsample.mode = "bilinear"
    return contextlib.nullcontext()


@pytest.mark.parametrize("change, message", [
    (_solo_head, r"is a YOLOv6 segmentation model with a head no YOLOv6 release ships \(yolov6\.models\.heads\."
                 r"effidehead_fuseab_seg_solo\.Detect"),  # the --issolo head: named before any tensor is read
    (_sixteen_coefficients, r"the head's seg_preds have \[16\] output channels, where YOLOv6-Seg's inference reads "
                            r"32 mask coefficients"),
    (_bilinear_prototypes, r"YOLOv6 detect\.seg_proto\.0\.upsample does not fit model\.32\.proto\.upsample"),
], ids=["solo head", "16 coefficients", "bilinear prototypes"])
def test_seg_import_refuses_a_head_yolov6_seg_never_released_in_one_line(change, message, seg, tmp_path):
    from yolov8_efficientrep.importer import YOLOv6ImportError, import_yolov6

    model = seg.build_seg("n")
    with change(seg, model):
        source = seg.save_seg(model, tmp_path / "yolov6n_seg.pt")
    with pytest.raises(YOLOv6ImportError, match=message) as error:
        import_yolov6(source, tmp_path / "out.pt", head="yolov6")
    assert len(str(error.value).splitlines()) == 1 and str(source) in str(error.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["yolov6n_seg.pt"]


@pytest.mark.slow  # the development run exports YOLOv6's detection head (test_yolov6_head.py)
def test_seg_onnx_export_gives_yolov6s_detections_masks_and_prototypes_in_onnxruntime(seg, imported):
    import onnxruntime
    import yolov6_zoo_models as zoo
    from ultralytics import YOLO

    from yolov8_efficientrep.graphs import onnx_unfused_nodes

    yolov6, _, output, _ = imported("N")
    onnx_file = YOLO(output).export(format="onnx", imgsz=SIZE, device="cpu")  # fused and checked by the plugin
    assert onnx_unfused_nodes(onnx_file) == []
    session = onnxruntime.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    deployed = seg.seg_deploy(yolov6)  # the bound: RTOL, or twice what YOLOv6's own deploy form deviates
    for name in zoo.PHOTOS:
        image = zoo.photo(name, SIZE, rect=False)  # the export's fixed square input
        theirs, own = seg.seg_inference(yolov6, image), seg.seg_inference(deployed, image)
        tolerance = max(RTOL, 2 * max(relative_difference(a, b) for a, b in zip(own, theirs)))
        decoded, prototypes = (torch.from_numpy(a) for a in session.run(None, {session.get_inputs()[0].name:
                                                                                image.numpy()}))
        measured = mask_agreement((decoded, prototypes), theirs, image, tolerance)
        print(f"ONNX Runtime vs YOLOv6-Seg-N {name}: boxes {measured[0]:.1e}, scores {measured[1]:.1e}, coefficients "
              f"{measured[2]:.1e}, prototypes {measured[3]:.1e} relative (bound {tolerance:.1e}); the same "
              f"{measured[6]} detections; masks' IoU {measured[5]:.4f}, differing only within {measured[4]} px of an "
              f"edge")


@pytest.mark.slow  # it trains
def test_one_fine_tuning_epoch_of_the_seg_import_runs(seg, imported, tmp_path):
    import yolov6_zoo_models as zoo

    from yolov8_efficientrep.shapes import make_task_dataset

    _, _, output, _ = imported("N")
    data = make_task_dataset(tmp_path / "data", "segment", train=8, val=4, imgsz=64)
    losses = zoo.one_fine_tuning_epoch(output, data, tmp_path, losses=5, unused=("train/sem_loss",))
    print(f"one epoch from YOLOv6-Seg-N at imgsz 64: losses {losses}")
