"""Measure one model's training step in this process and write it as JSON (time, and peak memory of the process).

The CPU benchmark and the ablation run this script once per model, so that each peak memory is the model's own:
``python benchmarks/training_cost.py --model yolov8n.yaml --data DIR --out result.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# lib first: importing it makes Ultralytics offline (lib/offline.py)
from lib.training_cost import measure

import torch


def main(argv: list[str] | None = None) -> None:
    """Measure one model's training step and write ``{"timing", "rss_start", "peak_rss"}`` (bytes) as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model YAML, e.g. yolov8n-efficientrep.yaml")
    parser.add_argument("--data", type=Path, required=True, help="root of a make_shapes_dataset data set")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    args.out.write_text(json.dumps(measure(args.model, args.data, args.batch, args.warmup, args.runs)))


if __name__ == "__main__":
    main()
