"""Bounds on the sizes the plugin accepts from files, flags and YAML rows, checked before anything is allocated.

A checkpoint or a YAML row can ask a block for any number of channels or repeats, and a flag or a checkpoint's
``train_args`` for any image size; without bounds a 1 KB file can make the process allocate gigabytes before any
error. Each bound sits well above what any real configuration needs, with the reason beside it.

A checkpoint also stores attributes beside its tensors (a block's ``c1``, a convolution's ``padding``, a model's
``stride``) that fusion and a forward pass size buffers with; ``check_stored`` and ``check_torch_layer`` hold them to
the module's own tensors, or to bounds where no tensor says what they must be.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import sys
import threading
from typing import Iterable, Iterator

import torch
from torch import nn

from .errors import EfficientRepError
from .messages import printable

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
# Stride of a model's coarsest level: P6 models (yolov8n-p6.yaml, YOLOv6's P6 designs) downsample 64 times, the most of
# any Ultralytics or YOLOv6 model; a check image's sides are rounded up to a multiple of it.
MAX_STRIDE = 64
# Channels of a model's input image (a model YAML's ``channels:``): 3 for RGB, 1 for grey; multispectral satellites
# record up to 13 bands (Sentinel-2) and Ultralytics' multispectral example uses 10. 64 leaves room for stacked inputs
# while a 2048 x 2048 float32 check image of them stays within 1 GiB.
MAX_IMAGE_CHANNELS = 64
# Upsampling factor of one nn.Upsample: Ultralytics' and YOLOv6's necks upsample by 2.
MAX_UPSAMPLE = 8


class LimitError(EfficientRepError, ValueError):
    """A size from a file, a flag or a YAML row is beyond the plugin's bounds; the message says which and why."""


class StoredAttributeError(EfficientRepError, ValueError):
    """A module's stored attribute disagrees with its own tensors, or is out of bounds: the file was altered."""


class NonFiniteWeightsError(EfficientRepError, ValueError):
    """A checkpoint's weights or statistics hold NaN or infinite values (a run that diverged, or a damaged file)."""


class WeightsOverflowError(EfficientRepError, ValueError):
    """Weights that are finite in the file give NaN or infinity in float32 once folded (or run): the file is damaged."""


def whole_number(value: object) -> int | None:
    """Return ``value`` if it is an integer (not a bool), else None: what a file, a flag or a YAML row holds may be
    anything. The one integer check of the package (the jailed reader's child, which imports nothing of it, has its
    own)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def non_finite_weights(owner: str, tensor: str, action: str) -> NonFiniteWeightsError:
    """Return the one error for weights that are not finite: ``owner`` names the file, ``tensor`` the first bad
    tensor, ``action`` what to do with a checkpoint whose weights are finite (``fuse``, ``import``, ``export``)."""
    return NonFiniteWeightsError(f"{owner}: its weights are not finite: tensor {tensor} holds NaN or infinite values "
                                 f"(a training run that diverged, or a damaged file); {action} a checkpoint whose "
                                 f"weights are finite, such as an earlier epoch's")


def check_channels(owner: str, *channels: object) -> None:
    """Refuse channel counts that are not whole numbers in [1, ``MAX_CHANNELS``]."""
    for value in channels:
        count = whole_number(value)
        if count is None or not 1 <= count <= MAX_CHANNELS:
            raise LimitError(f"{owner}: channels must be positive integers up to {MAX_CHANNELS}, got "
                             f"{printable(value)}")


def check_repeats(owner: str, n: object) -> None:
    """Refuse repeat counts that are not whole numbers in [1, ``MAX_REPEATS``]."""
    count = whole_number(n)
    if count is None or not 1 <= count <= MAX_REPEATS:
        raise LimitError(f"{owner}: repeats n must be a positive integer up to {MAX_REPEATS}, got {printable(n)}")


def check_kernel(owner: str, k: object, odd: bool = False) -> None:
    """Refuse kernels outside [1, ``MAX_KERNEL``]; ``odd`` also refuses even ones (a window that keeps the size)."""
    size = whole_number(k)
    if size is None or not 1 <= size <= MAX_KERNEL or (odd and size % 2 == 0):
        kind = "an odd positive integer" if odd else "a positive integer"
        why = " (an even pooling window changes the feature map's size)" if odd else ""
        raise LimitError(f"{owner}: kernel k must be {kind} up to {MAX_KERNEL}{why}, got {printable(k)}")


def check_parameters(owner: str, parameters: int) -> None:
    """Refuse a block whose weights, counted from its arguments before building, exceed ``MAX_BLOCK_PARAMETERS``, or
    the budget of the restricted load running on this thread (see ``restricted_load``)."""
    if parameters > MAX_BLOCK_PARAMETERS:
        raise LimitError(f"{owner}: {parameters:,} parameters in one block, more than the {MAX_BLOCK_PARAMETERS:,} "
                         f"this plugin builds (2.7x its largest shipped block); use fewer channels or repeats")
    _charge(owner, parameters)


# Ultralytics' restricted loader (ULTRALYTICS_SAFE_LOAD=1), per thread: torch's weights_only allow-list is one for the
# whole process, so the mark that a restricted load runs on this thread, and its budget, live here.
#
# The budget: parameters the plugin's constructors may create during one restricted load, one per byte of the file
# being loaded. An honest checkpoint calls no constructor (torch rebuilds each module with NEWOBJ and BUILD from its
# stored tensors); a file that calls blocks with arguments gets at most the weights it could have stored itself (one
# byte per element, the smallest dtype torch.save writes). A block counts its sub-blocks, which count again (BepC3 >
# RepBlock > BottleRep > unit: up to 4 times), so the budget errs towards refusing. A 1.4 KB file may create 1,400.
_restricted = threading.local()


@contextlib.contextmanager
def restricted_load(budget: int) -> Iterator[None]:
    """Mark this thread as inside a restricted load whose constructors may create at most ``budget`` parameters.

    Only a thread so marked may have the plugin's classes built by torch's ``weights_only`` unpickler
    (``RestrictedLoadOnly``); loads nest, each with its own budget.
    """
    previous = getattr(_restricted, "budget", None)
    _restricted.budget = budget
    try:
        yield
    finally:
        _restricted.budget = previous


def _charge(owner: str, parameters: int) -> None:
    """Count ``parameters`` against this thread's restricted-load budget, if a restricted load runs here."""
    budget = getattr(_restricted, "budget", None)
    if budget is None:
        return
    if parameters > budget:
        raise LimitError(f"{owner}: the file being loaded asks the plugin's constructors for {parameters:,} more "
                         f"parameters, beyond the {budget:,} left of its budget (one per byte of the file: honest "
                         f"checkpoints call no constructor); the file was crafted or damaged")
    _restricted.budget = budget - parameters


def _weights_only_unpickler_calls(depth: int) -> bool:
    """Return True if the code ``depth`` frames above the caller is torch's ``weights_only`` unpickler."""
    frame = sys._getframe(depth + 1)
    return frame.f_globals.get("__name__") == "torch._weights_only_unpickler"


class RestrictedLoadOnly:
    """Mixin for the plugin's layer classes: torch's ``weights_only`` unpickler may build them only on a thread inside
    Ultralytics' restricted loader (``restricted_load``).

    The plugin's classes are on torch's allow-list, which is process-wide, while such a load runs; without this, a
    ``torch.load(weights_only=True)`` of another thread could construct them in that window, with its file's
    arguments and outside the load's budget. Every other construction (code, ``copy``, full unpickling) is unchanged.
    """

    def __new__(cls, *args, **kwargs):
        """Refuse construction by torch's ``weights_only`` unpickler outside a restricted load on this thread."""
        if getattr(_restricted, "budget", None) is None and _weights_only_unpickler_calls(1):
            raise pickle.UnpicklingError(
                f"{cls.__name__}: torch.load(weights_only=True) may rebuild the yolov8_efficientrep classes only "
                f"inside Ultralytics' restricted loader, on its own thread (ULTRALYTICS_SAFE_LOAD=1 or "
                f"torch_safe_load(..., safe_only=True)); this load ran beside one")
        return super().__new__(cls)


def check_classes(owner: str, nc: object) -> None:
    """Refuse class counts that are not whole numbers in [1, ``MAX_CLASSES``]."""
    count = whole_number(nc)
    if count is None or not 1 <= count <= MAX_CLASSES:
        raise LimitError(f"{owner}: the number of classes must be a positive integer up to {MAX_CLASSES:,}, got "
                         f"{printable(nc)}")


def check_imgsz(owner: str, imgsz: object) -> None:
    """Refuse an image size (one side, or ``[height, width]``) outside [``MIN_IMGSZ``, ``MAX_IMGSZ``] pixels."""
    sides = list(imgsz) if isinstance(imgsz, (list, tuple)) and 1 <= len(imgsz) <= 2 else [imgsz]
    if not all(whole_number(side) is not None and MIN_IMGSZ <= side <= MAX_IMGSZ for side in sides):
        raise LimitError(f"{owner}: image size must be from {MIN_IMGSZ} to {MAX_IMGSZ} pixels (one side, or "
                         f"[height, width]), got {printable(imgsz)}")


def check_stride(owner: str, stride: object) -> None:
    """Refuse a model stride (a number, or a tensor / list of per-level strides) outside [1, ``MAX_STRIDE``]."""
    values = stride.flatten().tolist() if isinstance(stride, torch.Tensor) and stride.numel() <= 16 else \
        list(stride) if isinstance(stride, (list, tuple)) and len(stride) <= 16 else [stride]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                             and v == int(v) and 1 <= v <= MAX_STRIDE for v in values):
        raise LimitError(f"{owner}: its stride must be whole numbers from 1 to {MAX_STRIDE} (P6 models' largest), got "
                         f"{printable(values if len(values) <= 4 else stride)}; the checkpoint was altered or damaged: "
                         f"use the one training wrote")


def check_image_channels(owner: str, channels: object) -> None:
    """Refuse an input channel count (a model YAML's ``channels:``) outside [1, ``MAX_IMAGE_CHANNELS``]."""
    count = whole_number(channels)
    if count is None or not 1 <= count <= MAX_IMAGE_CHANNELS:
        raise LimitError(f"{owner}: input image channels must be a whole number from 1 to {MAX_IMAGE_CHANNELS}, got "
                         f"{printable(channels)}")


def stored_attribute_error(owner: str, name: str, value: object, should: str) -> StoredAttributeError:
    """Return the error for a stored attribute ``name`` of ``owner`` whose ``value`` is not what ``should`` says."""
    return StoredAttributeError(f"{owner}: its stored {name} = {printable(value, 40)} {should}; the checkpoint was "
                                f"altered or damaged (fusing it would size buffers from that value): use the one "
                                f"training wrote")


def check_stored(owner: str, name: str, value: object, expected: object, source: str) -> None:
    """Refuse a stored attribute that is not exactly ``expected``, the value ``source`` (its own tensors) implies."""
    if type(value) is not type(expected) or value != expected:
        raise stored_attribute_error(owner, name, value, f"disagrees with {source} ({printable(expected, 40)})")


def _sizes(value: object, count: int) -> tuple[int, ...] | None:
    """Return a convolution's stored per-dimension setting as ``count`` ints, or None if it is not one."""
    sizes = value if isinstance(value, tuple) else (value,) * count if whole_number(value) is not None else None
    return sizes if sizes is not None and len(sizes) == count and all(whole_number(v) is not None for v in sizes) else None


def _check_sizes(owner: str, name: str, value: object, count: int, low: int, high: int | Iterable[int]) -> None:
    """Refuse a stored per-dimension setting unless each of its ``count`` ints lies in [``low``, ``high``]."""
    sizes = _sizes(value, count)
    highs = (high,) * count if isinstance(high, int) else tuple(high)
    if sizes is None or not all(low <= v <= h for v, h in zip(sizes, highs)):
        raise stored_attribute_error(owner, name, value, f"must be {count} whole numbers from {low} to {max(highs)}")


def _check_conv(owner: str, conv: nn.modules.conv._ConvNd) -> None:
    """Hold a convolution's stored channels, groups and kernel to its weight, and its stride, dilation and padding to
    bounds (``F.conv2d`` pads and strides by them)."""
    weight = conv.weight
    if not isinstance(weight, torch.Tensor) or weight.dim() < 3:
        raise stored_attribute_error(owner, "weight", weight, "is not a convolution kernel")
    dims = weight.dim() - 2
    groups = whole_number(conv.groups)
    if groups is None or groups < 1:
        raise stored_attribute_error(owner, "groups", conv.groups, "must be a positive whole number")
    if isinstance(conv, nn.modules.conv._ConvTransposeNd):  # weight: (in, out / groups, *kernel)
        inputs, outputs = weight.shape[0], weight.shape[1] * groups
    else:  # weight: (out, in / groups, *kernel)
        inputs, outputs = weight.shape[1] * groups, weight.shape[0]
    check_stored(owner, "in_channels", conv.in_channels, inputs, "its weight and groups")
    check_stored(owner, "out_channels", conv.out_channels, outputs, "its weight and groups")
    if outputs % groups or inputs % groups:
        raise stored_attribute_error(owner, "groups", groups,
                                     f"does not divide its {inputs} input and {outputs} output channels")
    check_stored(owner, "kernel_size", conv.kernel_size, tuple(weight.shape[2:]), "its weight")
    if conv.bias is not None and tuple(conv.bias.shape) != (outputs,):
        raise stored_attribute_error(owner, "bias shape", tuple(conv.bias.shape),
                                     f"does not fit its {outputs} output channels")
    _check_sizes(owner, "stride", conv.stride, dims, 1, MAX_STRIDE)
    _check_sizes(owner, "dilation", conv.dilation, dims, 1, MAX_KERNEL)
    if not (isinstance(conv.padding, str) and conv.padding in ("same", "valid")):  # 'same': never larger than input
        _check_sizes(owner, "padding", conv.padding, dims, 0,
                     [d * (k - 1) for d, k in zip(_sizes(conv.dilation, dims), weight.shape[2:])])
    if isinstance(conv, nn.modules.conv._ConvTransposeNd):
        _check_sizes(owner, "output_padding", conv.output_padding, dims, 0,
                     [max(s, d) - 1 for s, d in zip(_sizes(conv.stride, dims), _sizes(conv.dilation, dims))])
    if conv.padding_mode != "zeros" and not isinstance(conv.padding, str):  # F.pad pads by this copy of padding
        expected = [p for p in reversed(_sizes(conv.padding, dims)) for _ in range(2)]
        check_stored(owner, "_reversed_padding_repeated_twice", list(conv._reversed_padding_repeated_twice), expected,
                     "its padding")


def _check_batch_norm(owner: str, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Hold a BatchNorm's stored size to its tensors, and its eps to (0, 1)."""
    tensors = {name: getattr(bn, name) for name in ("weight", "bias", "running_mean", "running_var")
               if isinstance(getattr(bn, name, None), torch.Tensor)}
    shapes = {tuple(t.shape) for t in tensors.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise stored_attribute_error(owner, "tensor shapes", sorted(shapes),
                                     "must be one vector shape for all its statistics")
    check_stored(owner, "num_features", bn.num_features, next(iter(shapes))[0], "its tensors")
    if not (isinstance(bn.eps, float) and 0 < bn.eps < 1):
        raise stored_attribute_error(owner, "eps", bn.eps, "must be a number between 0 and 1")


def _check_pool(owner: str, pool: nn.modules.pooling._MaxPoolNd | nn.modules.pooling._AvgPoolNd) -> None:
    """Hold a pooling window's stored kernel, stride and padding to bounds (each output pixel reads kernel^2 inputs)."""
    dims = {"1d": 1, "2d": 2, "3d": 3}.get(type(pool).__name__[-2:].lower(), 2)
    _check_sizes(owner, "kernel_size", pool.kernel_size, dims, 1, MAX_KERNEL)
    _check_sizes(owner, "stride", pool.stride, dims, 1, MAX_STRIDE)
    _check_sizes(owner, "padding", pool.padding, dims, 0, [k // 2 for k in _sizes(pool.kernel_size, dims)])
    if isinstance(pool, nn.modules.pooling._MaxPoolNd):
        _check_sizes(owner, "dilation", pool.dilation, dims, 1, 1)


def _check_upsample(owner: str, upsample: nn.Upsample) -> None:
    """Hold an upsampling's stored factor to (0, ``MAX_UPSAMPLE``] and its output size to the image bound."""
    if upsample.size is not None:
        sizes = upsample.size if isinstance(upsample.size, tuple) else (upsample.size,)
        if not sizes or not all(whole_number(v) is not None and 1 <= v <= MAX_IMGSZ for v in sizes):
            raise stored_attribute_error(owner, "size", upsample.size, f"must be whole numbers from 1 to {MAX_IMGSZ}")
    factors = upsample.scale_factor if isinstance(upsample.scale_factor, tuple) else (upsample.scale_factor,)
    if upsample.scale_factor is not None and not all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= MAX_UPSAMPLE for f in factors):
        raise stored_attribute_error(owner, "scale_factor", upsample.scale_factor,
                                     f"must be a number from 0 to {MAX_UPSAMPLE}")


def check_torch_layer(owner: str, module: nn.Module) -> None:
    """Refuse a convolution, BatchNorm, pooling or upsampling layer whose stored sizes a file could have altered.

    What a forward pass or a fusion sizes with: a convolution's ``padding`` and ``stride`` (``F.conv2d`` pads by
    them), its ``in_channels`` (older Ultralytics releases build the folded convolution from it), a BatchNorm's
    ``num_features``, a pooling window's ``kernel_size``, an upsampling's ``scale_factor``. Other modules pass.
    """
    if isinstance(module, nn.modules.conv._ConvNd):
        _check_conv(owner, module)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        _check_batch_norm(owner, module)
    elif isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
        _check_pool(owner, module)
    elif isinstance(module, nn.Upsample):
        _check_upsample(owner, module)


def check_folded(owner: str, *tensors: torch.Tensor) -> None:
    """Refuse folded weights (a fused kernel and bias) that overflowed float32 to NaN or infinity."""
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise WeightsOverflowError(
            f"{owner}: its weights, finite in the file, overflow float32 when its BatchNorm is folded in (a huge BN "
            f"weight over a tiny running_var), so it cannot be fused; the checkpoint is damaged or was altered: use "
            f"the one training wrote, or an earlier epoch's")


def non_finite_tensor(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """Return the name of the first floating-point tensor holding NaN or an infinity, or None if all are finite."""
    for name, tensor in named_tensors:
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None
