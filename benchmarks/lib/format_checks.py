"""Does an exported file compute what the PyTorch model does? Raw outputs and detections after NMS, compared.

The reference is the fused float32 PyTorch model (the network every export starts from). Both sides see the same
validation images of the generated shapes set, at the size they were made (so no letterbox padding differs):

- raw: Ultralytics' ``AutoBackend`` of the exported file (the runtime as ``yolo predict`` configures it) against the
  PyTorch model on the same tensor; boxes (pixels) and class scores (probabilities) separately, each as its largest
  absolute difference and that difference over the largest value.
- detections: ``YOLO(file).predict`` against ``YOLO(checkpoint).predict`` (Ultralytics' own preprocessing, NMS and
  scaling); each PyTorch box is matched to the exported box of the same class with the highest IoU; the worst match
  gives 1 - IoU, the largest coordinate difference in pixels and the largest score difference; a box with no partner
  (IoU < 0.5) is counted as unmatched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

# What "matches PyTorch" means after NMS: every box found on both sides, coordinates within half a pixel, scores
# within 0.01 (visibly the same detections; float32 runtimes land orders of magnitude below, FP16/BF16 ones near it).
BOX_TOLERANCE_PX, SCORE_TOLERANCE = 0.5, 0.01
MATCH_IOU = 0.5


@dataclass
class RawDifference:
    """Largest differences of the raw output tensor (batch, 4 + classes, anchors) from PyTorch's."""

    box_abs: float  # pixels
    box_rel: float  # over the largest box coordinate
    score_abs: float
    score_rel: float  # over the largest score

    @property
    def worst_rel(self) -> float:
        """The larger of the two relative differences."""
        return max(self.box_rel, self.score_rel)


@dataclass
class DetectionDifference:
    """Detections after NMS of an exported file against PyTorch's, over the compared images."""

    images: int
    boxes: int  # PyTorch's boxes
    unmatched: int  # boxes on either side with no partner
    iou_distance: float  # largest 1 - IoU of a matched pair
    box_px: float  # largest coordinate difference of a matched pair, pixels
    score: float  # largest score difference of a matched pair

    @property
    def matches(self) -> bool:
        """Every box found on both sides and within the tolerances."""
        return self.unmatched == 0 and self.box_px <= BOX_TOLERANCE_PX and self.score <= SCORE_TOLERANCE

    def as_dict(self) -> dict:
        """The fields and the verdict, for the JSON file."""
        return {**asdict(self), "matches": self.matches}


def validation_images(data_root: Path, count: int) -> list[Path]:
    """Return the first ``count`` validation images of a generated shapes set."""
    return sorted((data_root / "images" / "val").glob("*.png"))[:count]


def image_batch(images: list[Path]) -> torch.Tensor:
    """Load images as Ultralytics' predictor feeds them at their own size: RGB, CHW, float in [0, 1], as one batch."""
    pixels = [cv2.imread(str(p))[:, :, ::-1].transpose(2, 0, 1) / 255.0 for p in images]
    return torch.from_numpy(np.ascontiguousarray(np.stack(pixels))).float()


def first_output(y) -> np.ndarray:
    """The detection tensor of a model's or backend's output (lists and tuples hold it first)."""
    while isinstance(y, (list, tuple)):
        y = y[0]
    return y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)


def raw_difference(reference: list[np.ndarray], exported: list[np.ndarray]) -> RawDifference:
    """Compare raw outputs image by image (rows 0-3 boxes in pixels, the rest class scores)."""
    ref, out = np.concatenate(reference), np.concatenate(exported)
    box, score = np.abs(ref[:, :4] - out[:, :4]), np.abs(ref[:, 4:] - out[:, 4:])
    return RawDifference(float(box.max()), float(box.max() / np.abs(ref[:, :4]).max()), float(score.max()),
                         float(score.max() / max(np.abs(ref[:, 4:]).max(), 1e-12)))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes ``a`` (n, 4) and ``b`` (m, 4)."""
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter + 1e-9)


def detection_difference(reference: list, exported: list, conf: float = 0.25) -> DetectionDifference:
    """Match Ultralytics ``Results`` of PyTorch and an exported file, image by image.

    A box without a partner counts as unmatched unless its score is within ``SCORE_TOLERANCE`` of the confidence
    threshold ``conf`` the predictions used (then its partner may just have fallen under the threshold).
    """
    boxes = unmatched = 0
    iou_distance = box_px = score = 0.0
    for ref, out in zip(reference, exported):
        a, b = ref.boxes, out.boxes
        xa, xb = a.xyxy.cpu().numpy(), b.xyxy.cpu().numpy()
        ca, cb = a.cls.cpu().numpy(), b.cls.cpu().numpy()
        sa, sb = a.conf.cpu().numpy(), b.conf.cpu().numpy()
        boxes += len(xa)
        used, matched = set(), set()
        if len(xa) and len(xb):
            iou = _iou(xa, xb) * (ca[:, None] == cb[None, :])
            for i in np.argsort(-sa):
                candidates = [j for j in np.argsort(-iou[i]) if j not in used and iou[i, j] >= MATCH_IOU]
                if not candidates:
                    continue
                j = candidates[0]
                used.add(j)
                matched.add(i)
                iou_distance = max(iou_distance, 1 - float(iou[i, j]))
                box_px = max(box_px, float(np.abs(xa[i] - xb[j]).max()))
                score = max(score, abs(float(sa[i] - sb[j])))
        unmatched += int(sum(sa[i] >= conf + SCORE_TOLERANCE for i in range(len(xa)) if i not in matched))
        unmatched += int(sum(sb[j] >= conf + SCORE_TOLERANCE for j in range(len(xb)) if j not in used))
    return DetectionDifference(len(reference), boxes, unmatched, iou_distance, box_px, score)


def results_from_raw(outputs: list[np.ndarray], names: dict, conf: float = 0.25, iou: float = 0.7) -> list:
    """Ultralytics ``Results`` from raw outputs, through Ultralytics' own NMS (its predictor's defaults), for a runtime
    that Ultralytics' predictor cannot drive here (the RKNN simulator). Images are not letterboxed (the generated
    images are the export size), so no rescaling."""
    from ultralytics.engine.results import Results
    from ultralytics.utils.nms import non_max_suppression

    results = []
    for output in outputs:
        det = non_max_suppression(torch.from_numpy(np.asarray(output, dtype=np.float32)), conf, iou)[0]
        results.append(Results(np.zeros((1, 1, 3), np.uint8), path="", names=names, boxes=det))
    return results
