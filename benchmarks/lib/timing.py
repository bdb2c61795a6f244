"""How the benchmarks time a call: warm-up, timed runs, rotating rounds, statistics, and the options that set them."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Hashable

import torch

STARTED = time.perf_counter()
RUNS_FOR_A_MEASUREMENT = 20  # fewer timed runs than this are a smoke test, and the report says so


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
    timing one model after the other let such drift bias them (docs/benchmarks.md gives the figures). Pass the calls of
    one runtime at a time: ONNX Runtime's idle threads spin after a run and would slow a PyTorch call timed right
    after it.
    """
    rounds = max(1, min(rounds, runs))
    samples: dict[Hashable, list[float]] = {key: [] for key in calls}
    for round_index in range(rounds):
        share = runs // rounds + (round_index < runs % rounds)
        for key, run in calls.items():
            samples[key].extend(run_samples(run, warmup, share))
    return {key: Timing.of(values) for key, values in samples.items()}


def add_latency_args(parser: argparse.ArgumentParser, runtimes: str = "every runtime", batch: bool = True) -> None:
    """Add the timing options every latency benchmark shares: image sizes, throughput batch, threads, runs."""
    parser.add_argument("--imgsz", type=int, nargs="+", default=[320, 640], help="batch-1 image sizes")
    if batch:
        parser.add_argument("--batch", type=int, default=4, help="batch for the throughput measurement (1: none)")
        parser.add_argument("--batch-imgsz", type=int, default=320, help="image size for the throughput measurement")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help=f"threads in {runtimes}")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per cell (20 or more for a measurement)")


def check_sizes(parser: argparse.ArgumentParser, sizes: list[int], counts: list[int]) -> None:
    """Stop with a usage error unless image sizes are positive multiples of 32 and batches and runs at least 1."""
    if any(s <= 0 or s % 32 for s in sizes) or min(counts) < 1:
        parser.error(f"image sizes must be positive multiples of 32 (the models' largest stride), got {sizes}; "
                     f"batches and runs must be at least 1")


def log(message: str) -> None:
    """Print progress, with the seconds since start, to stderr."""
    print(f"[{time.perf_counter() - STARTED:6.0f} s] {message}", file=sys.stderr, flush=True)
