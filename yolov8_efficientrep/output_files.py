"""Writing checkpoints safely: refuse a bad output path before any work, and never leave a partial file.

The fuse command and the YOLOv6 importer both write a new ``.pt`` that must not replace the user's files by accident
and must not exist at all unless it was checked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

import torch

Checked = TypeVar("Checked")


def refuse_output(source: Path, target: Path, overwrite: bool, replace_hint: str) -> None:
    """Raise a one-line error naming ``target`` if it cannot or must not be written.

    Args:
        source (Path): The file being converted; never overwritten.
        target (Path): The ``.pt`` to write.
        overwrite (bool): Whether an existing ``target`` may be replaced.
        replace_hint (str): How the caller allows replacing, for the message (e.g. ``add --force (force=True)``).
    """
    if target.suffix != ".pt":
        raise ValueError(f"{target}: the output must end in .pt, the only checkpoint suffix Ultralytics loads")
    if target.exists() and source.exists() and target.resolve() == source.resolve():
        raise ValueError(f"{target}: refusing to overwrite the source checkpoint {source.name}; choose another output "
                         f"path")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"{target}: the folder {target.parent} does not exist; create it, or choose another "
                                f"output path")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; {replace_hint} to replace it, or choose another output path")


def write_checked(target: Path, checkpoint: dict, check: Callable[[Path], Checked], overwrite: bool,
                  replace_hint: str) -> Checked:
    """Save ``checkpoint`` next to ``target``, run ``check`` on that file, and only then move it into place.

    ``check`` raises if the written file is wrong; any failure leaves no file behind. A ``target`` created by someone
    else meanwhile is not replaced unless ``overwrite``.

    Returns:
        What ``check`` returned.
    """
    partial = target.with_name(f".{target.stem}.partial.pt")  # Ultralytics loads only *.pt
    try:
        torch.save(checkpoint, partial)
        result = check(partial)
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists; {replace_hint} to replace it, or choose another output path")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return result
