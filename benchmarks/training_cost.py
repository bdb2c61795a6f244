"""Training cost per batch: time and peak memory of forward + Ultralytics loss + backward + optimizer step.

Each model is measured in a fresh process, so its peak resident memory is its own. As a script this is that
process: ``python benchmarks/training_cost.py --model yolov8n.yaml --data DIR --out result.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import common  # noqa: F401  before Ultralytics: offline environment
import cv2
import numpy as np
import psutil
import torch
from ultralytics import YOLO
from ultralytics.cfg import get_cfg

from common import Timing, timed

HERE = Path(__file__).resolve().parent


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

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model.loss(batch)
        loss.sum().backward()
        optimizer.step()

    return timed(step, warmup, runs)


def measure_in_fresh_process(cfg: str, data_root: Path, batch: int, threads: int, warmup: int, runs: int,
                             workdir: Path) -> dict:
    """Run this script for one model in a new interpreter; return its timing and memory (see ``main``)."""
    out = workdir / f"training-{Path(cfg).stem}.json"
    command = [sys.executable, str(HERE / "training_cost.py"), "--model", cfg, "--data", str(data_root), "--batch",
               str(batch), "--threads", str(threads), "--warmup", str(warmup), "--runs", str(runs), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"training cost of {cfg} failed with exit status {result.returncode} "
                           f"({' '.join(command)}):\n{result.stderr[-3000:]}")
    measured = json.loads(out.read_text())
    measured["timing"] = Timing(**measured["timing"])
    return measured


def _peak_rss() -> int:
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


def main() -> None:
    """Measure one model's training step and write ``{"timing", "rss_start", "peak_rss"}`` (bytes) as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model YAML, e.g. yolov8n-efficientrep.yaml")
    parser.add_argument("--data", type=Path, required=True, help="root of a make_shapes_dataset data set")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model, batch = training_model(args.model), load_batch(args.data, args.batch)
    rss_start = psutil.Process(os.getpid()).memory_info().rss  # model and batch built, nothing run yet
    timing = step_timing(model, batch, args.warmup, args.runs)
    args.out.write_text(json.dumps({"timing": asdict(timing), "rss_start": rss_start, "peak_rss": _peak_rss()}))


if __name__ == "__main__":
    main()
