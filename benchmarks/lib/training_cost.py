"""Training cost per batch: time and peak memory of forward + Ultralytics loss + backward + optimizer step.

Each model is measured in a fresh process, so that its peak resident memory is its own: ``measure_in_fresh_process``
runs ``benchmarks/training_cost.py``, which calls ``measure`` and writes the result as JSON.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import psutil
import torch
from ultralytics import YOLO
from ultralytics.cfg import get_cfg

from .timing import Timing, timed

SCRIPT = Path(__file__).resolve().parents[1] / "training_cost.py"


def load_batch(data_root: Path, batch: int) -> dict[str, torch.Tensor]:
    """Load the first ``batch`` training images of a generated shapes data set as an Ultralytics training batch."""
    images = sorted((data_root / "images" / "train").glob("*.png"))[:batch]
    if len(images) < batch:
        raise SystemExit(f"{data_root}: {len(images)} training images, need {batch}; make a larger data set")
    pixels, labels = [], []
    for i, image in enumerate(images):
        pixels.append(cv2.imread(str(image))[:, :, ::-1].transpose(2, 0, 1) / 255.0)  # BGR HWC -> RGB CHW
        rows = np.loadtxt(data_root / "labels" / "train" / f"{image.stem}.txt", ndmin=2)  # class x y w h
        labels.append(np.hstack([np.full((len(rows), 1), i), rows]))
    # contiguous NCHW as Ultralytics' loader makes it: np.stack of transposed views would be channels-last, and on
    # torch 2.14.1 oneDNN's weight gradient of a 1x1 stride-2 conv on 3 channels-last channels corrupts the heap
    pixels = torch.from_numpy(np.ascontiguousarray(np.stack(pixels))).float()
    labels = torch.from_numpy(np.concatenate(labels)).float()
    return {"img": pixels, "batch_idx": labels[:, 0], "cls": labels[:, 1:2], "bboxes": labels[:, 2:]}


def training_model(cfg: str) -> torch.nn.Module:
    """Build the model in its training form with Ultralytics' default hyper-parameters (which the loss reads)."""
    model = YOLO(cfg, verbose=False).model
    model.args = get_cfg()
    return model.train()


def step_timing(model: torch.nn.Module, batch: dict[str, torch.Tensor], warmup: int, runs: int) -> Timing:
    """Time SGD steps (Ultralytics' default momentum and weight decay) on the same batch with the real YOLO loss."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937, nesterov=True, weight_decay=5e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model.loss(batch)
        loss.sum().backward()
        optimizer.step()

    return timed(step, warmup, runs)


def peak_rss() -> int:
    """Return this process's peak resident memory in bytes.

    Linux's ``VmHWM`` belongs to the process image, whereas ``ru_maxrss`` survives ``exec`` and so would start at the
    parent's size.
    """
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


def measure(cfg: str, data_root: Path, batch: int, warmup: int, runs: int) -> dict:
    """Measure one model's training step in this process: ``{"timing", "rss_start", "peak_rss"}`` (bytes), as JSON."""
    model, images = training_model(cfg), load_batch(data_root, batch)
    rss_start = psutil.Process(os.getpid()).memory_info().rss  # model and batch built, nothing run yet
    timing = step_timing(model, images, warmup, runs)
    return {"timing": asdict(timing), "rss_start": rss_start, "peak_rss": peak_rss()}


def measure_in_fresh_process(cfg: str, data_root: Path, batch: int, threads: int, warmup: int, runs: int,
                             workdir: Path) -> dict:
    """Run ``benchmarks/training_cost.py`` for one model in a new interpreter; return ``measure``'s result, its
    timing as a ``Timing``."""
    out = workdir / f"training-{Path(cfg).stem}.json"
    command = [sys.executable, str(SCRIPT), "--model", cfg, "--data", str(data_root), "--batch", str(batch),
               "--threads", str(threads), "--warmup", str(warmup), "--runs", str(runs), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"training cost of {cfg} failed with exit status {result.returncode} "
                           f"({' '.join(command)}):\n{result.stderr[-3000:]}")
    measured = json.loads(out.read_text())
    measured["timing"] = Timing(**measured["timing"])
    return measured
