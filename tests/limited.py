"""One call measured the way the untrusted-file children of test_stored_attributes.py and test_restricted_loading.py
measure it: under an optional address-space limit above the process as it is, from a fresh peak-memory mark
(``ru_maxrss`` never falls, and starts at the parent's peak). Those children import it (tests/ on ``PYTHONPATH``)."""

from __future__ import annotations

import resource
import time


def status(field: str) -> int:
    """A size field of /proc/self/status (``VmSize``, ``VmHWM``), in bytes."""
    with open("/proc/self/status") as file:
        return int(file.read().split(field + ":")[1].split()[0]) << 10


def measured(call, headroom: int | None = None) -> dict:
    """Run ``call()``, limited to ``headroom`` more bytes of address space if given (lifted again afterwards); return
    ``{"outcome": "done"}``, or the error's type name, message, seconds taken and peak-memory growth."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if headroom:
        resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + headroom, hard))
    with open("/proc/self/clear_refs", "w") as marks:
        marks.write("5")  # VmHWM back to the resident size now
    before, start = status("VmHWM"), time.perf_counter()
    try:
        call()
        return {"outcome": "done"}
    except Exception as error:
        return {"outcome": type(error).__name__, "message": str(error), "seconds": time.perf_counter() - start,
                "growth": status("VmHWM") - before}
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
