"""Print a markdown table of parameters and GFLOPs (640 px) of model YAMLs, in training form and fused.

Usage: python benchmarks/model_summary.py [MODEL.yaml ...]
Defaults to every scale of cfg/yolov8-efficientrep.yaml plus Ultralytics' yolov8n.yaml and yolov8s.yaml for
reference. The numbers in README.md come from this script.
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "true")

from ultralytics import YOLO  # noqa: E402
from ultralytics.utils.torch_utils import get_flops  # noqa: E402

import yolov8_efficientrep  # noqa: E402, F401  registers the blocks

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = [str(REPO / "cfg" / f"yolov8{s}-efficientrep.yaml") for s in "nsmlx"] + ["yolov8n.yaml", "yolov8s.yaml"]


def summarize(model_yaml: str, imgsz: int = 640) -> tuple[int, float, int, float]:
    """Return (parameters, GFLOPs) of a model built from ``model_yaml`` before and after ``fuse()``."""
    model = YOLO(model_yaml, verbose=False).model.eval()
    fused = copy.deepcopy(model).fuse(verbose=False)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return count(model), get_flops(model, imgsz), count(fused), get_flops(fused, imgsz)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--imgsz", type=int, default=640)
    args = parser.parse_args()
    print(f"| model | params (train) | GFLOPs@{args.imgsz} (train) | params (fused) | GFLOPs@{args.imgsz} (fused) |")
    print("|---|---:|---:|---:|---:|")
    for model_yaml in args.models:
        params, flops, fused_params, fused_flops = summarize(model_yaml, args.imgsz)
        print(f"| {Path(model_yaml).name} | {params:,} | {flops:.1f} | {fused_params:,} | {fused_flops:.1f} |")


if __name__ == "__main__":
    main()
