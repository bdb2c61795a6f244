"""Run the child (``child.py``) on one untrusted file, with limits; return its answer as plain JSON data.

The child gets the file as its standard input (it never sees the path), an empty working directory, an empty
environment, no other inherited descriptor, and ``python -I -S -B`` (no site-packages, no start-up hooks, no
environment variables read). It limits its own address space and CPU time before reading the file; this side
enforces the wall-clock limit and the size of what comes back. A child that dies, overruns a limit or answers
malformed data ends in an ``UntrustedFileError`` that names the limit. On Windows (no ``setrlimit``) the child still
isolates crashes and anything a file could change in the reader, and the wall-clock limit still applies.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from ..errors import UntrustedFileError
from ..messages import printable
from .budgets import MAX_OUTPUT_BYTES

# How the child loads this package as the top-level package ``untrusted``, without this project's ``__init__``.
BOOTSTRAP = ("import importlib.util as u, os, sys\n"
             "s = u.spec_from_file_location('untrusted', sys.argv[1], "
             "submodule_search_locations=[os.path.dirname(sys.argv[1])])\n"
             "m = u.module_from_spec(s); sys.modules['untrusted'] = m; s.loader.exec_module(m)\n"
             "from untrusted.child import main\nmain(sys.argv[2])\n")
REFUSED, OUT_OF_MEMORY = 2, 3  # the child's exit statuses (child.py)
FILE_KINDS = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket",
              stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}


@dataclass(frozen=True)
class Limits:
    """What one child may use: multiples of what the largest honest file needs (``budgets.py``'s reference, a 603 MB
    scale-x checkpoint, read in 0.7 s of CPU time within 48 MiB of address space; YOLOv6-L's needs 32 MiB).

    Attributes:
        address_space (int): Bytes of virtual memory (``RLIMIT_AS``): 21x the reference's; a file at every budget of
            ``budgets.py`` still fits, so the budgets refuse it first and this limit is the backstop.
        cpu_seconds (int): CPU seconds (``RLIMIT_CPU``): 28x the reference's (most of it checksumming the tensors).
        wall_seconds (float): Seconds before the child is killed, waiting included (a loaded machine is slower).
        output_bytes (int): Bytes of JSON the child may hand back.
    """

    address_space: int = 1 << 30
    cpu_seconds: int = 20
    wall_seconds: float = 60.0
    output_bytes: int = MAX_OUTPUT_BYTES

    def describe(self, which: str) -> str:
        """Say one limit with its value, for a message."""
        return {"address_space": f"address-space limit ({self.address_space >> 20} MiB)",
                "cpu_seconds": f"CPU-time limit ({self.cpu_seconds} s)",
                "wall_seconds": f"wall-clock limit ({self.wall_seconds:g} s)",
                "output_bytes": f"output limit ({self.output_bytes >> 20} MiB)"}[which]


DEFAULT_LIMITS = Limits()


def open_file(path: Path) -> int:
    """Open ``path`` for reading without blocking; return the descriptor of what must be a regular file.

    Raises:
        FileNotFoundError: Nothing is at ``path``.
        PermissionError: It cannot be read (the message says so and names it).
        UntrustedFileError: It is a folder, a FIFO, a socket or a device, not a file.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except PermissionError as error:
        raise PermissionError(error.errno, f"it cannot be read ({error.strerror})", str(path)) from None
    except IsADirectoryError:  # Windows opens no folder
        raise UntrustedFileError(f"{path} is a folder, not a file", "file") from None
    mode = os.fstat(descriptor).st_mode
    kind = next((name for test, name in FILE_KINDS.items() if test(mode)), None)
    if kind is not None or not stat.S_ISREG(mode):
        os.close(descriptor)
        raise UntrustedFileError(f"{path} is {kind or 'not a regular file'}, not a file", "file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(descriptor, True)
    return descriptor


def check_file(path: Path) -> None:
    """Refuse ``path`` now, as ``open_file`` would, if it is missing, unreadable, or not a regular file."""
    os.close(open_file(path))


def run_child(descriptor: int, request: dict, limits: Limits = DEFAULT_LIMITS) -> dict:
    """Read the file open as ``descriptor`` (``open_file``) in a jailed child as ``request`` asks; return its answer.

    Returns:
        (dict): The child's answer, parsed from JSON: plain data, to be validated by the caller.

    Raises:
        UntrustedFileError: The child refused the file (``reason`` says why; ``name`` is a refused global), overran a
            limit, died or answered malformed data. The message does not name the path: the caller does.
    """
    if not sys.executable:
        raise UntrustedFileError("no Python interpreter can be started for the reader (sys.executable is empty)",
                                 "jail")
    init = Path(__file__).with_name("__init__.py")
    arguments = [sys.executable, "-I", "-S", "-B", "-c", BOOTSTRAP, str(init),
                 json.dumps({**request, "limits": asdict(limits)})]
    env = {key: os.environ[key] for key in ("SYSTEMROOT",) if key in os.environ}  # Windows needs it to start Python
    with tempfile.TemporaryDirectory(prefix="yolov8-efficientrep-reader-") as empty:
        process = subprocess.Popen(arguments, stdin=descriptor, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   cwd=empty, env=env, close_fds=True, start_new_session=os.name == "posix")
        try:
            output, errors, overran = _collect(process, limits)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
    return _answer(process.returncode, output, errors, overran, limits)


def _collect(process: subprocess.Popen, limits: Limits) -> tuple[bytes, bytes, str | None]:
    """Read the child's output and errors (bounded) until it exits; return them and the limit it overran, if any."""
    output, errors = bytearray(), bytearray()
    overran: list[str] = []

    def drain(pipe: IO[bytes], sink: bytearray, cap: int) -> None:
        while chunk := pipe.read1(1 << 16):
            if len(sink) + len(chunk) > cap:
                overran.append("output_bytes")
                process.kill()
                return
            sink.extend(chunk)

    readers = [threading.Thread(target=drain, args=(process.stdout, output, limits.output_bytes), daemon=True),
               threading.Thread(target=drain, args=(process.stderr, errors, 64 << 10), daemon=True)]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + limits.wall_seconds
    for reader in readers:  # the pipes close when the child exits: no polling delay after an honest read
        reader.join(max(0.0, deadline - time.monotonic()))
    try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        overran.append("wall_seconds")
        process.kill()
    for reader in readers:
        reader.join()
    return bytes(output), bytes(errors), (overran or [None])[0]


def _answer(status: int, output: bytes, errors: bytes, overran: str | None, limits: Limits) -> dict:
    """Turn how the child ended into its answer, or into the error that says what stopped it."""
    if overran is not None:
        raise UntrustedFileError(f"the reader was stopped at its {limits.describe(overran)}", "limit")
    cpu = getattr(signal, "SIGXCPU", None)
    if status == OUT_OF_MEMORY or (status != 0 and b"MemoryError" in errors):
        raise UntrustedFileError(f"the reader was stopped at its {limits.describe('address_space')}", "limit")
    if cpu is not None and status in (-cpu, 128 + cpu):
        raise UntrustedFileError(f"the reader was stopped at its {limits.describe('cpu_seconds')}", "limit")
    if status < 0:
        raise UntrustedFileError(f"the reader crashed ({_signal_name(-status)}); nothing of the file reached this "
                                 f"process", "crash")
    if status not in (0, REFUSED):
        last = (errors.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
        raise UntrustedFileError(f"the reader failed ({printable(last, 120)}); nothing of the file reached this process; if the "
                                 f"file is an honest checkpoint, please report it", "crash")
    try:
        answer = json.loads(output)
    except (ValueError, RecursionError):
        raise UntrustedFileError("the reader answered malformed data", "crash") from None
    if not isinstance(answer, dict):
        raise UntrustedFileError("the reader answered malformed data", "crash")
    refusal = answer.get("refused")
    if status == REFUSED or refusal is not None:
        if not (status == REFUSED and isinstance(refusal, dict) and isinstance(refusal.get("message"), str)):
            raise UntrustedFileError("the reader answered malformed data", "crash")
        name, names = refusal.get("name"), refusal.get("names")
        names = tuple(names) if isinstance(names, list) and all(isinstance(n, str) for n in names) else ()
        raise UntrustedFileError(printable(refusal["message"], 300), printable(refusal.get("reason"), 20),
                                 name if isinstance(name, str) else None, names)
    return answer


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
