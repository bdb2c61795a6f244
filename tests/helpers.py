"""What the test files share besides fixtures (those are in conftest.py): the repository, the float32 tolerance, how
many processes a test may run at once, Ultralytics' log messages, and the test modules built on YOLOv6's code."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Float32 bound on relative_difference: fused against unfused, a runtime against PyTorch, an import against YOLOv6
RTOL = 1e-4


def relative_difference(output, reference) -> float:
    """Return max |output - reference| / max |reference| (torch tensors or numpy arrays)."""
    return float(abs(output - reference).max() / abs(reference).max())


def workers() -> int:
    """The number of pytest-xdist workers running this suite (1 without xdist)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def cpus_per_worker() -> int:
    """The CPUs this pytest process has to itself: the threads and CPU-bound child processes it may run at once
    without putting more busy processes than cores on the machine."""
    return max(1, (os.cpu_count() or 1) // workers())


@contextlib.contextmanager
def ultralytics_messages():
    """Collect Ultralytics' log messages while in the block (its logger does not propagate to pytest's caplog)."""
    from ultralytics.utils import LOGGER  # not at import: conftest.py sets Ultralytics' environment first

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    LOGGER.addHandler(handler)
    try:
        yield records
    finally:
        LOGGER.removeHandler(handler)


def yolov6_module(name: str):
    """Import the test module ``name`` built on YOLOv6's own code; skip the test where that code is not installed."""
    import pytest

    pytest.importorskip("yolov6.models.yolo", reason="YOLOv6's code is not installed: pip install --no-deps "
                                                      "yolov6detect==0.4.1 tqdm (the test extra lists tqdm)")
    return importlib.import_module(name)


def script_function(script: str, name: str):
    """Return the function ``name`` that ``script`` (a test's code for a fresh process) defines, to run the same code
    in this process too."""
    namespace = {"__name__": "script"}
    exec(script, namespace)
    return namespace[name]
