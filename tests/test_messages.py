"""Every failure of the plugin's commands is one short line: escape codes from a file shown escaped, never a terminal's
instruction; a message never grows with the file; the plugin's own errors always reported as their message.

The payloads are shown live against ``describe`` and ``printable`` as they were (their module from the repository's
history, run on the same errors), then handled by today's.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

import yolov8_efficientrep
from yolov8_efficientrep.errors import EfficientRepError
from yolov8_efficientrep.limits import LimitError, StoredAttributeError, check_channels
from yolov8_efficientrep.messages import MAX_MESSAGE, call, describe, printable
from yolov8_efficientrep.output_files import OutputExistsError, OutputWriteError

REPO = Path(__file__).resolve().parents[1]
OLD_CODE = "7fe0f5e"  # a commit whose describe() passed escape codes through and called message-less errors bugs
PREFIX = "yolov8-efficientrep fuse: error: "
# A class name as a crafted file could store it: cursor up, erase the line, then a fake success line in green.
FORGED = "Net\x1b[1A\x1b[2K\x1b[32myolov8-efficientrep fuse: wrote best-fused.pt\x1b[0m"


@pytest.fixture(scope="module")
def old_messages(tmp_path_factory) -> ModuleType:
    """``messages.py`` as it was at ``OLD_CODE``, loaded inside today's package (its lazy imports resolve there)."""
    shown = subprocess.run(["git", "show", f"{OLD_CODE}:yolov8_efficientrep/messages.py"], cwd=REPO,
                           capture_output=True)
    if shown.returncode != 0:
        pytest.skip(f"the old code ({OLD_CODE}) is not in this checkout's history: {shown.stderr[-200:]!r}")
    path = tmp_path_factory.mktemp("old") / "old_messages.py"
    path.write_bytes(shown.stdout)
    spec = importlib.util.spec_from_file_location("yolov8_efficientrep.old_messages", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def payloads() -> dict[str, BaseException]:
    """Errors whose text a file chose, or that carry no text at all."""
    return {"escape codes": LimitError(f"model.pt: class {FORGED} is not allowed; use the file training wrote"),
            "no message": OutputWriteError(),
            "long": ValueError(f"model.pt: unknown keys {', '.join(f'key{i}' for i in range(2000))}; fix the file")}


def is_one_short_safe_line(line: str) -> bool:
    """One line, no control character, at most the prefix and ``MAX_MESSAGE`` characters."""
    return len(line.splitlines()) == 1 and line.isprintable() and len(line) <= len(PREFIX) + MAX_MESSAGE


def test_the_old_report_passed_escape_codes_grew_with_the_file_and_called_a_plugin_error_a_bug(old_messages):
    lines = {case: old_messages.describe(error, "fuse") for case, error in payloads().items()}
    assert "\x1b[2K" in lines["escape codes"]  # a terminal erases the line and shows the forged success
    assert "unexpected error" in lines["no message"] and "this is a bug" in lines["no message"]
    assert len(lines["long"]) > 10_000
    with pytest.raises(ValueError, match="integer string conversion"):
        old_messages.printable(10**5000)  # a count a file chose: the message itself failed


def test_every_refusal_is_one_short_line_with_control_characters_escaped():
    lines = {case: describe(error, "fuse") for case, error in payloads().items()}
    assert all(map(is_one_short_safe_line, lines.values())), lines
    assert lines["escape codes"] == (f"{PREFIX}model.pt: class Net\\x1b[1A\\x1b[2K\\x1b[32myolov8-efficientrep fuse: "
                                     f"wrote best-fused.pt\\x1b[0m is not allowed; use the file training wrote")
    assert lines["no message"] == (f"{PREFIX}OutputWriteError (The output could not be written (no space, a read-only "
                                   f"folder, ...); no partial file was left behind.)")
    assert lines["long"].startswith(f"{PREFIX}model.pt: unknown keys key0, ") and lines["long"].endswith(
        "key1998, key1999; fix the file")  # the file named first and the fix said last both stay


def test_a_line_break_in_a_plugin_error_is_shown_not_obeyed():
    line = describe(StoredAttributeError("model.pt: stored name = Net\nyolov8-efficientrep fuse: wrote x.pt"), "fuse")
    assert line == f"{PREFIX}model.pt: stored name = Net\\nyolov8-efficientrep fuse: wrote x.pt"


def plugin_errors() -> list[type[EfficientRepError]]:
    """Every error class of the package (its modules imported, so that each defines its classes)."""
    for module in pkgutil.walk_packages(yolov8_efficientrep.__path__, "yolov8_efficientrep."):
        if module.name.split(".")[-1] not in ("__main__", "demo"):
            importlib.import_module(module.name)
    found, queue = [], [EfficientRepError]
    while queue:
        cls = queue.pop()
        found.append(cls)
        queue.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("message", ["", "x.pt: a plugin error; do this"], ids=["without a message", "with one"])
def test_no_plugin_error_is_ever_reported_as_a_bug(message):
    classes = plugin_errors()
    assert len(classes) >= 10 and OutputWriteError in classes
    for cls in classes:
        error = OutputExistsError(Path("x.pt"), "force") if cls is OutputExistsError else cls(message)
        line = describe(error, "fuse")
        assert line.startswith(PREFIX) and "unexpected" not in line and is_one_short_safe_line(line), (cls, line)


def test_printable_never_converts_a_huge_count_nor_runs_a_values_own_repr():
    class Loud(int):
        def __repr__(self):
            raise AssertionError("a value's own repr ran")

    start = time.perf_counter()
    assert printable(10**5000) == "<int of 16610 bits>" and printable(Loud(7)) == "7"
    assert printable([(1, 1), (2, 2)]) == "[(1, 1), (2, 2)]" and printable(list(range(100))) == "<list>"
    assert printable("x" * 10**7, 20) == "xxxxxxxxxxxxxxxxx..." and printable(torch.zeros(3)) == "<Tensor>"
    assert time.perf_counter() - start < 0.5
    assert call("RepBlock", c1=10**5000, block="\x1b[2J") == "RepBlock(c1=<int of 16610 bits>, block=\\x1b[2J)"
    with pytest.raises(LimitError, match=r"got <int of 16610 bits>$"):
        check_channels("RepVGGBlock", 10**5000)


def test_the_plugins_refusals_fit_without_losing_their_middle(tmp_path):
    """The refusals of the stored-attribute checks, the write and the shapes generator, with paths of 100 characters,
    fit in ``MAX_MESSAGE``: nothing of them is elided."""
    from yolov8_efficientrep.fusion import check_stored_attributes
    from yolov8_efficientrep.output_files import _write_failure
    from yolov8_efficientrep.shapes import make_shapes_dataset

    folder = tmp_path / ("d" * (100 - len(str(tmp_path)) - 12))
    layer = nn.Sequential(nn.Conv2d(3, 8, 3))
    layer[0].padding = (9000, 9000)
    errors = [_refusal(check_stored_attributes, layer),
              OutputWriteError(_write_failure(folder / "best-fused.pt", OSError(27, "File too large"))),
              _refusal(lambda: make_shapes_dataset(_linked_shapes_folder(folder), train=1, val=1, imgsz=32))]
    for error in errors:
        line = describe(error, "fuse")
        assert is_one_short_safe_line(line) and " ... " not in line, line


def _refusal(function, *args) -> BaseException:
    """The error ``function(*args)`` raises."""
    with pytest.raises(EfficientRepError) as raised:
        function(*args)
    return raised.value


def _linked_shapes_folder(folder: Path) -> Path:
    """A shapes folder whose ``images`` is a link to a folder of a 100-character path."""
    from yolov8_efficientrep.shapes import make_shapes_dataset

    root = folder / "set"
    make_shapes_dataset(root, train=1, val=1, imgsz=32)
    users = folder / "mine"
    users.mkdir()
    for child in (root / "images").rglob("*.png"):
        child.unlink()
    for split in ("train", "val"):
        (root / "images" / split).rmdir()
    (root / "images").rmdir()
    (root / "images").symlink_to(users, target_is_directory=True)
    return root
