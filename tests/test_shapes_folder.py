"""The shapes generator never writes through a symbolic link inside its own folder.

A folder the generator made carries its marker and may be written again; a link put inside it (a split's label
folder, a classification class folder, the data YAML) points out of it. Each link is refused in one line naming it,
with the user's files and the link left as they were; the same links, given to the generator as it was before (its
module from the repository's history), are written through, which proves each payload live.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from yolov8_efficientrep.dataset_folders import MARKER, FolderNotOwnedError
from yolov8_efficientrep.shapes import make_shapes_dataset, make_task_dataset

REPO = Path(__file__).resolve().parents[1]
OLD_CODE = "7fe0f5e"  # a commit whose shapes.py wrote through links inside its own folder
SIZES = {"train": 3, "val": 2, "imgsz": 32}


@pytest.fixture(scope="module")
def old_generator(tmp_path_factory) -> ModuleType:
    """The generator's module as it was at ``OLD_CODE`` (it imports nothing of the package)."""
    shown = subprocess.run(["git", "show", f"{OLD_CODE}:yolov8_efficientrep/shapes.py"], cwd=REPO, capture_output=True)
    if shown.returncode != 0:
        pytest.skip(f"the old code ({OLD_CODE}) is not in this checkout's history: {shown.stderr[-200:]!r}")
    path = tmp_path_factory.mktemp("old") / "old_shapes.py"
    path.write_bytes(shown.stdout)
    spec = importlib.util.spec_from_file_location("old_shapes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def files(folder: Path) -> dict[Path, bytes]:
    """Every file under ``folder`` (links not followed) with its bytes."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


def linked(root: Path, relative: str, users: Path) -> Path:
    """Replace ``root/relative`` (a folder or a file the generator wrote) by a link to ``users``; return the link."""
    link = root / relative
    if link.is_dir():
        shutil.rmtree(link)
    else:
        link.unlink()
    link.symlink_to(users, target_is_directory=users.is_dir())
    return link


def users_folder(tmp_path: Path, names: list[str]) -> Path:
    """A user's folder holding files with the generator's names."""
    users = tmp_path / "mine"
    users.mkdir()
    for name in names:
        (users / name).write_bytes(b"the user's own " + name.encode())
    return users


def payloads(tmp_path: Path) -> dict[str, tuple]:
    """For each payload: (task, the generator's own folder with a link inside it, the link, the user's files)."""
    cases = {}
    for case, task, relative in (("labels/val", "detect", "labels/val"), ("class folder", "classify", "val/square"),
                                 ("data YAML", "detect", "shapes.yaml")):
        root = tmp_path / case.replace(" ", "-").replace("/", "-")
        make_task_dataset(root, task, **SIZES)  # the generator's own folder, with its marker
        target = root / relative
        names = sorted(p.name for p in target.iterdir()) if target.is_dir() else []
        users = users_folder(tmp_path / root.name, names) if names else tmp_path / f"{root.name}-mine.yaml"
        if not names:
            users.write_bytes(b"the user's own YAML")
        cases[case] = (task, root, linked(root, relative, users), files(users.parent if not names else users))
    return cases


def test_the_old_generator_wrote_through_each_link(tmp_path, old_generator):
    for case, (task, root, link, before) in payloads(tmp_path).items():
        assert (root / MARKER).is_file()
        old_generator.make_task_dataset(root, task, **SIZES)
        changed = [path for path, data in before.items() if path.read_bytes() != data]
        assert changed, f"{case}: the user's files were not written through {link}"


@pytest.mark.parametrize("case", ["labels/val", "class folder", "data YAML"])
def test_a_link_inside_the_generators_folder_is_refused_and_nothing_is_written_through_it(tmp_path, case):
    task, root, link, before = payloads(tmp_path)[case]
    target = link.readlink()
    with pytest.raises(FolderNotOwnedError) as refused:
        make_task_dataset(root, task, **SIZES)
    message = str(refused.value)
    assert message == (f"{link} is a symbolic link inside the shapes data set's own folder {root.name}, and the "
                       f"generator never writes through a link (it could overwrite files elsewhere): remove or rename "
                       f"it, or generate into a new folder")
    assert all(path.read_bytes() == data for path, data in before.items())
    assert link.is_symlink() and link.readlink() == target  # the user's link is left as it was


def test_a_linked_folder_higher_up_is_refused_too(tmp_path):
    root = tmp_path / "set"
    make_shapes_dataset(root, **SIZES)
    users = users_folder(tmp_path, [])
    (users / "train").mkdir()
    link = linked(root, "images", users)
    with pytest.raises(FolderNotOwnedError, match=f"{link} is a symbolic link"):
        make_shapes_dataset(root, **SIZES)
    assert list((users / "train").iterdir()) == []


def test_a_linked_marker_does_not_make_a_users_folder_the_generators(tmp_path):
    users = users_folder(tmp_path, ["00000.png"])
    marker = tmp_path / "marker"
    marker.write_text("a marker file somewhere else")
    (users / MARKER).symlink_to(marker)
    with pytest.raises(FolderNotOwnedError, match="is a folder the shapes generator did not create"):
        make_shapes_dataset(users, **SIZES)
    assert (users / "00000.png").read_bytes() == b"the user's own 00000.png"


def test_a_hard_linked_file_keeps_its_other_name_s_data(tmp_path):
    """A file of the generator's folder that is also another name of a user's file is replaced, not rewritten."""
    root = tmp_path / "set"
    make_shapes_dataset(root, **SIZES)
    mine = tmp_path / "mine.txt"
    mine.write_bytes(b"the user's labels")
    (root / "labels" / "train" / "00000.txt").unlink()
    (root / "labels" / "train" / "00000.txt").hardlink_to(mine)
    make_shapes_dataset(root, **SIZES)
    assert mine.read_bytes() == b"the user's labels"
    assert (root / "labels" / "train" / "00000.txt").read_bytes() != b"the user's labels"
