"""Writing a checkpoint: a temporary name no user file holds, nothing left behind on failure or SIGTERM, and the
partial files of killed runs removed by the next write, never those a live process is writing."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from yolov8_efficientrep.output_files import (PARTIAL_PREFIX, OutputExistsError, OutputWriteError, Terminated, _host,
                                              _save, refuse_output, remove_stale_partials, removed_on_termination,
                                              write_checked)

CHECKPOINT = {"weights": torch.arange(1000.0)}


def loaded(path: Path) -> torch.Tensor:
    """The tensor a file written from ``CHECKPOINT`` holds."""
    return torch.load(path, weights_only=True)["weights"]


def partial_name(pid: int, host: str = "") -> str:
    """A temporary file's name as ``write_checked`` makes them, for process ``pid`` of ``host`` (default: this one)."""
    return f"{PARTIAL_PREFIX}.{host or _host()}.{pid}.0123abcd.pt"


def test_files_with_the_old_fixed_temporary_name_are_never_touched(tmp_path):
    mine = tmp_path / ".best.partial.pt"  # the name the temporary file used to have, now a user's file
    mine.write_bytes(b"mine")
    result = write_checked(tmp_path / "best.pt", CHECKPOINT, loaded, overwrite=False, replace_hint="pass force=True")
    assert torch.equal(result, CHECKPOINT["weights"]) and mine.read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.partial.pt", "best.pt"]


def test_a_failing_check_leaves_no_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "out.pt"
    target.write_bytes(b"old")

    def fail(path: Path):
        assert path.parent == tmp_path and path.name.startswith(PARTIAL_PREFIX) and loaded(path).numel() == 1000
        raise ValueError("the written file is wrong")

    with pytest.raises(ValueError, match="the written file is wrong"):
        write_checked(target, CHECKPOINT, fail, overwrite=True, replace_hint="pass force=True")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.pt"]


def test_a_file_that_appears_during_the_write_is_not_replaced(tmp_path):
    target = tmp_path / "out.pt"

    def someone_writes_the_target(path: Path):
        target.write_bytes(b"theirs")

    with pytest.raises(OutputExistsError, match="out.pt exists; pass force=True to replace it"):
        write_checked(target, CHECKPOINT, someone_writes_the_target, overwrite=False, replace_hint="pass force=True")
    assert target.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["out.pt"]


def test_a_full_disk_is_named_with_its_fix(tmp_path):
    """/dev/full fails every write with ENOSPC, as a full disk does."""
    descriptor = os.open("/dev/full", os.O_WRONLY)
    with pytest.raises(OutputWriteError) as error:
        _save(CHECKPOINT, descriptor, tmp_path / "out.pt")
    assert str(error.value) == (f"{tmp_path / 'out.pt'}: cannot write it in the folder {tmp_path} (No space left on "
                                f"device); free space on that disk or choose another output path. Nothing was written")


def test_a_folder_output_and_the_source_as_output_are_refused_even_with_overwrite(tmp_path):
    source = tmp_path / "best.pt"
    source.write_bytes(b"source")
    (tmp_path / "adir.pt").mkdir()
    with pytest.raises(IsADirectoryError, match="adir.pt is a folder, and an output replaces only files"):
        refuse_output(source, tmp_path / "adir.pt", True, "pass force=True")
    with pytest.raises(ValueError, match="refusing to overwrite the source checkpoint best.pt"):
        refuse_output(source, tmp_path / "." / "best.pt", True, "pass force=True")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.pt", "best.pt"]


def test_partial_files_of_dead_processes_are_removed_and_others_kept(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / partial_name(int(dead.stdout))
    live = tmp_path / partial_name(os.getpid())  # this process could be writing it
    foreign = tmp_path / partial_name(int(dead.stdout), host="another-machine")
    user = tmp_path / f"{PARTIAL_PREFIX}-mine.pt"  # a name this module never makes
    for path in (stale, live, foreign, user):
        path.write_bytes(b"partial")
    assert remove_stale_partials(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, foreign, user))
    log = caplog.text
    assert f"removed 1 partial file that an earlier write, killed before it finished, left behind: {stale.name}" in log
    assert f"{foreign.name} are partial files written on another machine" in log


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals reach the main thread")
def test_sigterm_inside_a_write_unwinds_and_the_handler_is_restored(tmp_path):
    target = tmp_path / "out.pt"

    def terminated_while_checking(path: Path):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt the write")

    with pytest.raises(Terminated) as stop:
        write_checked(target, CHECKPOINT, terminated_while_checking, overwrite=False, replace_hint="pass force=True")
    assert stop.value.code == 128 + signal.SIGTERM and stop.value.signal == "SIGTERM"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


class _TerminatedWhilePickled:
    """Sends this process SIGTERM while ``torch.save`` pickles it, inside torch's archive writer."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        return int, (0,)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals reach the main thread")
def test_sigterm_inside_torch_save_is_acted_on_once_the_archive_is_closed(tmp_path):
    checked = []
    with pytest.raises(Terminated):
        write_checked(tmp_path / "out.pt", {**CHECKPOINT, "signal": _TerminatedWhilePickled()}, checked.append,
                      overwrite=False, replace_hint="pass force=True")
    assert checked == [] and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals reach the main thread")
def test_an_application_handler_for_sigterm_stays_in_charge():
    def own(signum, frame):
        """The application's handler."""

    previous = signal.signal(signal.SIGTERM, own)
    try:
        with removed_on_termination():
            assert signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, previous)
