"""Quantization-aware training of the re-parameterized network: Rep blocks fused before the quantizers go in.

Ultralytics' QAT (``yolo train ... quantize=8``, NVIDIA ModelOpt) puts fake quantizers on every convolution and, for
QAT models, leaves RepConv-like blocks unfused at export: each branch is quantized on its own and the INT8 graph keeps
the three branches, their BatchNorms and the Adds between them. For a model with plugin Rep blocks, every block is
fused first into the single 3x3 convolution it deploys as, and QAT trains that plain network, as YOLOv6's QAT trains
its deploy form; the quantizers then see the ranges of the kernels that will run. ``integration/qat_training.py`` applies this
where Ultralytics prepares QAT and where it loads weights into a freshly built model (resume, fine-tuning).
"""

from __future__ import annotations

import os

from torch import nn

from .checkpoints import checkpoint_file, load_checkpoint
from .fusion import fuse_rep_blocks, rep_blocks
from .rows import uses_plugin


QAT_ROUTE_VARIABLE = "YOLOV8_EFFICIENTREP_QAT"  # fused (default) or Ultralytics' unfused QAT, for the benchmark
QAT_ROUTES = ("fused", "ultralytics")
# How fused QAT trains when the user leaves the optimizer to Ultralytics (optimizer=auto picks AdamW): AdamW's steps
# are about lr0 per weight whatever the gradient, which wrecks convolutions that no BatchNorm rescales any more (measured
# in docs/int8.md); SGD at a small learning rate, without warm-up, fine-tunes them.
FUSED_QAT_OPTIMIZER = {"optimizer": "SGD", "lr0": 0.001, "warmup_epochs": 0.0}


def qat_route() -> str:
    """Return ``"fused"`` (default) or ``"ultralytics"`` (Rep blocks trained unfused, as Ultralytics does), by
    ``YOLOV8_EFFICIENTREP_QAT``; the benchmarks compare the two.

    Raises:
        ValueError: The variable holds something other than ``fused`` or ``ultralytics``.
    """
    route = os.environ.get(QAT_ROUTE_VARIABLE, "fused").strip().lower() or "fused"
    if route not in QAT_ROUTES:
        raise ValueError(f"{QAT_ROUTE_VARIABLE}={route!r}: use one of {', '.join(QAT_ROUTES)}")
    return route


def trains_fused(model: nn.Module) -> bool:
    """Return whether QAT of ``model`` trains its fused form: it holds plugin Rep blocks (and the route is fused)."""
    return uses_plugin(model) and bool(rep_blocks(model)) and qat_route() == "fused"


def fuse_for_qat(model: nn.Module) -> int:
    """Fuse every Rep block of ``model`` into its 3x3 convolution, in place, and make that convolution trainable.

    Returns:
        (int): How many blocks were fused now (0 if all were fused already).
    """
    count = fuse_rep_blocks(model)  # float32 algebra, forward = forward_fuse
    for block in rep_blocks(model):
        block.conv.requires_grad_(True)  # fusing freezes the new convolution: QAT trains it
    return count


def fused_qat_optimizer(args: object) -> dict[str, object] | None:
    """Return ``FUSED_QAT_OPTIMIZER`` if training with ``args`` is fused QAT of a plugin checkpoint left at
    ``optimizer=auto``, else None (an optimizer the user chose is left as it is)."""
    weights = checkpoint_file(getattr(args, "model", None))
    if getattr(args, "quantize", None) != 8 or str(getattr(args, "optimizer", "")).lower() != "auto" or weights is None:
        return None
    return FUSED_QAT_OPTIMIZER if trains_fused(load_checkpoint(weights)[0]) else None
