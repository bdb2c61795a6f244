"""What the test files share besides fixtures (those are in conftest.py): the repository, the float32 tolerance, how
many processes a test may run at once, the shipped model YAMLs and their rows at scale n, Ultralytics' log messages,
the test modules built on YOLOv6's code, layers built without initialization (for the scripts that only count rows and
parameters), and the cases a development run leaves to the whole suite."""

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


def first_then_slow(cases) -> list:
    """Parametrize a family's cases: the first in every run, the others marked slow, so a development run
    (``-m "not slow"``) checks each family once and the whole suite checks every case."""
    import pytest

    cases = list(cases)
    return cases[:1] + [pytest.param(case, marks=pytest.mark.slow) for case in cases[1:]]


def workers() -> int:
    """The number of pytest-xdist workers running this suite (1 without xdist)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def cpus_per_worker() -> int:
    """The CPUs this pytest process has to itself: the threads and CPU-bound child processes it may run at once
    without putting more busy processes than cores on the machine."""
    return max(1, (os.cpu_count() or 1) // workers())


def shipped_model_yamls() -> list[Path]:
    """The model YAMLs in cfg/ (those with a backbone; the others are data YAMLs), sorted, read with libyaml's C loader
    where PyYAML has it."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [path for path in sorted((REPO / "cfg").glob("*.yaml")) if "backbone" in yaml.load(path.read_text(), loader)]


def rows_at_scale_n(path: Path) -> dict:
    """A shipped model YAML parsed at scale n (``yolov8-`` read as ``yolov8n-``, as its scaled name loads) by the
    imported Ultralytics' ``parse_model``, as ``YOLO()`` parses it: its parameter count and row types."""
    import torch
    from ultralytics.nn import tasks

    spec = tasks.yaml_model_load(path.with_name(path.name.replace("yolov8-", "yolov8n-")))
    with torch.no_grad():
        layers, _ = tasks.parse_model(spec, ch=spec.get("channels", 3), verbose=False)
    return {"params": sum(p.numel() for p in layers.parameters()), "rows": [type(m).__name__ for m in layers]}


@contextlib.contextmanager
def layers_left_uninitialized():
    """Build convolutions, norms and linear layers without torch's random initialization of their weights (most of a
    scale-n build's time), for checks that count parameters and name rows and never read a value."""
    import torch

    classes = (torch.nn.modules.conv._ConvNd, torch.nn.modules.batchnorm._NormBase, torch.nn.Linear)
    originals = [cls.reset_parameters for cls in classes]
    for cls in classes:
        cls.reset_parameters = lambda self: None
    try:
        yield
    finally:
        for cls, original in zip(classes, originals):
            cls.reset_parameters = original


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
