"""Writing checkpoints safely: refuse a bad output path before any work, and never leave a partial file.

The fuse command and the YOLOv6 importer both write a new ``.pt`` that must not replace the user's files by accident
and must not exist at all unless it was checked. The file is first written under a new temporary name in the target
folder (``tempfile.mkstemp``: created exclusively, ``.yolov8-efficientrep-partial.<random>.pt``), checked, then moved
into place. Errors, Ctrl-C, SIGTERM and SIGHUP remove it on the way out. A run killed outright (``kill -9``) leaves it,
recognisably named, for the user to remove: nothing here ever deletes a file this process did not create, and no
file or folder named like a temporary file stands in the way of a later write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import torch

from .errors import EfficientRepError
from .messages import os_fix

Checked = TypeVar("Checked")

# Temporary files: .yolov8-efficientrep-partial.<random>.pt (hidden; Ultralytics loads only *.pt)
PARTIAL_PREFIX = ".yolov8-efficientrep-partial"

class OutputExistsError(EfficientRepError, FileExistsError):
    """The output file exists and may not be replaced. ``output`` is that file, so a command line can name its flag."""

    def __init__(self, output: Path, replace_hint: str):
        super().__init__(f"{output} exists; {replace_hint} to replace it, or choose another output path")
        self.output = output


class OutputWriteError(EfficientRepError, OSError):
    """The output could not be written (no space, a read-only folder, ...); no partial file was left behind."""


class Terminated(SystemExit):
    """SIGTERM or SIGHUP arrived while a checkpoint was being written; exits with status 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signal = signal.Signals(signum).name


def missing_folder(folder: Path) -> str:
    """Say what is wrong with a folder that is not a directory: the first part of it that is missing or a file."""
    for part in reversed((folder, *folder.parents)):
        if part.exists() and not part.is_dir():
            return f"{part} is a file, not a folder"
        if not part.exists():
            return f"the folder {part} does not exist"
    return f"the folder {folder} does not exist"


def _same_file(a: Path, b: Path) -> bool:
    """Return True if ``a`` and ``b`` are one file (the same path, a link to it, or a hard link)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _write_failure(output: Path, error: OSError) -> str:
    """One sentence on why writing ``output`` failed and what to do."""
    fix = os_fix(error.errno)
    return f"{output}: cannot write it ({error.strerror or error}); {fix}. Nothing was written"


def refuse_output(source: Path, target: Path, overwrite: bool, replace_hint: str) -> None:
    """Raise a one-line error naming ``target`` if it cannot or must not be written; nothing is written.

    Args:
        source (Path): The file being converted; never overwritten.
        target (Path): The ``.pt`` to write.
        overwrite (bool): Whether an existing ``target`` may be replaced (a file, never a folder or the source).
        replace_hint (str): How the caller allows replacing, for the message (e.g. ``pass overwrite=True``).

    Raises:
        ValueError: ``target`` is the source, or does not end in ``.pt``.
        FileNotFoundError: A folder on the way to ``target`` is missing (``NotADirectoryError``: is a file).
        IsADirectoryError: ``target`` is a folder.
        OutputExistsError: ``target`` exists and ``overwrite`` is False.
        OutputWriteError: No file can be created in ``target``'s folder (read-only, ...).
    """
    if _same_file(source, target) or source.absolute() == target.absolute():
        raise ValueError(f"{target}: refusing to overwrite the source checkpoint {source.name} (the source is never "
                         f"an output); choose another output path")
    if target.suffix != ".pt":
        raise ValueError(f"{target}: the output must end in .pt, the only checkpoint suffix Ultralytics loads")
    if not target.parent.is_dir():
        problem = missing_folder(target.parent)
        if problem.endswith("not a folder"):
            raise NotADirectoryError(f"{target}: {problem}; choose another output path")
        raise FileNotFoundError(f"{target}: {problem}; create it, or choose another output path")
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder, and an output replaces only files; choose a file path such as "
                                f"{target / 'model.pt'}")
    if target.exists() and not overwrite:
        raise OutputExistsError(target, replace_hint)
    with removed_on_termination():  # a read-only folder fails here, before any work, rather than after it
        probe = None
        try:
            with _signals_held():
                probe = _create_partial(target)
        finally:
            if probe is not None:
                probe.remove()


class _Partial:
    """A temporary file this process created, open for writing until ``close()``.

    Attributes:
        descriptor (int | None): Its open descriptor, None once closed.
        path (Path): Its name in the target folder.
    """

    def __init__(self, descriptor: int, path: Path):
        self.descriptor: int | None = descriptor
        self.path = path
        status = os.fstat(descriptor)
        self._identity = (status.st_dev, status.st_ino)  # what the name must still hold for remove() to unlink it

    def close(self) -> None:
        """Close the descriptor, once."""
        descriptor, self.descriptor = self.descriptor, None
        if descriptor is not None:
            os.close(descriptor)

    def remove(self) -> None:
        """Close it and remove it, if its name still holds this process's file (never a file that replaced it)."""
        with contextlib.suppress(OSError):
            self.close()
        with contextlib.suppress(FileNotFoundError):
            status = os.lstat(self.path)
            if (status.st_dev, status.st_ino) == self._identity:
                self.path.unlink()


def _default_mode() -> int:
    """Return the mode ``open()`` gives a new file, 0o666 less the umask (``mkstemp`` creates 0o600)."""
    with contextlib.suppress(OSError, TypeError):  # Linux: read it, not set it (os.umask sets it for all threads)
        return 0o666 & ~int(re.search(r"^Umask:\s*(\d+)", Path("/proc/self/status").read_text(), re.M)[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _create_partial(target: Path) -> _Partial:
    """Create a new empty temporary ``.pt`` next to ``target`` with ``tempfile.mkstemp``; return it, opened.

    ``mkstemp`` creates exclusively under a fresh random name, drawing again while a name is taken by anything (a
    file, a folder, a link), so no existing file is ever opened and nothing named like a temporary file blocks it.

    Raises:
        OutputWriteError: No file can be created in ``target``'s folder (read-only, full, ...).
    """
    try:
        descriptor, name = tempfile.mkstemp(suffix=".pt", prefix=f"{PARTIAL_PREFIX}.", dir=target.parent)
    except OSError as error:
        raise OutputWriteError(_write_failure(target, error)) from error
    partial = _Partial(descriptor, Path(name))
    if hasattr(os, "fchmod"):  # the mode a checkpoint written in place would have had
        with contextlib.suppress(OSError):
            os.fchmod(descriptor, _default_mode())
    return partial


# Signals that arrived while torch.save ran (see _signals_held); only the main thread handles signals.
_held: list[int] = []
_holding = False


def _terminate(signum: int, frame) -> None:
    """The SIGTERM / SIGHUP handler inside ``removed_on_termination``."""
    if _holding:
        _held.append(signum)
    else:
        raise Terminated(signum)


def _in_main_thread() -> bool:
    """Return True in the main thread, the only one where Python runs signal handlers."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def removed_on_termination() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into ``Terminated`` inside the block, so that ``finally`` clauses remove partial files.

    Only signals whose handler is the default one (end the process) are taken over, and only in the main thread;
    a handler the application installed itself is left in charge.
    """
    if not _in_main_thread():
        yield
        return
    names = [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {name: signal.getsignal(getattr(signal, name)) for name in names}
    taken = [name for name in names if previous[name] is signal.SIG_DFL]
    for name in taken:
        signal.signal(getattr(signal, name), _terminate)
    try:
        yield
    finally:
        for name in taken:
            signal.signal(getattr(signal, name), previous[name])


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGTERM, SIGHUP (as taken over by ``removed_on_termination``) and Ctrl-C until the block ends.

    ``torch.save`` writes through a Python callback called from C++; an exception a signal handler raises there can
    be lost, leaving a truncated file and no error. So the signal is acted on once ``torch.save`` has returned.
    """
    global _holding
    if not _in_main_thread():
        yield
        return
    interrupt = signal.getsignal(signal.SIGINT)
    take_interrupt = interrupt is signal.default_int_handler
    if take_interrupt:
        signal.signal(signal.SIGINT, lambda signum, frame: _held.append(signum))
    _holding = True
    try:
        yield
    finally:
        _holding = False
        if take_interrupt:
            signal.signal(signal.SIGINT, interrupt)
        if _held:
            signum = _held[0]
            _held.clear()
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)


class _Writer:
    """The file ``torch.save`` writes to: every byte written, or the ``OSError`` that stopped it kept in ``error``.

    A plain file object may write only part of a buffer and report that, which torch turns into an assertion about
    zip offsets; the ``OSError`` (no space, file too large) is what says what to do.
    """

    def __init__(self, descriptor: int):
        self.descriptor = descriptor
        self.error: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        try:
            while view:
                view = view[os.write(self.descriptor, view):]
        except OSError as error:
            self.error = self.error or error
            raise
        return size

    def flush(self) -> None:
        """Nothing is buffered."""


def _save(checkpoint: dict, partial: _Partial, target: Path) -> None:
    """``torch.save`` ``checkpoint`` to the open file, flush it to disk and close it; I/O failures become
    ``OutputWriteError``."""
    writer = _Writer(partial.descriptor)
    try:
        with _signals_held():
            torch.save(checkpoint, writer)
        try:  # on disk before it replaces anything: a power cut leaves the old file or the new one
            os.fsync(partial.descriptor)
        except OSError as error:
            if error.errno not in (errno.EINVAL, getattr(errno, "ENOTSUP", errno.EINVAL)):  # cannot sync: no error
                raise
        partial.close()
    except (OSError, RuntimeError) as error:
        failure = writer.error or (error if isinstance(error, OSError) else None)
        if failure is None:
            raise
        raise OutputWriteError(_write_failure(target, failure)) from error


def _move_into_place(partial: Path, target: Path, overwrite: bool, replace_hint: str) -> None:
    """Give ``partial`` the name ``target``; without ``overwrite``, never replace a file that appeared meanwhile."""
    try:
        if overwrite:
            os.replace(partial, target)
            return
        try:
            os.link(partial, target)  # atomic, and fails if the name is taken: no window to replace a new file
        except FileExistsError:
            raise OutputExistsError(target, replace_hint) from None
        except OSError:  # a file system without hard links: check, then rename
            if target.exists():
                raise OutputExistsError(target, replace_hint) from None
            os.replace(partial, target)
    except OutputExistsError:
        raise
    except OSError as error:
        raise OutputWriteError(_write_failure(target, error)) from error


def write_checked(target: Path, checkpoint: dict, check: Callable[[Path], Checked], overwrite: bool,
                  replace_hint: str) -> Checked:
    """Save ``checkpoint`` next to ``target``, run ``check`` on that file, and only then move it into place.

    ``check`` raises if the written file is wrong; any failure, Ctrl-C, SIGTERM or SIGHUP leaves no file behind. A
    ``target`` created by someone else meanwhile is not replaced unless ``overwrite``. Only the temporary file this
    call created is ever removed; one left by a run killed outright stays until the user removes it.

    Returns:
        What ``check`` returned.

    Raises:
        OutputWriteError: The file could not be written (no space, file size limit, a read-only folder, ...).
        OutputExistsError: ``target`` appeared meanwhile and ``overwrite`` is False.
    """
    with removed_on_termination():
        partial = None
        try:
            with _signals_held():  # a signal right after mkstemp would otherwise leave the file unnamed here
                partial = _create_partial(target)
            _save(checkpoint, partial, target)
            result = check(partial.path)
            _move_into_place(partial.path, target, overwrite, replace_hint)
        finally:
            if partial is not None:
                partial.remove()
    return result
