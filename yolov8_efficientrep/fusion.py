"""Re-parameterize a model's Rep blocks and prove that the fused model computes what the unfused one computed.

The walk is duck-typed, like timm's ``reparameterize_model``: a *Rep block* is any module with a ``fuse_convs()``
method and a ``forward_fuse`` forward (this package's blocks, Ultralytics' ``RepConv``). Each block owns its algebra;
this module owns the walk, the float32 discipline and the numerical check that export, the ``fuse`` command, the
YOLOv6 import and users who deploy without Ultralytics' exporter all share. Reading and writing checkpoints is
``checkpoints.py``'s job; inspecting exported graphs, ``graphs.py``'s.
"""

from __future__ import annotations

import copy
import types
from typing import NamedTuple

import cv2
import torch
from torch import nn
from ultralytics.utils import ASSETS, LOGGER

from .blocks import check_rep_conv
from .errors import EfficientRepError
from .limits import (StoredAttributeError, WeightsOverflowError, check_image_channels, check_stored, check_stride,
                     check_torch_layer, non_finite_tensor)
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


def check_stored_attributes(model: nn.Module) -> None:
    """Refuse a model whose stored attributes disagree with its own tensors, before fusion or a check allocates.

    A checkpoint stores beside its tensors the sizes that fusion and the forward pass allocate with: a block's ``c1``,
    ``c2`` and ``g``, a convolution's padding, a head's class count. Checked here, named by their module: every
    convolution, BatchNorm, pooling and upsampling layer (``limits.check_torch_layer``), every module with a
    ``check_stored`` method (the plugin's blocks and head), and Ultralytics' own ``RepConv``.

    Raises:
        StoredAttributeError: A stored value disagrees with the module's tensors, or is out of bounds.
    """
    from ultralytics.nn.modules import RepConv

    for name, module in model.named_modules():
        owner = f"{name or 'model'} ({type(module).__name__})"
        check_torch_layer(owner, module)
        if callable(getattr(module, "check_stored", None)):
            module.check_stored(owner)
        elif isinstance(module, RepConv):
            check_rep_conv(module, owner)


def fuse_rep_blocks(model: nn.Module) -> int:
    """Fuse every Rep block of ``model`` that is not fused yet, in place, in float32; return how many it fused.

    Idempotent: fused blocks are skipped, so it can run before or after Ultralytics' ``model.fuse()``. A block held in
    another dtype is fused in float32 and cast back, so re-parameterizing always happens before any ``half()``.

    Raises:
        StoredAttributeError: A block's stored sizes disagree with its tensors (checked before fusing it).
        WeightsOverflowError: A block's weights overflow float32 once folded.
    """
    count = 0
    blocks = {id(block) for block in rep_blocks(model)}
    for name, block in [(name, m) for name, m in model.named_modules() if id(m) in blocks]:
        if is_fused(block):
            continue
        dtype = next(block.parameters()).dtype
        try:
            block.float().fuse_convs()
        except (StoredAttributeError, WeightsOverflowError) as error:  # the block names its class: add where it is
            raise type(error)(f"{name or 'model'}: {error}") from None
        block.to(dtype)
        block.forward = block.forward_fuse
        count += 1
    return count


def sample_image(height: int, width: int, channels: int = 3) -> torch.Tensor:
    """Return a real photo (Ultralytics' bundled ``bus.jpg``) as a 1xCxHxW float32 tensor in [0, 1], RGB.

    A photo exercises every channel with natural statistics, which a zero or random tensor does not. One-channel
    models get its grey level; other channel counts cycle through R, G, B.

    Raises:
        LimitError: ``channels`` (a model YAML's ``channels:``) is beyond ``limits.MAX_IMAGE_CHANNELS``.
    """
    check_image_channels("the check image", channels)
    image = cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), (width, height), interpolation=cv2.INTER_AREA)
    rgb = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1).float() / 255
    planes = rgb.mean(0, keepdim=True) if channels == 1 else rgb[torch.arange(channels) % 3]
    return planes.unsqueeze(0)


def image_size(imgsz: int | list[int] | tuple[int, ...], model: nn.Module, owner: str = "the model"
               ) -> tuple[int, int]:
    """Return (height, width) from an Ultralytics ``imgsz``, rounded up to multiples of the model's stride.

    Raises:
        LimitError: The model's stored ``stride`` is beyond ``limits.MAX_STRIDE`` (it would size the image).
    """
    from ultralytics.utils.checks import check_imgsz

    stride = getattr(model, "stride", 32)
    check_stride(owner, stride)
    height, width = check_imgsz(imgsz, stride=int(max(torch.as_tensor(stride).flatten().tolist())), min_dim=2)
    return height, width


def check_image(model: nn.Module, imgsz: int | list[int] | tuple[int, ...], owner: str = "the model"
                ) -> torch.Tensor:
    """Return the fusion check's image for an Ultralytics ``model``: ``sample_image`` at ``image_size``, with the
    model's stored ``stride`` and ``yaml['channels']`` checked first (both size the image), ``owner`` naming it.

    Raises:
        LimitError: The stride or the channel count is beyond ``limits.MAX_STRIDE`` / ``limits.MAX_IMAGE_CHANNELS``.
        StoredAttributeError: ``yaml['channels']`` disagrees with the input channels of the model's first convolution.
    """
    height, width = image_size(imgsz, model, owner)
    yaml = getattr(model, "yaml", None)
    channels = yaml.get("channels", 3) if isinstance(yaml, dict) else 3
    check_image_channels(f"{owner}: its yaml channels", channels)
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None:
        check_torch_layer(f"{owner}: its first convolution", first)
        check_stored(owner, "yaml channels", channels, first.weight.shape[1] * first.groups,
                     "the input channels of its first convolution")
    return sample_image(height, width, channels)


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
    """Give ``target``'s modules the settings of ``source``'s modules with the same name and class.

    Ultralytics' exporter configures the heads of its fused copy (export mode, box format, ``max_det``, ...), and some
    formats bind a decoder of their own onto the head (Edge TPU's ``tf_wrapper`` a normalized-box decoder, IMX its
    ``_inference`` with the head's ``anchors`` and ``strides``); an unfused reference must run with the same settings
    to compute the same outputs. So plain values and plain tensor attributes are copied, and a method bound onto a
    module that its class does not define is bound to the reference's module. Weights, buffers and the fused blocks'
    ``forward`` (their class's own ``forward_fuse``) are not touched.
    """
    targets = dict(target.named_modules())
    for name, module in source.named_modules():
        other = targets.get(name)
        if type(other) is not type(module):
            continue
        for key, value in vars(module).items():
            if (isinstance(value, types.MethodType) and value.__self__ is module
                    and getattr(type(module), value.__func__.__name__, None) is not value.__func__):
                setattr(other, key, types.MethodType(value.__func__, other))
            elif not key.startswith("_") and key != "training" and isinstance(value, (bool, int, float, str,
                                                                                      torch.Tensor)):
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


def _differences(fused: list[torch.Tensor], unfused: list[torch.Tensor]) -> tuple[float, float]:
    """Return (max |fused - unfused|, largest relative difference) of two models' outputs.

    Compared: the head's input feature maps and every floating-point output tensor, each difference relative to the
    largest magnitude of its own tensor. Integer outputs (a semantic export's class map, the argmax baked in) are
    decisions, not measurements: a pixel whose two best classes tie within rounding may flip, so only their shapes are
    compared, and the feature maps behind them carry the check.
    """
    shapes = [[tuple(t.shape) for t in out] for out in (fused, unfused)]
    if not unfused or shapes[0] != shapes[1]:
        raise FusionCheckError(f"fused and unfused models return different outputs: shapes {shapes[0]} vs {shapes[1]}")
    pairs = [(a, b) for a, b in zip(fused, unfused) if a.is_floating_point() and b.is_floating_point()]
    tiny = torch.finfo(torch.float32).tiny
    diffs = [((a - b.to(a.device)).abs().max().item(), b.abs().max().item()) for a, b in pairs]
    return max(d for d, _ in diffs), max(d / max(scale, tiny) for d, scale in diffs)


# What to do about weights that are finite in a file but overflow float32 once folded or run.
_OVERFLOW_FIX = "the checkpoint is damaged or was altered: use the one training wrote, or an earlier epoch's"


def _check_fused_weights(fused: nn.Module, what: str) -> None:
    """Refuse a fused model whose folded weights overflowed float32 (the fusion algebra did what it should)."""
    bad = non_finite_tensor(fused.state_dict().items())
    if bad is not None:
        raise WeightsOverflowError(
            f"fused {what}: tensor {bad} is NaN or infinite after folding: weights finite in the file overflow "
            f"float32 when a BatchNorm is folded in (a huge BN weight over a tiny running_var); {_OVERFLOW_FIX}")


def _first_non_finite(model: nn.Module, image: torch.Tensor) -> str:
    """Return the name of the first module whose output is NaN or infinite on ``image`` although its input is not."""
    found: list[str] = []

    def record(name: str):
        def hook(module, args, output):
            finite = lambda values: all(bool(torch.isfinite(t).all()) for t in _tensors(values))  # noqa: E731
            if not found and finite(args) and not finite(output):
                found.append(f"{name} ({type(module).__name__})")
        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in model.named_modules() if name]
    try:
        _outputs(model, image)
    finally:
        for hook in hooks:
            hook.remove()
    return found[0] if found else "a layer"


def _check_reference_outputs(unfused: nn.Module, outputs: list[torch.Tensor], image: torch.Tensor, what: str) -> None:
    """Refuse a check whose unfused reference computes NaN or infinity: the weights overflow, whatever the fusion."""
    if not all(bool(torch.isfinite(t).all()) for t in outputs):
        raise WeightsOverflowError(
            f"unfused {what}: {_first_non_finite(unfused, image)} computes NaN or infinite values on a "
            f"{tuple(image.shape)} image: weights finite in the file overflow float32 when run, so no fusion can be "
            f"checked; {_OVERFLOW_FIX}")


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

    Raises:
        WeightsOverflowError: Weights overflow float32: the fused model's once folded, or the unfused model's outputs
            on ``image`` are not finite. The file is at fault, not the fusion.
        FusionCheckError: The fused model's outputs differ from the unfused one's beyond the tolerance.
    """
    _check_fused_weights(fused, what)
    dtype = next(fused.parameters()).dtype
    tolerance = TOLERANCE.get(dtype, TOLERANCE[torch.float16]) if tolerance is None else tolerance
    if not inplace:
        fused, unfused = (copy.deepcopy(m).float().eval() for m in (fused, unfused))
    _copy_settings(fused, unfused)
    devices = {p.device.type for model in (fused, unfused) for p in model.parameters()}
    with full_fp32(devices) as switched:  # measure the fusion, not the device's TF32 / BF16 rounding
        outputs = [_outputs(model, image) for model in (fused, unfused)]
    _check_reference_outputs(unfused, outputs[1], image, what)
    max_abs, max_rel = _differences(*outputs)
    blocks = fused_rep_blocks(fused)[0]
    if not max_rel <= tolerance:  # also catches NaN
        raise FusionCheckError(
            f"fused {what} differs from the unfused one: max |diff| = {max_abs:.3g}, {max_rel:.3g} relative, above the "
            f"tolerance {tolerance:.0e}, on a {tuple(image.shape)} image, {blocks} Rep blocks fused: a block's fusion "
            f"algebra is wrong, or its weights changed while checking; deploy the unfused model and report this")
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
        StoredAttributeError: A stored attribute that fusion or the check sizes with disagrees with its module's
            tensors (see ``check_stored_attributes``); checked before anything is fused.
        WeightsOverflowError: Weights overflow float32 once folded.
    """
    check_stored_attributes(model)  # before anything is fused, copied to float32 or run
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
        try:
            fused.fuse(verbose=False)
        except WeightsOverflowError as error:  # raised by a block's fuse_convs(), the first one still unfused
            name = next(name for name, m in fused.named_modules() if m in rep_blocks(fused) and not is_fused(m))
            raise WeightsOverflowError(f"{name}: {error}") from None
    fuse_rep_blocks(fused)
    _check_fused_weights(fused, "model")  # Ultralytics' fuse() folded the Conv layers' BatchNorms unchecked
    if check:
        if image is None:
            if not hasattr(fused, "yaml"):
                raise ValueError("fuse_model: pass image=<an input tensor> to check a module that is not an "
                                 "Ultralytics model, or check=False")
            image = check_image(fused, imgsz)
        result = check_fusion(fused, unfused, image, inplace=True)
        precision = f", in full FP32 ({', '.join(result.switched)} off for the check)" if result.switched else ""
        LOGGER.info(f"fuse_model: fused {result.blocks} Rep blocks, max |diff| = {result.max_abs:.2e} "
                    f"({result.max_rel:.2e} relative, within the relative tolerance {result.tolerance:.0e}){precision}")
    return fused.to(dtype)
