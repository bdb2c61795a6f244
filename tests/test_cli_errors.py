"""The ``yolov8-efficientrep`` console script in a fresh process: one-line errors naming file and fix; ``--version``."""

import sys
from pathlib import Path

import pytest
import torch
import ultralytics

import yolov8_efficientrep

COMMAND = str(Path(sys.executable).with_name("yolov8-efficientrep"))  # the installed console script


def one_line_error(result, command: str) -> str:
    """Return the single stderr line of a failed command, after checking that it is the only output and no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"yolov8-efficientrep {command}: error: "), result.stderr
    return lines[0]


def cut_short(path: Path) -> Path:
    """Write a real torch checkpoint, then keep only its first half, like an interrupted copy."""
    torch.save({"model": torch.nn.Conv2d(3, 16, 3).state_dict()}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def text_file(path: Path) -> Path:
    """Write a text file with a checkpoint's name."""
    path.write_text("epochs: 10\n")
    return path


def tensors_only(path: Path) -> Path:
    """Write a torch file that holds tensors but no Ultralytics model."""
    torch.save({"weights": torch.zeros(3)}, path)
    return path


@pytest.mark.parametrize("make, expected", [
    (cut_short, "is not a PyTorch checkpoint (not the zip archive torch.save writes: it is empty, cut short"),
    (text_file, "is not a PyTorch checkpoint"),
    (tensors_only, "could not be loaded as an Ultralytics checkpoint (TypeError: "),
])
def test_fuse_names_a_file_that_is_not_a_checkpoint(run_fresh, tmp_path, make, expected):
    checkpoint = make(tmp_path / "best.pt")
    line = one_line_error(run_fresh(COMMAND, "fuse", checkpoint, check=False), "fuse")
    assert f"error: {checkpoint} {expected}" in line
    fix = "pass a .pt that Ultralytics training wrote, e.g. runs/detect/train/weights/best.pt"
    assert line.endswith(fix if make is tensors_only else f"{fix}, copied whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]  # no partial output


def test_fuse_checks_the_output_folder_before_any_work(run_fresh, tmp_path):
    checkpoint = cut_short(tmp_path / "best.pt")  # loading it would fail: the output is checked first
    target = tmp_path / "newdir" / "x.pt"
    line = one_line_error(run_fresh(COMMAND, "fuse", checkpoint, "-o", target, check=False), "fuse")
    assert line.endswith(f"{target}: the folder {target.parent} does not exist; create it, or pass -o with a path in "
                         f"an existing folder")
    assert not target.parent.exists()


def test_fuse_refuses_an_existing_output_naming_force_and_o(run_fresh, tmp_path):
    checkpoint = cut_short(tmp_path / "best.pt")
    target = tmp_path / "best-fused.pt"
    target.write_bytes(b"mine")
    line = one_line_error(run_fresh(COMMAND, "fuse", checkpoint, check=False), "fuse")
    assert line.endswith(f"{target} exists; add --force to replace it, or write elsewhere with -o PATH.pt")
    assert target.read_bytes() == b"mine"


def test_version_names_the_package_ultralytics_and_torch(run_fresh):
    result = run_fresh(COMMAND, "--version")
    assert result.stdout.strip() == (f"yolov8-efficientrep {yolov8_efficientrep.__version__} "
                                     f"(ultralytics {ultralytics.__version__}, torch {torch.__version__})")
