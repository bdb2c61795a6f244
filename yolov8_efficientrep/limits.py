"""Bounds on the sizes the plugin accepts from files, flags and YAML rows, checked before anything is allocated.

A checkpoint or a YAML row can ask a block for any number of channels or repeats, and a flag or a checkpoint's
``train_args`` for any image size; without bounds a 1 KB file can make the process allocate gigabytes before any
error. Each bound sits well above what any real configuration needs, with the reason beside it.
"""

from __future__ import annotations

from typing import Iterable

import torch

from .errors import EfficientRepError

# Channels of one plugin row: over 6x the widest plugin row any shipped config builds at scale x (1280).
MAX_CHANNELS = 8192
# Layers of one stage: 3.5x the deepest stage of any shipped or YOLOv6 config (18: scale x, YOLOv6-L).
MAX_REPEATS = 64
# Kernel of a plain convolution or a pooling window: SPP's largest window is 13.
MAX_KERNEL = 15
# Parameters of one block: 2.7x the largest block a shipped config builds (98M: yolov6x-repbifpan's 18-layer RepBlock),
# so one block never asks for more than 1 GiB of float32 weights.
MAX_BLOCK_PARAMETERS = 2**28
# Classes of a detection head: V3Det, the largest detection vocabulary, has 13,204.
MAX_CLASSES = 25_000
# DFL bins of a head (reg_max): YOLOv6 and Ultralytics use 16.
MAX_REG_MAX = 64
# Side of a check image in pixels: fusion's algebra does not depend on the image size; Ultralytics' largest
# pretrained size is 1280, and a 2048 x 2048 check of a scale-x model already needs several GB.
MIN_IMGSZ, MAX_IMGSZ = 32, 2048


class LimitError(EfficientRepError, ValueError):
    """A size from a file, a flag or a YAML row is beyond the plugin's bounds; the message says which and why."""


def _count(value: object) -> int | None:
    """Return ``value`` as a count if it is an integer (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_channels(owner: str, *channels: object) -> None:
    """Refuse channel counts that are not whole numbers in [1, ``MAX_CHANNELS``]."""
    for value in channels:
        count = _count(value)
        if count is None or not 1 <= count <= MAX_CHANNELS:
            raise LimitError(f"{owner}: channels must be positive integers up to {MAX_CHANNELS}, got {value!r}")


def check_repeats(owner: str, n: object) -> None:
    """Refuse repeat counts that are not whole numbers in [1, ``MAX_REPEATS``]."""
    count = _count(n)
    if count is None or not 1 <= count <= MAX_REPEATS:
        raise LimitError(f"{owner}: repeats n must be a positive integer up to {MAX_REPEATS}, got {n!r}")


def check_kernel(owner: str, k: object, odd: bool = False) -> None:
    """Refuse kernels outside [1, ``MAX_KERNEL``]; ``odd`` also refuses even ones (a window that keeps the size)."""
    size = _count(k)
    if size is None or not 1 <= size <= MAX_KERNEL or (odd and size % 2 == 0):
        kind = "an odd positive integer" if odd else "a positive integer"
        why = " (an even pooling window changes the feature map's size)" if odd else ""
        raise LimitError(f"{owner}: kernel k must be {kind} up to {MAX_KERNEL}{why}, got {k!r}")


def check_parameters(owner: str, parameters: int) -> None:
    """Refuse a block whose weights, counted from its arguments before building, exceed ``MAX_BLOCK_PARAMETERS``."""
    if parameters > MAX_BLOCK_PARAMETERS:
        raise LimitError(f"{owner}: {parameters:,} parameters in one block, more than the {MAX_BLOCK_PARAMETERS:,} "
                         f"this plugin builds (2.7x its largest shipped block); use fewer channels or repeats")


def check_classes(owner: str, nc: object) -> None:
    """Refuse class counts that are not whole numbers in [1, ``MAX_CLASSES``]."""
    count = _count(nc)
    if count is None or not 1 <= count <= MAX_CLASSES:
        raise LimitError(f"{owner}: the number of classes must be a positive integer up to {MAX_CLASSES:,}, got "
                         f"{nc!r}")


def check_imgsz(owner: str, imgsz: object) -> None:
    """Refuse an image size (one side, or ``[height, width]``) outside [``MIN_IMGSZ``, ``MAX_IMGSZ``] pixels."""
    sides = list(imgsz) if isinstance(imgsz, (list, tuple)) and 1 <= len(imgsz) <= 2 else [imgsz]
    if not all(_count(side) is not None and MIN_IMGSZ <= side <= MAX_IMGSZ for side in sides):
        raise LimitError(f"{owner}: image size must be from {MIN_IMGSZ} to {MAX_IMGSZ} pixels (one side, or "
                         f"[height, width]), got {imgsz!r}")


def non_finite_tensor(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """Return the name of the first floating-point tensor holding NaN or an infinity, or None if all are finite."""
    for name, tensor in named_tensors:
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None
