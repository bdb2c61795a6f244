"""The child process: read one untrusted ``torch.save`` file from standard input, write its data as JSON.

Started by ``jail.py`` as ``python -I -S -B -c <bootstrap>`` with the file open as standard input and the request
(allowed module classes, the entries to read, the limits) as its one argument. It imports everything it needs first,
then limits itself (address space, CPU time, no files written, no new processes, few descriptors) before reading a
byte of the file. Exit status: 0 with the wire-format JSON on standard output, 2 with a refusal as JSON, 3 when the
address-space limit was reached; SIGXCPU ends it when its CPU time is spent.
"""

from __future__ import annotations

import json
import os
import sys

from .archive import Archive
from .budgets import MAX_FILE_BYTES
from .machine import Machine, scan_globals
from .rebuilders import FUNCTIONS, STORAGE_TYPES, Storage, StorageType
from .refused import Refused
from .wire import Encoder

try:
    import resource
except ImportError:  # Windows: no rlimits; the parent's wall-clock limit and the process boundary still hold
    resource = None

REFUSED, OUT_OF_MEMORY = 2, 3


def limit_self(limits: dict) -> None:
    """Apply the rlimits the parent asks for (bytes of address space, seconds of CPU time) and the fixed ones."""
    if resource is None:
        return
    cpu = limits["cpu_seconds"]
    for name, soft, hard in (("RLIMIT_AS", limits["address_space"], limits["address_space"]),
                             ("RLIMIT_CPU", cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL a second later
                             ("RLIMIT_FSIZE", 0, 0), ("RLIMIT_CORE", 0, 0), ("RLIMIT_NOFILE", 8, 8),
                             ("RLIMIT_NPROC", 0, 0)):
        kind = getattr(resource, name, None)
        if kind is not None:
            ceiling = resource.getrlimit(kind)[1]
            if ceiling != resource.RLIM_INFINITY:
                soft, hard = min(soft, ceiling), min(hard, ceiling)
            resource.setrlimit(kind, (soft, hard))


def read(request: dict) -> dict:
    """Read the file on standard input as the request asks; return the wire-format dict."""
    size = os.fstat(0).st_size
    if size > MAX_FILE_BYTES:
        raise Refused("budget", f"it holds {size:,} bytes, more than the {MAX_FILE_BYTES:,} this reader takes")
    file = open(0, "rb", closefd=False)  # noqa: SIM115 (standard input, closed with the process)
    archive = Archive(file, size)
    data = archive.read(f"{archive.prefix}/data.pkl")
    names = scan_globals(data)
    if request.get("scan_only"):
        return {"globals": names}
    classes = frozenset(request["classes"])
    refused = next((name for name in names if not _allowed(name, classes)), None)
    if refused is not None:
        raise Refused("global", "it pickles a global outside the reader's allow-list", name=refused, names=names)
    storages: dict[str, Storage] = {}

    def storage(key: str, kind: StorageType, elements: int) -> Storage:
        found = storages.setdefault(key, Storage(key, kind, elements))
        if (found.dtype, found.elements) != (kind.dtype, elements):
            raise Refused("content", f"its storage {key} is referenced as two different storages")
        return found

    loaded = Machine(data, classes, storage).run()
    encoder = Encoder(lambda s: archive.storage(s.key, s.elements * s.itemsize))
    return encoder.checkpoint(loaded, tuple(request["roots"]), names)


def _allowed(name: str, classes: frozenset[str]) -> bool:
    return name in FUNCTIONS or name in STORAGE_TYPES or name in classes


def main(argument: str) -> None:
    """Run the request ``argument`` (JSON) on standard input; write the answer and exit."""
    request = json.loads(argument)
    limit_self(request["limits"])
    out = sys.stdout.buffer
    try:
        answer, status = read(request), 0
    except Refused as refusal:
        answer, status = {"refused": {"reason": refusal.reason, "message": refusal.message, "name": refusal.name,
                                      "names": refusal.names}}, REFUSED
    except MemoryError:
        os._exit(OUT_OF_MEMORY)
    except RecursionError:
        answer, status = {"refused": {"reason": "budget", "message": "it nests objects deeper than the reader "
                                                                        "follows", "name": None}}, REFUSED
    try:
        out.write(json.dumps(answer, separators=(",", ":")).encode("utf-8", "surrogatepass"))
        out.flush()
    except MemoryError:
        os._exit(OUT_OF_MEMORY)
    os._exit(status)
