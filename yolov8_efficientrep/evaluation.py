"""Measure what fusion changes: a checkpoint validated unfused and fused, an ONNX export against PyTorch.

The demo and the benchmarks share these, so that a score in either means the same thing.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .checkpoints import load_checkpoint
from .fusion import TOLERANCE, FusionCheckError, fuse_model, is_fused, rep_blocks, sample_image


class Scores(NamedTuple):
    """Validation scores of one network: mAP at IoU 0.5 and averaged over IoU 0.5-0.95."""

    map50: float
    map50_95: float


class Validation(NamedTuple):
    """The scores of one checkpoint's network, unfused and fused, and the two float32 models that were scored."""

    unfused: Scores
    fused: Scores
    unfused_model: nn.Module
    fused_model: nn.Module


def validate_unfused_and_fused(checkpoint: str | Path, **overrides) -> Validation:
    """Validate the network of ``checkpoint`` unfused and fused, from the same float32 weights.

    Ultralytics' stand-alone validation always fuses a PyTorch model (``AutoBackend`` calls ``model.fuse()``), and the
    validation during training scores the float32 EMA before the checkpoint rounds it to float16. Here both networks
    come from the checkpoint loaded in float32: the fused one through ``fuse_model`` (checked against the unfused one),
    the unfused one given a ``fuse()`` that returns it unchanged, so that Ultralytics' validator scores it as it is.
    The two scores are then a measurement of what fusion changes, and nothing else.

    Args:
        checkpoint (str | Path): An Ultralytics ``.pt`` (with Rep blocks or without, e.g. YOLOv8n's Conv+BN).
        **overrides: Validation settings (``data``, ``imgsz``, ``batch``, ``device``, ...).

    Returns:
        (Validation): Scores unfused and fused, and the two models.
    """
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    yolo = YOLO(checkpoint)  # float32, unfused
    unfused = yolo.model
    fused = fuse_model(unfused, imgsz=overrides.get("imgsz", 640))
    unfused.fuse = types.MethodType(lambda self, *args, **kwargs: self, unfused)  # bound: a deep copy gets its own
    batchnorms = _batchnorms(unfused)
    scores = []
    for name, network in (("unfused", unfused), ("fused", fused)):
        LOGGER.info(f"\nValidating the {name} network ({checkpoint}, float32 weights)")
        yolo.model = network
        metrics = yolo.val(plots=False, **overrides)
        scores.append(Scores(float(metrics.box.map50), float(metrics.box.map)))
    if not batchnorms or _batchnorms(unfused) != batchnorms or any(is_fused(b) for b in rep_blocks(unfused)):
        raise RuntimeError(f"{checkpoint}: the network validated as unfused was fused during validation")
    return Validation(*scores, unfused, fused)


def _batchnorms(model: nn.Module) -> int:
    """Number of BatchNorm layers in ``model``; fusion folds them all away."""
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def check_onnx(onnx_file: str | Path, checkpoint: str | Path, imgsz: int) -> tuple[float, float]:
    """Run the ONNX file in ONNX Runtime and the unfused PyTorch checkpoint on the same image; compare the outputs.

    Returns:
        (tuple[float, float]): max |ONNX Runtime - PyTorch| and that relative to the largest output value.

    Raises:
        FusionCheckError: The relative difference is above the float32 tolerance.
    """
    import onnxruntime

    model, _ = load_checkpoint(checkpoint)
    image = sample_image(imgsz, imgsz, model.yaml.get("channels", 3))
    with torch.no_grad():
        reference = model(image)[0].numpy()
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    output = session.run(None, {session.get_inputs()[0].name: image.numpy()})[0]
    max_abs = float(np.abs(output - reference).max())
    max_rel = max_abs / float(np.abs(reference).max())
    if not max_rel <= TOLERANCE[torch.float32]:
        raise FusionCheckError(f"{onnx_file}: ONNX Runtime differs from the unfused PyTorch model by {max_abs:.3g} "
                               f"({max_rel:.3g} relative, tolerance {TOLERANCE[torch.float32]:.0e})")
    return max_abs, max_rel


def sample_val_image(val: str | Path, candidates: int = 16) -> tuple[Path, int]:
    """Return the validation image with the most labelled objects among the first ``candidates`` (sorted by name).

    Returns:
        (tuple[Path, int]): The image and its number of labelled objects.
    """
    from ultralytics.data.utils import IMG_FORMATS, img2label_paths

    images = sorted(p for p in Path(val).rglob("*") if p.suffix[1:].lower() in IMG_FORMATS)[:candidates]
    if not images:
        raise FileNotFoundError(f"{val}: no validation images")
    labels = [Path(f) for f in img2label_paths([str(p) for p in images])]
    counts = [len(f.read_text().splitlines()) if f.is_file() else 0 for f in labels]
    return images[counts.index(max(counts))], max(counts)
