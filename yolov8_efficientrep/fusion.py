"""Re-parameterize a model's Rep blocks and prove that the fused model computes what the unfused one computed.

The walk is duck-typed, like timm's ``reparameterize_model``: a *Rep block* is any module with a ``fuse_convs()``
method and a ``forward_fuse`` forward (this package's blocks, Ultralytics' ``RepConv``). Each block owns its algebra;
this module owns the walk, the float32 discipline and the numerical check that export, the ``fuse`` command and
users who deploy without Ultralytics' exporter all share.
"""

from __future__ import annotations

import copy
import importlib.util
import zipfile
from pathlib import Path
from typing import NamedTuple

import cv2
import torch
from torch import nn
from ultralytics.utils import ASSETS, LOGGER

from .limits import LimitError, check_imgsz, non_finite_tensor
from .output_files import missing_folder, refuse_output, write_checked
from .precision import full_fp32

# Largest accepted max |fused - unfused| / max |unfused| of any compared tensor, by the dtype of the fused weights:
# float32 fusion is exact to rounding (measured about 1e-6); a float16 copy adds one rounding of every weight.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


class FusionCheckError(RuntimeError):
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
    blocks = sum(is_fused(b) for b in rep_blocks(fused))
    if not max_rel <= tolerance:  # also catches NaN
        raise FusionCheckError(
            f"fused {what} differs from the unfused one: max |diff| = {max_abs:.3g} ({max_rel:.3g} relative to its "
            f"tensor's largest value, above the relative tolerance {tolerance:.0e}) on a {tuple(image.shape)} image, "
            f"{blocks} Rep blocks fused. A block's fusion algebra is wrong, or its weights changed between fusing and "
            f"checking; deploy the unfused model and report this with the checkpoint"
        )
    return FusionCheck(blocks, max_abs, max_rel, tolerance, switched)


def _qat(model: nn.Module) -> bool:
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
    """
    if _qat(model):
        raise ValueError("fuse_model: this model is quantization-aware trained; re-parameterizing its Rep blocks would "
                         "invalidate the quantization ranges it learned (Ultralytics keeps them unfused too)")
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


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """Load an Ultralytics ``.pt`` as ``yolo`` does (float32, eval, unfused); return (model, checkpoint dict)."""
    from ultralytics.nn import tasks

    loader = getattr(tasks, "load_checkpoint", None) or tasks.attempt_load_one_weight  # renamed in 8.4
    return loader(str(path))


# What to pass instead of a file that is not an Ultralytics checkpoint.
_SOURCE_FIX = "pass a .pt that Ultralytics training wrote, e.g. runs/detect/train/weights/best.pt"


def _pickled_globals(path: Path) -> list[str]:
    """Return the classes and functions a torch checkpoint names, read from its pickle without running anything.

    Empty where torch cannot list them (before 2.5) or the pickle is damaged; the loader then names the problem.
    """
    lister = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    try:
        return list(lister(path)) if lister else []
    except Exception:  # a damaged or unusual archive: loading it reports what is wrong
        return []


def _installed(package: str) -> bool:
    """Return True if the top-level ``package`` can be imported (found without importing it)."""
    package = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(package, package)  # Python 2 pickle names
    if package == "__main__":  # a class of the script that saved the file: the loader says it cannot find it
        return True
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _check_source(path: Path) -> None:
    """Refuse, in one line, a source that no loader should open: missing, a folder, not a torch archive, YOLOv6's.

    Runs before the output is checked (the input is the first thing a user gets wrong) and before Ultralytics' loader
    sees the file: for a checkpoint pickling modules that are not installed, such as YOLOv6's, that loader would try
    to pip-install them.
    """
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a checkpoint; {_SOURCE_FIX}")
    if not path.is_file():
        where = missing_folder(path.parent) if not path.parent.is_dir() else f"no file {path.name} in {path.parent}"
        raise FileNotFoundError(f"{path}: no such checkpoint ({where}); check the path, or {_SOURCE_FIX}")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise ValueError(f"{path} is not a PyTorch checkpoint (not the zip archive torch.save writes: it is empty, "
                         f"cut short or another kind of file); {_SOURCE_FIX}, copied whole")
    names = _pickled_globals(path)
    yolov6 = next((name for name in names if name.startswith("yolov6.")), None)
    if yolov6:
        raise ValueError(f"{path} is a YOLOv6 checkpoint (it pickles {yolov6}), not an Ultralytics one; convert it "
                         f"first with: yolov8-efficientrep import-yolov6 {path} -o {path.stem}-ultralytics.pt, then "
                         f"use that file")
    missing = next((name for name in names if not _installed(name.split(".")[0])), None)
    if missing:
        raise ValueError(f"{path} pickles {missing}, from the package {missing.split('.')[0]}, which is not "
                         f"installed; {_SOURCE_FIX} (nothing was loaded or installed)")


def _load_source(path: Path) -> tuple[nn.Module, dict]:
    """``load_checkpoint``, with a one-line ``ValueError`` naming the file when it cannot be loaded or is not finite.

    Ultralytics reports such files differently from release to release (a 40-line traceback, or a bare ``invalid
    literal for int()`` from the unpickler); whatever it raises, the user needs the file and the fix.
    """
    try:
        model, ckpt = load_checkpoint(path)
    except Exception as error:
        cause = (str(error).strip().splitlines() or [""])[0] or "no message"
        raise ValueError(f"{path} could not be loaded as an Ultralytics checkpoint ({type(error).__name__}: {cause}); "
                         f"{_SOURCE_FIX}") from error
    bad = non_finite_tensor(model.state_dict().items())
    if bad is not None:
        raise ValueError(f"{path}: its weights are not finite: tensor {bad} holds NaN or infinite values (a training "
                         f"run that diverged, or a damaged file); fuse a checkpoint whose weights are finite, such as "
                         f"an earlier epoch's")
    return model, ckpt


def _check_size(source: Path, model: nn.Module, imgsz: int | list[int] | None) -> int | list[int]:
    """Return the check image size: ``imgsz``, by default the checkpoint's training ``imgsz``, within the bounds."""
    if imgsz is not None:
        return imgsz  # checked before anything was loaded
    trained = (getattr(model, "args", None) or {}).get("imgsz", 640)
    try:
        check_imgsz(f"{source}: its train_args imgsz", trained)
    except LimitError as error:
        raise LimitError(f"{error}; pass --imgsz N (imgsz=N in Python) to check the fused model at another size"
                         ) from None
    return trained


def fused_path(source: str | Path, target: str | Path | None = None) -> Path:
    """Return where ``fuse_checkpoint`` writes: ``target``, by default ``<source stem>-fused.pt`` next to the source."""
    source = Path(source)
    return source.with_name(f"{source.stem}-fused.pt") if target is None else Path(target)


class FusedCheckpoint(NamedTuple):
    """What ``fuse_checkpoint`` wrote."""

    path: Path  # the fused checkpoint
    params: tuple[int, int]  # parameters before and after fusing
    sizes: tuple[int, int]  # file sizes in bytes, source and fused
    check: FusionCheck  # the written file, reloaded, against the unfused source


def fuse_checkpoint(source: str | Path, target: str | Path | None = None, overwrite: bool = False, half: bool = False,
                    imgsz: int | list[int] | None = None) -> FusedCheckpoint:
    """Write a deploy checkpoint with every Rep block fused; ``yolo predict/val/export`` load it like any ``.pt``.

    The written file is reloaded the way ``yolo`` loads it and checked against the unfused source; a file that fails
    the check is removed, and so is one interrupted by SIGTERM. The source is never modified. The input is checked
    first, then the output, then the checkpoint is loaded; nothing is written before all three pass.

    Args:
        source (str | Path): An Ultralytics checkpoint (e.g. ``runs/detect/train/weights/best.pt``) with Rep blocks.
        target (str | Path, optional): Output path; defaults to ``<source stem>-fused.pt`` next to the source.
        overwrite (bool): Replace ``target`` if it is a file that exists (never the source itself).
        half (bool): Store float16 weights like Ultralytics' training checkpoints (half the size, one more rounding,
            checked at the float16 tolerance); by default float32, equal to the unfused model within 1e-4.
        imgsz (int | list, optional): Check image size (32 to 2048 pixels); defaults to the checkpoint's training
            ``imgsz``, which must be within the same bounds.

    Returns:
        (FusedCheckpoint): The written path, parameter counts, file sizes and the check's result.

    Raises:
        FileNotFoundError: ``source`` or the folder of ``target`` does not exist.
        IsADirectoryError: ``source`` or ``target`` is a folder.
        FileExistsError: ``target`` exists and ``overwrite`` is False (``output_files.OutputExistsError``).
        ValueError: ``source`` is not a loadable Ultralytics checkpoint (a YOLOv6 one: the message names
            ``import-yolov6``), holds weights that are not finite, or has nothing to fuse; ``target`` is not a ``.pt``
            or is the source; ``imgsz`` is out of bounds (``limits.LimitError``).
        OSError: ``target`` could not be written (``output_files.OutputWriteError``); nothing is left behind.
    """
    source, target = Path(source), fused_path(source, target)
    if imgsz is not None:
        check_imgsz("imgsz (--imgsz)", imgsz)
    _check_source(source)
    refuse_output(source, target, overwrite, "pass overwrite=True")
    model, ckpt = _load_source(source)
    blocks = rep_blocks(model)
    if not blocks:
        raise ValueError(f"{source} has no Rep blocks to fuse, so there is nothing to do; use it as it is (Ultralytics "
                         f"folds its Conv+BN layers itself when predict, val or export load it)")
    if all(is_fused(b) for b in blocks):
        raise ValueError(f"{source} is already fused (a deploy checkpoint), so there is nothing to do; use it as it is "
                         f"for predict, val and export")
    imgsz = _check_size(source, model, imgsz)  # before the check image and its activations are allocated
    fused = fuse_model(model, check=False)  # the written file is checked below
    fused = fused.half() if half else fused
    params = tuple(sum(p.numel() for p in m.parameters()) for m in (model, fused))

    def check(written_file: Path) -> FusionCheck:
        written, _ = load_checkpoint(written_file)  # float32, as yolo loads it; float16 weights: float16's tolerance
        image = sample_image(*image_size(imgsz, model), model.yaml.get("channels", 3))
        tolerance = TOLERANCE[torch.float16] if half else None
        return check_fusion(written, model, image, tolerance, f"checkpoint {target}", inplace=True)

    result = write_checked(target, {**ckpt, "model": fused, "ema": None, "optimizer": None, "updates": None,
                                    "efficientrep": {"fused_from": str(source), "half": half}},
                           check, overwrite, "pass overwrite=True")
    return FusedCheckpoint(target, params, (source.stat().st_size, target.stat().st_size), result)


def onnx_unfused_nodes(path: str | Path) -> list[str]:
    """Return the nodes of an ONNX graph that fusion should have removed; empty for a fully fused export.

    These are BatchNormalization nodes, and Add nodes summing two Conv outputs (the branches of an unfused Rep block).
    Needs the ``onnx`` package.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {output: node.op_type for node in graph.node for output in node.output}
    return [f"{node.op_type} {node.name}" for node in graph.node if node.op_type == "BatchNormalization"
            or (node.op_type == "Add" and all(producer.get(name) == "Conv" for name in node.input))]
