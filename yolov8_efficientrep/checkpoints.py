"""Read and write Ultralytics checkpoints: load one as ``yolo`` does, build the dict, write a fused deploy file.

Writing goes through ``output_files.write_checked`` (an exclusive temporary file, checked before it is moved into
place); ``fuse_checkpoint`` is the ``fuse`` command's work, and the YOLOv6 importer writes its result the same way.
"""

from __future__ import annotations

import importlib.util
import zipfile
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from .fusion import TOLERANCE, FusionCheck, check_fusion, fuse_model, image_size, is_fused, rep_blocks, sample_image
from .limits import LimitError, check_imgsz, non_finite_tensor
from .output_files import missing_folder, refuse_output, write_checked


def checkpoint_file(value: object) -> str | Path | None:
    """Return a training argument (``model=``, ``pretrained=``) as given if it names an existing ``.pt`` file, else
    None (a YAML, a bool, a file that does not exist)."""
    if isinstance(value, (str, Path)) and str(value).endswith(".pt") and Path(value).is_file():
        return value
    return None


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """Load an Ultralytics ``.pt`` as ``yolo`` does (float32, eval, unfused); return (model, checkpoint dict)."""
    from ultralytics.nn import tasks

    loader = getattr(tasks, "load_checkpoint", None) or tasks.attempt_load_one_weight  # renamed in 8.4
    return loader(str(path))


def ultralytics_checkpoint(model: nn.Module, based_on: dict | None = None, **entries: object) -> dict:
    """Return a checkpoint dict in Ultralytics' layout holding ``model``, for predict, val, export and training.

    Args:
        model (nn.Module): The model to store (as is: cast it first if it should be stored in another dtype).
        based_on (dict, optional): The checkpoint it was made from: its entries (``train_args``, ``epoch``, its date
            and version, ...) are kept.
        **entries: More entries, e.g. the plugin's record of where the weights came from.

    Returns:
        (dict): No optimizer state, EMA or update count: a fresh training starts from ``model``'s weights.
    """
    from ultralytics import __version__

    defaults = {"date": datetime.now().astimezone().isoformat(), "version": __version__,
                "license": "AGPL-3.0 License (https://ultralytics.com/license)", "docs": "https://docs.ultralytics.com",
                "epoch": -1, "best_fitness": None}
    return {**defaults, **(based_on or {}), "model": model, "ema": None, "updates": None, "optimizer": None,
            **entries}


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

    checkpoint = ultralytics_checkpoint(fused, based_on=ckpt, efficientrep={"fused_from": str(source), "half": half})
    result = write_checked(target, checkpoint, check, overwrite, "pass overwrite=True")
    return FusedCheckpoint(target, params, (source.stat().st_size, target.stat().st_size), result)
