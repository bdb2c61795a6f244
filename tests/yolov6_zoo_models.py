"""The rest of YOLOv6's zoo for the import tests: P6 networks built with YOLOv6's own code, and how they are compared.

P6 (YOLOv6-N6/S6/M6/L6): configs ``yolov6{n,s,m,l}6.py`` of tags 0.3.0 and 0.4.0 (unchanged between them); PyPI's
``yolov6detect`` packages YOLOv6 0.3.0's ``yolov6``, which has every P6 class (``EfficientRep6``,
``CSPBepBackbone_P6``, ``RepBiFPANNeck6``, ``CSPRepBiFPANNeck_P6``, the four-level ``effidehead.Detect``), so the
networks are YOLOv6's own code; ``yolov6_models.build`` gives them 0.4.x's names when asked (``git diff 0.3.0 0.4.0 --
yolov6/models`` changes only the layers' class names in the P6 classes).

The comparison helpers read the imported Ultralytics model's layers, YOLOv6's outputs and both sides' detections
after NMS the way ``tests/test_yolov6_head.py`` does, for any number of levels.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from ultralytics.utils import ASSETS
from ultralytics.utils.nms import non_max_suppression
from yolov6.data.data_augment import letterbox
from yolov6.utils.nms import non_max_suppression as yolov6_nms
from yolov6.utils.torch_utils import fuse_model as yolov6_fuse_model

import yolov6_models as ym
from helpers import RTOL, relative_difference

CONF, IOU, MAX_DET = 0.25, 0.45, 1000  # Ultralytics' predict confidence; YOLOv6's inference IoU and max_det
MAX_WH = 4096  # YOLOv6's per-class box offset in its NMS (Ultralytics': 7680): the same arithmetic on both sides
PHOTOS = ("bus.jpg", "zidane.jpg")

# The P6 designs of YOLOv6 0.3.0 (configs/yolov6{n,s,m,l}6.py): backbone, neck and SPPF as the configs build them.
P6_DESIGNS = {
    "n6": dict(training_mode="repvgg", backbone=dict(type="EfficientRep6", fuse_P2=True, cspsppf=True),
               neck=dict(type="RepBiFPANNeck6"), dfl=False),  # N6 and S6
    "m6": dict(training_mode="repvgg", backbone=dict(type="CSPBepBackbone_P6", csp_e=2 / 3, fuse_P2=True),
               neck=dict(type="CSPRepBiFPANNeck_P6", csp_e=2 / 3), dfl=True),
    "l6": dict(training_mode="conv_silu", backbone=dict(type="CSPBepBackbone_P6", csp_e=1 / 2, fuse_P2=True),
               neck=dict(type="CSPRepBiFPANNeck_P6", csp_e=1 / 2), dfl=True),
}


def p6_config(design: str, size: str) -> ym.Config:
    """Return YOLOv6 0.3.0's P6 config of ``design`` (``n6``, ``m6``, ``l6``) at the depth and width of ``size``."""
    depth, width = ym.SIZES[size]
    spec = P6_DESIGNS[design]
    dfl = spec["dfl"]
    return ym._config(dict(training_mode=spec["training_mode"], model=dict(
        depth_multiple=depth, width_multiple=width,
        backbone=dict(num_repeats=[1, 6, 12, 18, 6, 6], out_channels=[64, 128, 256, 512, 768, 1024],
                      **spec["backbone"]),
        neck=dict(num_repeats=[12] * 6, out_channels=[512, 256, 128, 256, 512, 1024], **spec["neck"]),
        head=dict(type="EffiDeHead", in_channels=[128, 256, 512, 1024], num_layers=4, anchors=1,
                  strides=[8, 16, 32, 64], use_dfl=dfl, reg_max=16 if dfl else 0))))


# --- photos, features and detections ----------------------------------------------------------------------------------


def photo(name: str, size: int, stride: int = 64, rect: bool = True) -> torch.Tensor:
    """Return an Ultralytics asset letterboxed by YOLOv6's own code to ``size`` (a minimal rectangle of multiples of
    ``stride``, or a square), RGB, 0-1, batch of one."""
    image = letterbox(cv2.imread(str(ASSETS / name)), size, auto=rect, stride=stride)[0]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[::-1])).float()[None] / 255


def calibrated(model: nn.Module, size: int, stride: int = 64) -> nn.Module:
    """Return ``model`` with BN statistics measured on the photos (squares of ``size``), as ``ym.calibrate_bn``."""
    return ym.calibrate_bn(model, torch.cat([photo(name, size, stride, rect=False) for name in PHOTOS]))


def layer_outputs(model: nn.Module, layers: tuple[int, ...], image: torch.Tensor) -> list[torch.Tensor]:
    """Run an Ultralytics model; return the outputs of the rows ``layers``."""
    outputs = {}
    hooks = [model.model[i].register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, out)) for i in layers]
    with torch.no_grad():
        model(image)
    for hook in hooks:
        hook.remove()
    return [outputs[i] for i in layers]


def compare(decoded: torch.Tensor, yolov6: torch.Tensor) -> tuple[float, float]:
    """Return the relative differences of the boxes and of the class scores: Ultralytics' decoded (batch, 4 + nc,
    anchors) against YOLOv6's (batch, anchors, 5 + nc), whose fifth column is its constant objectness."""
    assert torch.all(yolov6[..., 4] == 1)
    ours = decoded.transpose(1, 2)
    return relative_difference(ours[..., :4], yolov6[..., :4]), relative_difference(ours[..., 4:], yolov6[..., 5:])


def same_detections(ours: torch.Tensor, theirs: torch.Tensor, box_atol: float, score_atol: float = RTOL
                    ) -> tuple[float, float]:
    """Assert the same (x1, y1, x2, y2, score, class) detections in any order: each of ``theirs`` has one of ``ours``
    of its class with the box within ``box_atol`` pixels and the score within ``score_atol``, no two sharing one.
    Return the largest box and score differences."""
    assert ours.shape == theirs.shape and len(theirs) > 0, (ours.shape, theirs.shape)
    distance = (theirs[:, None, :4] - ours[None, :, :4]).abs().amax(-1)  # theirs x ours, pixels
    distance[theirs[:, None, 5] != ours[None, :, 5]] = math.inf
    nearest = distance.min(1)
    assert len(set(nearest.indices.tolist())) == len(theirs), "two detections matched the same one"
    boxes = nearest.values.max().item()
    scores = (theirs[:, 4] - ours[nearest.indices, 4]).abs().max().item()
    assert boxes <= box_atol and scores <= score_atol, (boxes, scores)
    return boxes, scores


def detections_match(decoded: torch.Tensor, theirs: torch.Tensor, tolerance: float = RTOL
                     ) -> tuple[float, float, float, float, int]:
    """Compare an imported model's decoded output with YOLOv6's inference output on one image: before NMS, and after
    NMS at YOLOv6's thresholds on both sides, within ``tolerance`` (relative; scores absolute after NMS). Return
    (boxes, scores relative; boxes px, scores after NMS; detections)."""
    boxes, scores = compare(decoded, theirs)
    assert boxes <= tolerance and scores <= tolerance, (boxes, scores, tolerance)
    expected = yolov6_nms(theirs.clone(), CONF, IOU, max_det=MAX_DET)[0]
    found = non_max_suppression(decoded, CONF, IOU, max_det=MAX_DET, max_wh=MAX_WH)[0]
    pixels, points = same_detections(found, expected, tolerance * theirs[..., :4].abs().max().item(), tolerance)
    return boxes, scores, pixels, points, len(expected)


def yolov6_deploy(model: nn.Module) -> nn.Module:
    """Return a copy of a YOLOv6 network in the deploy form YOLOv6 exports: every block's ``switch_to_deploy`` (Rep
    blocks re-parameterized), then YOLOv6's ``fuse_model`` (BN folded into each convolution)."""
    deployed = copy.deepcopy(model)
    for layer in deployed.modules():
        if hasattr(layer, "switch_to_deploy"):
            layer.switch_to_deploy()
    return yolov6_fuse_model(deployed).eval()


def fusion_tolerance(model: nn.Module, images: list[torch.Tensor]) -> float:
    """Return the bound for a fused (exported) import against YOLOv6's training-form output: ``RTOL``, or twice what
    YOLOv6's own deploy form deviates from it on ``images`` where that is more.

    Re-parameterizing sums the branches in another order; in a deep network with random weights the rounding grows
    past 1e-4 for YOLOv6's own conversion too (YOLOv6-N6: 1.4e-4 on bus.jpg), so the exported model is held to what
    YOLOv6's own deploy form achieves.
    """
    deployed = yolov6_deploy(model)
    own = 0.0
    for image in images:
        fused, trained = ym.inference(deployed, image), ym.inference(model, image)
        own = max(own, relative_difference(fused[..., :4], trained[..., :4]),
                  relative_difference(fused[..., 5:], trained[..., 5:]))
    return max(RTOL, 2 * own)


def save(model: nn.Module, path: Path, naming: str = "0.3") -> Path:
    """Save a YOLOv6 network as its ``strip_optimizer`` does (``yolov6_models.save``)."""
    return ym.save(model, path, naming)
