"""Read and write Ultralytics checkpoints: load one as ``yolo`` does, build the dict, write a fused deploy file.

Writing goes through ``output_files.write_checked`` (an exclusive temporary file, checked before it is moved into
place); ``fuse_checkpoint`` is the ``fuse`` command's work, and the YOLOv6 importer writes its result the same way.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from .errors import UntrustedFileError
from .fusion import TOLERANCE, FusionCheck, check_fusion, check_image, fuse_model, is_fused, rep_blocks
from .limits import LimitError, NonFiniteWeightsError, check_imgsz, non_finite_tensor, non_finite_weights
from .messages import printable
from .output_files import missing_folder, refuse_output, write_checked
from .rebuild import TRUST_HINT, RestrictedLoadError, is_fused_record, read_restricted, rebuild, rep_block_records
from .untrusted.decode import UntrustedCheckpoint, scan_untrusted
from .untrusted.jail import check_file


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


def _installed(package: str) -> bool:
    """Return True if the top-level ``package`` can be imported (found without importing it)."""
    package = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(package, package)  # Python 2 pickle names
    if package == "__main__":  # a class of the script that saved the file: the loader says it cannot find it
        return True
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _foreign_global(path: Path, name: str) -> str | None:
    """Say what is wrong with a checkpoint that pickles ``name``: YOLOv6's class, or a package not installed."""
    shown = printable(name, 120)
    if name.startswith("yolov6."):
        return (f"{path} is a YOLOv6 checkpoint, not an Ultralytics one; convert it first: yolov8-efficientrep "
                f"import-yolov6 {path} -o {path.stem}-ultralytics.pt")
    if not _installed(name.split(".")[0]):
        return (f"{path} pickles {shown}, from the package {printable(name.split('.')[0], 60)}, which is not "
                f"installed; {_SOURCE_FIX} (nothing was loaded or installed)")
    return None


def _refusal(path: Path, error: UntrustedFileError) -> RestrictedLoadError:
    """Say in one line why the jailed reader refused the source of ``fuse``, and what to do."""
    if error.reason == "global":
        known = _foreign_global(path, str(error.name))
        return RestrictedLoadError(known or f"{path} pickles {printable(error.name, 120)}, which fuse does not read "
                                            f"as data (only Ultralytics', torch's and the plugin's layers); "
                                            f"{TRUST_HINT}")
    if error.reason == "format":
        return RestrictedLoadError(f"{path} is not a PyTorch checkpoint ({error}); {_SOURCE_FIX}, copied whole")
    if error.reason == "damaged":
        return RestrictedLoadError(f"{path} is damaged ({error}); copy it again whole, or {_SOURCE_FIX}")
    if error.reason == "file":
        return RestrictedLoadError(f"{error}; {_SOURCE_FIX}")
    return RestrictedLoadError(f"{path} cannot be read as an Ultralytics checkpoint: {error}; nothing in the file was "
                               f"run. Ultralytics never writes such a file: {_SOURCE_FIX}")


def _check_source(path: Path) -> None:
    """Refuse, in one line, a source that no loader should open: missing, a folder, a FIFO, unreadable.

    Runs before the output is checked: the input is the first thing a user gets wrong.
    """
    if not path.exists():
        where = missing_folder(path.parent) if not path.parent.is_dir() else f"no file {path.name} in {path.parent}"
        raise FileNotFoundError(f"{path}: no such checkpoint ({where}); check the path, or {_SOURCE_FIX}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a checkpoint; {_SOURCE_FIX}")
    try:
        check_file(path)
    except UntrustedFileError as error:
        raise _refusal(path, error) from None


def _read_restricted(path: Path) -> UntrustedCheckpoint:
    """Read ``path`` as data in the jailed reader; refuse it now if it has nothing to fuse or weights not finite."""
    try:
        checkpoint = read_restricted(path)
    except UntrustedFileError as error:
        raise _refusal(path, error) from None
    if checkpoint.root is not None:
        blocks = rep_block_records(checkpoint.root)
        if not blocks:
            raise ValueError(f"{path} has no Rep blocks to fuse, so there is nothing to do; use it as it is "
                             f"(Ultralytics folds its Conv+BN layers itself when predict, val or export load it)")
        if all(map(is_fused_record, blocks)):
            raise ValueError(f"{path} is already fused (a deploy checkpoint), so there is nothing to do; use it as it "
                             f"is for predict, val and export")
        if checkpoint.non_finite is not None:
            raise _non_finite(path, checkpoint.non_finite)
    return checkpoint


def _screen_trusted(path: Path) -> None:
    """List what a file the user trusts pickles, in the jailed reader, before Ultralytics' loader runs it.

    A YOLOv6 checkpoint, or one pickling a package that is not installed (which Ultralytics' loader would try to
    pip-install), is named instead of loaded; so is a file laid out otherwise than torch writes (legacy data before an
    archive would be read by torch's loader and not by this screen).
    """
    try:
        names = scan_untrusted(path)
    except UntrustedFileError as error:
        raise _refusal(path, error) from None
    problem = next(filter(None, (_foreign_global(path, name) for name in names)), None)
    if problem:
        raise RestrictedLoadError(problem)


def _load_trusted(path: Path) -> tuple[nn.Module, dict]:
    """Load ``path`` with Ultralytics' own loader, which runs code the file holds (after ``_screen_trusted``)."""
    try:
        model, ckpt = load_checkpoint(path)
    except Exception as error:  # whatever Ultralytics' loader raises, the user needs the file and the fix
        cause = (str(error).strip().splitlines() or [""])[0] or "no message"
        raise RestrictedLoadError(f"{path} could not be loaded as an Ultralytics checkpoint ({type(error).__name__}: "
                                  f"{printable(cause, 160)}); {_SOURCE_FIX}") from error
    bad = non_finite_tensor(model.state_dict().items())
    if bad is not None:
        raise _non_finite(path, bad)
    return model, ckpt


def _non_finite(path: Path, tensor: str) -> NonFiniteWeightsError:
    return non_finite_weights(str(path), tensor, "fuse")


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
                    imgsz: int | list[int] | None = None, trusted: bool = False) -> FusedCheckpoint:
    """Write a deploy checkpoint with every Rep block fused; ``yolo predict/val/export`` load it like any ``.pt``.

    The source is read as data by default, whoever wrote it: parsed in a jailed child process and its model rebuilt
    from its own YAML (``rebuild.py``), so nothing stored in the file runs. ``trusted=True`` loads it with
    Ultralytics' own loader instead, which runs code stored in the file: only for checkpoints you made yourself,
    or models the restricted reading cannot rebuild (modified after training, saved by another release's classes).
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
        trusted (bool): Load ``source`` with Ultralytics' full unpickler, which runs code stored in the file.

    Returns:
        (FusedCheckpoint): The written path, parameter counts, file sizes and the check's result.

    Raises:
        FileNotFoundError: ``source`` or the folder of ``target`` does not exist.
        IsADirectoryError: ``source`` or ``target`` is a folder.
        FileExistsError: ``target`` exists and ``overwrite`` is False (``output_files.OutputExistsError``).
        ValueError: ``source`` is not a loadable Ultralytics checkpoint (a YOLOv6 one: the message names
            ``import-yolov6``; one the restricted reading cannot rebuild: ``rebuild.RestrictedLoadError``), holds weights that are not finite, or has nothing to fuse; ``target`` is not a ``.pt``
            or is the source; ``imgsz`` is out of bounds (``limits.LimitError``).
        OSError: ``target`` could not be written (``output_files.OutputWriteError``); nothing is left behind.
    """
    source, target = Path(source), fused_path(source, target)
    if imgsz is not None:
        check_imgsz("imgsz (--imgsz)", imgsz)
    _check_source(source)
    read = None if trusted else _read_restricted(source)  # the input, read as data, before the output is checked
    if trusted:
        _screen_trusted(source)
    refuse_output(source, target, overwrite, "pass overwrite=True")
    model, ckpt = _load_trusted(source) if trusted else rebuild(read)
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
        image = check_image(model, imgsz, owner=str(source))
        tolerance = TOLERANCE[torch.float16] if half else None
        return check_fusion(written, model, image, tolerance, f"checkpoint {target}", inplace=True)

    checkpoint = ultralytics_checkpoint(fused, based_on=ckpt, efficientrep={"fused_from": str(source), "half": half})
    result = write_checked(target, checkpoint, check, overwrite, "pass overwrite=True")
    return FusedCheckpoint(target, params, (source.stat().st_size, target.stat().st_size), result)
