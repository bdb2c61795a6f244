"""What every benchmark shares: an offline Ultralytics, the model line-up, timing statistics, the machine's description.

Import this module before anything imports Ultralytics: Ultralytics reads its environment variables at import time.
"""

from __future__ import annotations

import atexit
import copy
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Hashable

if "YOLO_CONFIG_DIR" not in os.environ:  # a private settings dir; subprocesses inherit it, this process removes it
    os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="yolov8-efficientrep-bench-")
    atexit.register(shutil.rmtree, os.environ["YOLO_CONFIG_DIR"], True)
os.environ.update(YOLO_OFFLINE="true", YOLO_AUTOINSTALL="false")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from ultralytics import YOLO  # noqa: E402

import yolov8_efficientrep  # noqa: E402  registers the blocks with Ultralytics' parser

STARTED = time.perf_counter()
RUNS_FOR_A_MEASUREMENT = 20  # fewer timed runs than this are a smoke test, and the report says so


@dataclass(frozen=True)
class Entry:
    """One model in the line-up: a display name, the YAML it is built from, and whether it runs fused."""

    name: str
    cfg: str
    fused: bool

    @property
    def stem(self) -> str:
        """The YAML's name without suffix, as ``--models`` takes it."""
        return self.cfg.rsplit(".", 1)[0]


# Ultralytics' own models run after model.fuse(), as Ultralytics deploys them (Conv+BN folded).
LINEUP = (
    Entry("yolov8n", "yolov8n.yaml", True),
    Entry("yolov6n (Ultralytics)", "yolov6n.yaml", True),
    Entry("yolov8n-efficientrep unfused", "yolov8n-efficientrep.yaml", False),
    Entry("yolov8n-efficientrep fused", "yolov8n-efficientrep.yaml", True),
    Entry("yolov8s", "yolov8s.yaml", True),
    Entry("yolov8s-efficientrep unfused", "yolov8s-efficientrep.yaml", False),
    Entry("yolov8s-efficientrep fused", "yolov8s-efficientrep.yaml", True),
)
BASELINE = "yolov8n"


def add_latency_args(parser, runtimes: str = "every runtime", batch: bool = True) -> None:
    """Add the timing options every latency benchmark shares: image sizes, throughput batch, threads, runs."""
    parser.add_argument("--imgsz", type=int, nargs="+", default=[320, 640], help="batch-1 image sizes")
    if batch:
        parser.add_argument("--batch", type=int, default=4, help="batch for the throughput measurement (1: none)")
        parser.add_argument("--batch-imgsz", type=int, default=320, help="image size for the throughput measurement")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help=f"threads in {runtimes}")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per cell (20 or more for a measurement)")


def check_sizes(parser, sizes: list[int], counts: list[int]) -> None:
    """Stop with a usage error unless image sizes are positive multiples of 32 and batches and runs at least 1."""
    if any(s <= 0 or s % 32 for s in sizes) or min(counts) < 1:
        parser.error(f"image sizes must be positive multiples of 32 (the models' largest stride), got {sizes}; "
                     f"batches and runs must be at least 1")


def select(names: list[str] | None, lineup: tuple[Entry, ...] = LINEUP) -> tuple[Entry, ...]:
    """Return the ``lineup`` entries whose YAML stem (e.g. ``yolov8n-efficientrep``) is in ``names``; all if None."""
    if not names:
        return lineup
    stems = {entry.stem for entry in lineup}
    unknown = sorted(set(names) - stems)
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(sorted(stems))}")
    return tuple(entry for entry in lineup if entry.stem in names)


def build(entry: Entry) -> nn.Module:
    """Build the entry's detection model from its YAML, in eval mode.

    The weights are random (latency does not depend on them) but seeded: the fused and unfused entries of one YAML
    are the same network, so their outputs can be compared.
    """
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = YOLO(entry.cfg, verbose=False).model.eval()
    return copy.deepcopy(model).fuse(verbose=False) if entry.fused else model


def set_export_mode(model: nn.Module) -> nn.Module:
    """Make the Detect head return only its decoded predictions, as an exported model does."""
    for module in model.modules():
        if hasattr(module, "export") and hasattr(module, "format"):
            module.export, module.format = True, "onnx"
    return model


@dataclass(frozen=True)
class Timing:
    """Statistics of timed runs, in seconds."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    runs: int

    @classmethod
    def of(cls, samples: list[float]) -> Timing:
        """Summarize the samples (quartiles need two or more; a single run gives q1 = q3 = the run)."""
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else samples * 3
        return cls(statistics.median(samples), q1, q3, min(samples), max(samples), len(samples))

    def ms(self) -> str:
        """Return ``median [q1-q3]`` in milliseconds."""
        return f"{self.median * 1e3:.1f} [{self.q1 * 1e3:.1f}-{self.q3 * 1e3:.1f}]"


def run_samples(run: Callable[[], object], warmup: int, runs: int,
                sync: Callable[[], None] = lambda: None) -> list[float]:
    """Call ``run`` ``warmup`` times untimed, then ``runs`` times timed; return the seconds of each timed call.

    ``sync`` waits for asynchronous devices.
    """
    for _ in range(warmup):
        run()
    sync()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        sync()
        samples.append(time.perf_counter() - start)
    return samples


def timed(run: Callable[[], object], warmup: int, runs: int, sync: Callable[[], None] = lambda: None) -> Timing:
    """Statistics of ``run_samples``."""
    return Timing.of(run_samples(run, warmup, runs, sync))


def timed_interleaved(calls: dict[Hashable, Callable[[], object]], warmup: int, runs: int,
                      rounds: int = 4) -> dict[Hashable, Timing]:
    """Time every call ``runs`` times in total, spread over ``rounds`` round-robin rounds; return a Timing per call.

    In each round every call gets a block: ``warmup`` untimed runs, then its share of the timed runs back to back, so
    each timed run sees a steady state (caches, thread pools) as a deployed model does. Rotating the blocks spreads any
    drift of the machine's speed (other tenants, clock changes) over all the calls, so ratios between them stay fair;
    timing one model after the other let such drift bias them (seen here: the same ratio read 1.25x in one run and
    0.90x in the next). Pass the calls of one runtime at a time: ONNX Runtime's idle threads spin after a run and
    would slow a PyTorch call timed right after it.
    """
    rounds = max(1, min(rounds, runs))
    samples: dict[Hashable, list[float]] = {key: [] for key in calls}
    for round_index in range(rounds):
        share = runs // rounds + (round_index < runs % rounds)
        for key, run in calls.items():
            samples[key].extend(run_samples(run, warmup, share))
    return {key: Timing.of(values) for key, values in samples.items()}


def log(message: str) -> None:
    """Print progress, with the seconds since start, to stderr."""
    print(f"[{time.perf_counter() - STARTED:6.0f} s] {message}", file=sys.stderr, flush=True)


def cpu_name() -> str:
    """Return the CPU's model name as the OS reports it."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int) -> dict[str, str]:
    """Describe the machine, the libraries and the moment, for the report's header."""
    import numpy
    import onnx
    import onnxruntime
    import ultralytics

    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": cpu_name(),
        "cores": f"{cores} logical, {usable} usable by this process",
        "threads": f"{threads} (torch.set_num_threads and ONNX Runtime intra-op threads; inter-op 1)",
        "OS": platform.platform(),
        "versions": f"Python {platform.python_version()}, torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}, onnx {onnx.__version__}, ultralytics {ultralytics.__version__}, numpy "
        f"{numpy.__version__}, yolov8-efficientrep {yolov8_efficientrep.__version__}",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
    }
