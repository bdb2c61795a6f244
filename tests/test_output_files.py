"""Writing a checkpoint: a fresh temporary file from ``tempfile.mkstemp``, nothing left behind on failure or SIGTERM,
and never a file removed that this process did not create (the clean-up of "stale" temporary files is gone)."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from yolov8_efficientrep.output_files import (PARTIAL_PREFIX, OutputExistsError, OutputWriteError, Terminated, _Partial,
                                              _save, refuse_output, removed_on_termination, write_checked)

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = {"weights": torch.arange(1000.0)}


def loaded(path: Path) -> torch.Tensor:
    """The tensor a file written from ``CHECKPOINT`` holds."""
    return torch.load(path, weights_only=True)["weights"]


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
    full = _Partial(os.open("/dev/full", os.O_WRONLY), Path("/dev/full"))
    with pytest.raises(OutputWriteError) as error:
        _save(CHECKPOINT, full, tmp_path / "out.pt")
    full.close()
    assert str(error.value) == (f"{tmp_path / 'out.pt'}: cannot write it (No space left on device); free space on "
                                f"that disk, or choose another path. Nothing was written")


def test_a_folder_output_and_the_source_as_output_are_refused_even_with_overwrite(tmp_path):
    source = tmp_path / "best.pt"
    source.write_bytes(b"source")
    (tmp_path / "adir.pt").mkdir()
    with pytest.raises(IsADirectoryError, match="adir.pt is a folder, and an output replaces only files"):
        refuse_output(source, tmp_path / "adir.pt", True, "pass force=True")
    with pytest.raises(ValueError, match="refusing to overwrite the source checkpoint best.pt"):
        refuse_output(source, tmp_path / "." / "best.pt", True, "pass force=True")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.pt", "best.pt"]


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


# --- names like a temporary file's: never deleted, never in the way --------------------------------------------------

OLD_CODE = "7fe0f5e"  # a commit whose output_files.py removed "stale" temporary files by name (removed since)


def dead_pid() -> int:
    """A process id that no process of this machine holds any more (one that just ended)."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def lookalikes(folder: Path) -> dict[str, Path]:
    """Things a user or another writer may have in an output folder, named like the old temporary files.

    The old clean-up took ``.yolov8-efficientrep-partial.<host>.<pid>.<8 hex>.pt`` for a killed run of this machine
    when no process ``pid`` ran here: but a user's file may carry that name, and so does the live temporary file of a
    writer in another PID namespace (a container) or on a machine whose host name shares its first 32 characters.
    """
    import re
    import socket

    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"  # as the old names truncated it
    made = {"user's checkpoint": folder / f"{PARTIAL_PREFIX}.{host}.{dead_pid()}.5eed5eed.pt",
            "container writer's live file": folder / f"{PARTIAL_PREFIX}.{host}.{dead_pid()}.0123abcd.pt"}
    for kind, path in made.items():
        path.write_bytes(kind.encode())
    return made


def lookalike_folder(folder: Path) -> Path:
    """A folder named like an old temporary file of a killed run of this machine."""
    path = next(iter(lookalikes(folder).values()))
    path.unlink()
    path.with_name(path.name.replace(".5eed5eed.", ".deadbeef.")).mkdir()
    return path.with_name(path.name.replace(".5eed5eed.", ".deadbeef."))


def intact(made: dict[str, Path]) -> bool:
    """Whether every lookalike file is still there, unchanged."""
    return all(path.read_bytes() == kind.encode() for kind, path in made.items())


def test_the_old_clean_up_deleted_lookalikes_and_failed_on_a_folder(tmp_path):
    """Proof that the payloads were live: the old module, from the repository's history, run on the same folders."""
    old = tmp_path / "old" / "yolov8_efficientrep"
    old.mkdir(parents=True)
    for name in ("errors.py", "output_files.py"):
        shown = subprocess.run(["git", "show", f"{OLD_CODE}:yolov8_efficientrep/{name}"], cwd=REPO,
                               capture_output=True)
        if shown.returncode != 0:
            pytest.skip(f"the old code ({OLD_CODE}) is not in this checkout's history: {shown.stderr[-200:]!r}")
        (old / name).write_bytes(shown.stdout)
    (old / "__init__.py").write_text("")
    files, with_folder = tmp_path / "files", tmp_path / "with-folder"
    files.mkdir()
    with_folder.mkdir()
    made, folder = lookalikes(files), lookalike_folder(with_folder)
    code = ("import sys, torch\nfrom pathlib import Path\nfrom yolov8_efficientrep.output_files import write_checked\n"
            "outcomes = [sys.modules[write_checked.__module__].__file__]\n"
            "for folder in sys.argv[1:]:\n"
            "    try:\n        write_checked(Path(folder) / 'out.pt', {'w': torch.ones(1)}, str, False, 'force')\n"
            "        outcomes.append('written')\n"
            "    except Exception as error:\n        outcomes.append(type(error).__name__)\n"
            "print(*outcomes)\n")
    result = subprocess.run([sys.executable, "-c", code, str(files), str(with_folder)], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path / "old")}, timeout=60)
    outcomes = result.stdout.strip().splitlines()[-1].split()
    assert outcomes == [str(old / "output_files.py"), "written", "IsADirectoryError"], result.stderr[-2000:]
    assert not any(path.exists() for path in made.values())  # a user's file and a live writer's, deleted
    assert folder.is_dir() and not (with_folder / "out.pt").exists()  # the folder made the write fail


def test_nothing_named_like_a_temporary_file_is_touched_or_in_the_way(tmp_path):
    made, folder = lookalikes(tmp_path), lookalike_folder(tmp_path)
    (tmp_path / f"{PARTIAL_PREFIX}.link.pt").symlink_to(made["user's checkpoint"])
    result = write_checked(tmp_path / "out.pt", CHECKPOINT, loaded, overwrite=False, replace_hint="pass force=True")
    assert torch.equal(result, CHECKPOINT["weights"]) and torch.equal(loaded(tmp_path / "out.pt"), result)
    assert intact(made) and folder.is_dir() and (tmp_path / f"{PARTIAL_PREFIX}.link.pt").is_symlink()
    assert len(list(tmp_path.iterdir())) == len(made) + 4  # the lookalikes, the link and the output: nothing else


def test_the_temporary_file_is_removed_only_while_its_name_still_holds_it(tmp_path):
    """A file put in its place by someone else (a rename in a shared folder) is not removed by name."""
    theirs = tmp_path / "theirs.bin"

    def replaced_then_failed(path: Path):
        assert path.name.startswith(f"{PARTIAL_PREFIX}.") and path.suffix == ".pt"
        theirs.write_bytes(b"theirs")
        os.replace(theirs, path)
        raise ValueError("the written file is wrong")

    with pytest.raises(ValueError, match="the written file is wrong"):
        write_checked(tmp_path / "out.pt", CHECKPOINT, replaced_then_failed, overwrite=False, replace_hint="force")
    (survivor,) = tmp_path.iterdir()
    assert survivor.read_bytes() == b"theirs"


def test_a_kill_9_leaves_its_temporary_file_named_and_the_next_write_works(tmp_path):
    code = ("import sys, time, torch, ultralytics\nfrom pathlib import Path\n"
            "from yolov8_efficientrep.output_files import write_checked\n"
            "write_checked(Path(sys.argv[1]), {'w': torch.ones(10)}, lambda p: time.sleep(60), False, 'force')\n")
    process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "first.pt")])
    try:
        while not [p for p in tmp_path.glob(f"{PARTIAL_PREFIX}.*.pt") if p.stat().st_size]:
            assert process.poll() is None, "the writer ended before writing"
            time.sleep(0.01)
    finally:
        process.kill()  # SIGKILL: nothing runs on the way out
        process.wait(30)
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(f"{PARTIAL_PREFIX}.") and left.suffix == ".pt" and left.stat().st_size
    write_checked(tmp_path / "second.pt", CHECKPOINT, loaded, overwrite=False, replace_hint="pass force=True")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([left.name, "second.pt"])  # left for the user


def test_the_written_file_gets_the_mode_of_a_file_written_in_place(tmp_path):
    """``mkstemp`` creates files readable by their owner only; the checkpoint is given the usual 0o666 less umask."""
    umask = os.umask(0o027)
    try:
        write_checked(tmp_path / "out.pt", CHECKPOINT, loaded, overwrite=False, replace_hint="pass force=True")
    finally:
        os.umask(umask)
    assert (tmp_path / "out.pt").stat().st_mode & 0o777 == 0o640
