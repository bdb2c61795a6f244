"""Re-parameterize a model's Rep blocks and prove that the fused model computes what the unfused one computed.

The walk is duck-typed, like timm's ``reparameterize_model``: a *Rep block* is any module with a ``fuse_convs()``
method and a ``forward_fuse`` forward (this package's blocks, Ultralytics' ``RepConv``). Each block owns its algebra;
this module owns the walk, the float32 discipline and the numerical check that export, the ``fuse`` command, the
YOLOv6 import and users who deploy without Ultralytics' exporter all share. Reading and writing checkpoints is
``checkpoints.py``'s job; inspecting exported graphs, ``graphs.py``'s.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import cv2
import torch
from torch import nn
from ultralytics.utils import ASSETS, LOGGER

from .errors import EfficientRepError
from .precision import full_fp32

# Largest accepted max |fused - unfused| / max |unfused| of any compared tensor, by the dtype of the fused weights:
# float32 fusion is exact to rounding (measured about 1e-6); a float16 copy adds one rounding of every weight.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


class FusionCheckError(EfficientRepError, RuntimeError):
    """The fused model's outputs differ from the unfused model's by more than the tolerance."""


class FusionCheck(NamedTuple):
    """Result of comparing a fused model with its unfused original on one image."""

    blocks: int  # Rep blocks in fused form
    max_abs: float  # max |fused - unfused| over the head's input feature maps and every output element
    max_rel: float  # the largest max |fused - unfused| / max |unfused| of one such tensor
    tolerance: float  # the bound on max_rel
    switched: tuple[str, ...] = ()  # reduced-precision modes switched off for the check, e.g. "TF32 cuDNN convolutions"


def rep_blocks(model: nn.Module) -> list[nn.Module]:
    """Return every Rep block in ``model``: modules with a ``fuse_convs()`` method and a ``forward_fuse`` forward."""
    return [m for m in model.modules() if callable(getattr(m, "fuse_convs", None)) and hasattr(m, "forward_fuse")]


def is_fused(block: nn.Module) -> bool:
    """Return True if a Rep block runs its fused form (its ``forward`` is its ``forward_fuse``)."""
    return block.forward == block.forward_fuse


def fused_rep_blocks(model: nn.Module) -> tuple[int, int]:
    """Return (fused, all) Rep blocks of ``model``."""
    blocks = rep_blocks(model)
    return sum(map(is_fused, blocks)), len(blocks)


def fuse_rep_blocks(model: nn.Module) -> int:
    """Fuse every Rep block of ``model`` that is not fused yet, in place, in float32; return how many it fused.

    Idempotent: fused blocks are skipped, so it can run before or after Ultralytics' ``model.fuse()``. A block held in
    another dtype is fused in float32 and cast back, so re-parameterizing always happens before any ``half()``.
    """
    count = 0
    for block in rep_blocks(model):
        if is_fused(block):
            continue
        dtype = next(block.parameters()).dtype
        block.float().fuse_convs()
        block.to(dtype)
        block.forward = block.forward_fuse
        count += 1
    return count


def sample_image(height: int, width: int, channels: int = 3) -> torch.Tensor:
    """Return a real photo (Ultralytics' bundled ``bus.jpg``) as a 1xCxHxW float32 tensor in [0, 1], RGB.

    A photo exercises every channel with natural statistics, which a zero or random tensor does not. One-channel
    models get its grey level; other channel counts cycle through R, G, B.
    """
    image = cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), (width, height), interpolation=cv2.INTER_AREA)
    rgb = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1).float() / 255
    planes = rgb.mean(0, keepdim=True) if channels == 1 else rgb[torch.arange(channels) % 3]
    return planes.unsqueeze(0)


def image_size(imgsz: int | list[int] | tuple[int, ...], model: nn.Module) -> tuple[int, int]:
    """Return (height, width) from an Ultralytics ``imgsz``, rounded up to multiples of the model's stride."""
    from ultralytics.utils.checks import check_imgsz

    height, width = check_imgsz(imgsz, stride=int(max(getattr(model, "stride", [32]))), min_dim=2)
    return height, width


def _tensors(output) -> list[torch.Tensor]:
    """Flatten a model output (tensor, or nested tuple / list / dict of them) into a list of tensors."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


def _copy_settings(source: nn.Module, target: nn.Module) -> None:
    """Give ``target``'s modules the plain-valued settings of ``source``'s modules with the same name and class.

    Ultralytics' exporter configures the heads of its fused copy (export mode, box format, ``max_det``, ...); an
    unfused reference must run with the same settings to compute the same outputs. Weights, buffers and methods
    (such as the fused blocks' ``forward``) are not touched.
    """
    targets = dict(target.named_modules())
    for name, module in source.named_modules():
        other = targets.get(name)
        if type(other) is type(module):
            for key, value in vars(module).items():
                if not key.startswith("_") and key != "training" and isinstance(value, (bool, int, float, str)):
                    setattr(other, key, value)


def _outputs(model: nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    """Run ``model`` on ``image``; return its head's input feature maps (Ultralytics models) and its output tensors.

    The feature maps are what the Rep blocks of the backbone and neck compute, each on its own scale; the decoded
    output mixes pixel coordinates with scores, so a relative difference of it alone would be dominated by the boxes.
    """
    layers = getattr(model, "model", None)
    features: list[torch.Tensor] = []
    hook = layers[-1].register_forward_pre_hook(lambda m, args: features.extend(_tensors(args))) \
        if isinstance(layers, nn.Sequential) else None
    try:
        with torch.no_grad():
            output = model(image.to(next(model.parameters()).device))
    finally:
        if hook is not None:
            hook.remove()
    return features + _tensors(output)


def compare(fused: nn.Module, unfused: nn.Module, image: torch.Tensor) -> tuple[float, float]:
    """Run both models on ``image``; return (max |fused - unfused|, largest relative difference).

    Compared: the head's input feature maps and every output tensor, each difference relative to the largest magnitude
    of its own tensor. Both models must be in eval mode, float32, and return outputs of the same structure.
    """
    outputs = [_outputs(model, image) for model in (fused, unfused)]
    shapes = [[tuple(t.shape) for t in out] for out in outputs]
    if not outputs[1] or shapes[0] != shapes[1]:
        raise FusionCheckError(f"fused and unfused models return different outputs: shapes {shapes[0]} vs {shapes[1]}")
    tiny = torch.finfo(torch.float32).tiny
    diffs = [((a - b.to(a.device)).abs().max().item(), b.abs().max().item()) for a, b in zip(*outputs)]
    return max(d for d, _ in diffs), max(d / max(scale, tiny) for d, scale in diffs)


def check_fusion(fused: nn.Module, unfused: nn.Module, image: torch.Tensor, tolerance: float | None = None,
                 what: str = "model", inplace: bool = False) -> FusionCheck:
    """Compare a fused model with its unfused original on ``image``; raise ``FusionCheckError`` above tolerance.

    Args:
        fused (nn.Module): The fused model.
        unfused (nn.Module): The model it was fused from.
        image (torch.Tensor): The input, e.g. ``sample_image(...)``.
        tolerance (float, optional): Bound on the relative difference; by default ``TOLERANCE`` for the dtype of
            the fused model's weights.
        what (str): Names the model in the error message.
        inplace (bool): Run the two models themselves (both float32, in eval mode; the unfused one takes the fused
            one's head settings) instead of float32 copies that leave them unchanged.

    Both models run in full float32 precision (``precision.full_fp32``): TF32 convolutions, on by default on NVIDIA
    GPUs since Ampere, round as much as the tolerance allows. The user's settings are restored afterwards.

    Returns:
        (FusionCheck): Number of fused Rep blocks, max |diff|, relative difference, tolerance, and the reduced-precision
            modes switched off for the check.
    """
    dtype = next(fused.parameters()).dtype
    tolerance = TOLERANCE.get(dtype, TOLERANCE[torch.float16]) if tolerance is None else tolerance
    if not inplace:
        fused, unfused = (copy.deepcopy(m).float().eval() for m in (fused, unfused))
    _copy_settings(fused, unfused)
    devices = {p.device.type for model in (fused, unfused) for p in model.parameters()}
    with full_fp32(devices) as switched:  # measure the fusion, not the device's TF32 / BF16 rounding
        max_abs, max_rel = compare(fused, unfused, image)
    blocks = fused_rep_blocks(fused)[0]
    if not max_rel <= tolerance:  # also catches NaN
        raise FusionCheckError(
            f"fused {what} differs from the unfused one: max |diff| = {max_abs:.3g} ({max_rel:.3g} relative to its "
            f"tensor's largest value, above the relative tolerance {tolerance:.0e}) on a {tuple(image.shape)} image, "
            f"{blocks} Rep blocks fused. A block's fusion algebra is wrong, or its weights changed between fusing and "
            f"checking; deploy the unfused model and report this with the checkpoint"
        )
    return FusionCheck(blocks, max_abs, max_rel, tolerance, switched)


def is_qat(model: nn.Module) -> bool:
    """Return True for a quantization-aware-trained model (Ultralytics >=8.4 marks them; older versions have none)."""
    from ultralytics.utils import torch_utils

    return bool(getattr(torch_utils, "is_qat", lambda m: False)(model))


def fuse_model(model: nn.Module, inplace: bool = False, check: bool = True, imgsz: int | tuple[int, int] = 640,
               image: torch.Tensor | None = None) -> nn.Module:
    """Return ``model`` with every Rep block re-parameterized, checked against the unfused model.

    For users who deploy without Ultralytics' exporter (the exporter itself does this through the plugin's export
    callback). An Ultralytics model also gets its own ``fuse()`` (Conv+BN folding); then every Rep block it left
    unfused is fused by the duck-typed walk. Fusion runs in float32 and the result is cast back to the model's dtype.

    Args:
        model (nn.Module): An Ultralytics model (``YOLO(...).model``) or any module holding Rep blocks.
        inplace (bool): Fuse ``model`` itself; by default a deep copy is fused and ``model`` stays trainable.
        check (bool): Compare the fused model with the unfused one and raise ``FusionCheckError`` above tolerance.
        imgsz (int | tuple): Height and width of the check image for an Ultralytics model.
        image (torch.Tensor, optional): The check input, required for a module that is not an Ultralytics model.

    Returns:
        (nn.Module): The fused model (``model`` itself when ``inplace``), in eval mode.

    Raises:
        ValueError: ``model`` was quantization-aware trained with its Rep blocks unfused: fusing them now would
            invalidate the ranges it learned. A model QAT trained fused (``qat.py``) only gets Ultralytics' ``fuse()``.
    """
    if is_qat(model):
        blocks = rep_blocks(model)
        if not all(map(is_fused, blocks)):
            raise ValueError("fuse_model: this model was quantization-aware trained with its Rep blocks unfused; "
                             "fusing them now would invalidate the quantization ranges it learned (Ultralytics keeps "
                             "them unfused too). Train QAT again with this plugin installed: it trains them fused")
        fused = (model if inplace else copy.deepcopy(model)).eval()
        return fused.fuse(verbose=False)  # folds the BatchNorms left in Conv layers; the Rep blocks trained fused
    dtype = next(model.parameters()).dtype
    fused = (model if inplace else copy.deepcopy(model)).float().eval()
    unfused = copy.deepcopy(fused) if check else None
    if hasattr(fused, "is_fused") and callable(getattr(fused, "fuse", None)):  # an Ultralytics BaseModel
        fused.fuse(verbose=False)
    fuse_rep_blocks(fused)
    if check:
        if image is None:
            if not hasattr(fused, "yaml"):
                raise ValueError("fuse_model: pass image=<an input tensor> to check a module that is not an "
                                 "Ultralytics model, or check=False")
            image = sample_image(*image_size(imgsz, fused), fused.yaml.get("channels", 3))
        result = check_fusion(fused, unfused, image, inplace=True)
        precision = f", in full FP32 ({', '.join(result.switched)} off for the check)" if result.switched else ""
        LOGGER.info(f"fuse_model: fused {result.blocks} Rep blocks, max |diff| = {result.max_abs:.2e} "
                    f"({result.max_rel:.2e} relative, within the relative tolerance {result.tolerance:.0e}){precision}")
    return fused.to(dtype)
