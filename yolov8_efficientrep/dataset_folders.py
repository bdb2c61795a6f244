"""Where the generated data sets live, and what their generator may write there: the folder policy.

The shapes generator (``shapes.py``) writes only into a folder of its own: one it creates, an empty one, or one
holding its marker file (``MARKER``), which it writes first. A folder of other files is refused, so no one's images or
labels are overwritten. Inside its folder it never follows a symbolic link: a link where it would write a file or
make a folder (``images``, ``images/train``, a class folder, an image) is refused, so no write lands outside the
folder it owns. ``classification_folder`` resolves the folder of a generated classification data YAML, which
Ultralytics' classification code takes instead of the YAML (``integration/lookups.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from .errors import EfficientRepError
from .messages import printable

MARKER = ".yolov8-efficientrep-shapes"  # in every folder the generator writes: it may rewrite its files there


class FolderNotOwnedError(EfficientRepError, FileExistsError):
    """The data set folder holds what the generator did not write: other files, or a symbolic link inside it."""


class FolderIsFileError(EfficientRepError, NotADirectoryError):
    """The data set folder, or a folder above it, is a file."""


def claim_folder(root: Path, owner: str, fix: str) -> None:
    """Make ``root`` a folder the generator may write into, or refuse in one line naming it.

    A new or empty folder gets the marker file first; a folder that holds the marker (a file, not a link) was the
    generator's already.

    Args:
        root (Path): The data set folder.
        owner (str): Starts the message: who asked for this folder (a function, or a data YAML's ``path:``).
        fix (str): Ends the message: what the user can do instead.

    Raises:
        FolderIsFileError: ``root`` or a folder above it is a file (a ``NotADirectoryError``).
        FolderNotOwnedError: ``root`` is a folder of other files, which generating would overwrite or mix with (a
            ``FileExistsError``).
    """
    marker = root / MARKER
    if marker.is_file() and not marker.is_symlink():
        return
    blocking = next((path for path in (root, *root.parents) if path.exists() and not path.is_dir()), None)
    if blocking is not None:
        raise FolderIsFileError(f"{owner} {root}: {blocking} is a file, not a folder; {fix}")
    held = sorted(printable(path.name, 40) for path in root.iterdir()) if root.is_dir() else []
    if held:
        listed = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
        raise FolderNotOwnedError(f"{owner} {root} is a folder the shapes generator did not create (it holds {listed} "
                                  f"and no {MARKER} file), so generating could overwrite its files; {fix}")
    root.mkdir(parents=True, exist_ok=True)
    write_file(root, MARKER, b"Written by yolov8_efficientrep.shapes, which may rewrite the files of this folder.\n")


def _refuse_link(root: Path, link: Path) -> None:
    """Refuse, in one line naming it, a symbolic link where the generator would write inside its folder ``root``."""
    if link.is_symlink():
        raise FolderNotOwnedError(
            f"{link} is a symbolic link inside the shapes data set's own folder {root.name}, and the generator never "
            f"writes through a link (it could overwrite files elsewhere): remove or rename it, or generate into a new "
            f"folder")


def make_folder(root: Path, *parts: str) -> Path:
    """Return the folder ``root/parts...``, made where missing, refusing a symbolic link at any level below ``root``."""
    folder = root
    for part in parts:
        folder = folder / part
        _refuse_link(root, folder)
        folder.mkdir(exist_ok=True)
    return folder


def write_file(root: Path, relative: str, data: bytes) -> None:
    """Write ``data`` as the file ``root/relative``, a new file whatever was there: never through a link (refused),
    never into another name's data (a hard-linked file is replaced, not rewritten)."""
    *parts, name = Path(relative).parts
    path = make_folder(root, *parts) / name
    _refuse_link(root, path)
    if path.exists():
        path.unlink()  # a file of the generator's own folder; its other hard links, if any, keep their data
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def classification_folder(data_yaml: str | Path) -> Path | None:
    """Return the folder of a generated classification data YAML (``generate: {task: classify}``), made on first use.

    Ultralytics' classification trainer, validator and exporter take a folder of ``train/<class>/`` and
    ``val/<class>/`` images, not a data YAML, and never run a ``download:`` script; the plugin hands them this folder
    for such a YAML (``data=shapes-cls.yaml``). ``path:`` is resolved as Ultralytics resolves it for detection YAMLs:
    relative to its ``datasets_dir`` unless it exists. Returns None for every other YAML.
    """
    data = yaml.safe_load(Path(data_yaml).read_text())
    generate = data.get("generate") if isinstance(data, dict) else None
    if not isinstance(generate, dict) or generate.get("task") != "classify":
        return None
    from ultralytics.utils import DATASETS_DIR

    root = Path(data.get("path") or Path(data_yaml).parent)
    if not root.exists() and not root.is_absolute():
        root = (DATASETS_DIR / root).resolve()
    if not (root / "val").is_dir():  # generated on first use, by the generator (imported only then)
        from .shapes import generate_for_data_yaml

        generate_for_data_yaml({**data, "path": root, "yaml_file": str(data_yaml)})
    return root
