"""Print markdown tables of parameters and GFLOPs of model YAMLs, in training form and fused.

Usage:
    python benchmarks/model_summary.py [MODEL.yaml ...]   # one row per model: params and GFLOPs, train and fused
    python benchmarks/model_summary.py --configs          # one row per shipped cfg/ model YAML, at scales n and s

The first form defaults to every scale of cfg/yolov8-efficientrep.yaml plus Ultralytics' yolov8n.yaml and
yolov8s.yaml for reference. ``--configs`` reads each config's task as Ultralytics guesses it and what it reproduces from
the YAML's first comment line. GFLOPs are at 640 px (224 px for classification, Ultralytics' default). The numbers in
docs/configs.md come from this script.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

# lib first: importing it makes Ultralytics offline (lib/offline.py)
from lib.report import table

import yaml
from ultralytics import YOLO
from ultralytics.nn.tasks import guess_model_task
from ultralytics.utils.torch_utils import get_flops
from yolov8_efficientrep.configs import scaled_name

REPO = Path(__file__).resolve().parents[1]
# every scale of the unified EfficientRep YAML, and Ultralytics' yolov8n and yolov8s for reference
DEFAULT_MODELS = [*(str(REPO / "cfg" / f"yolov8{s}-efficientrep.yaml") for s in "nsmlx"), "yolov8n.yaml",
                  "yolov8s.yaml"]
CLASSIFY_IMGSZ = 224


def summarize(model_yaml: str, imgsz: int = 640) -> tuple[int, float, int, float]:
    """Return (parameters, GFLOPs, parameters fused, GFLOPs fused) of a model built from ``model_yaml``."""
    model = YOLO(model_yaml, verbose=False).model.eval()
    fused = copy.deepcopy(model).fuse(verbose=False)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return count(model), get_flops(model, imgsz), count(fused), get_flops(fused, imgsz)


def shipped_configs() -> list[Path]:
    """Return the model YAMLs in cfg/ (files with a backbone), in name order."""
    return [p for p in sorted((REPO / "cfg").glob("*.yaml")) if "backbone" in (yaml.safe_load(p.read_text()) or {})]


def configs_table(imgsz: int = 640) -> str:
    """Return the markdown table of the shipped configs: task, what each reproduces, scales n and s."""
    header = ["config", "task", "reproduces", "params n (train / fused)", "GFLOPs n (train / fused)",
              "params s (train / fused)", "GFLOPs s (train / fused)"]
    rows = []
    for path in shipped_configs():
        summary = path.read_text().splitlines()[0].split(":", 1)[1].strip()  # "# <stem>: <what it reproduces>"
        task = guess_model_task(yaml.safe_load(path.read_text()))  # as YOLO() decides it
        size = CLASSIFY_IMGSZ if task == "classify" else imgsz
        cells = []
        for scale in "ns":  # yolov8<scale>-<name>.yaml selects that scale of the unified file
            scaled = path.with_name(scaled_name(path.stem, scale))
            params, flops, fused_params, fused_flops = summarize(str(scaled), size)
            cells += [f"{params / 1e6:.2f}M / {fused_params / 1e6:.2f}M", f"{flops:.1f} / {fused_flops:.1f}"]
        rows.append([f"`{path.name}`", task, summary, *cells])
    return table(header, rows, align=["---", "---", *["---:"] * 4])


def main() -> None:
    """Print the table the command line asks for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--configs", action="store_true", help="tabulate every shipped cfg/ model YAML at scales n, s")
    args = parser.parse_args()
    if args.configs:
        print(f"GFLOPs at {args.imgsz} px ({CLASSIFY_IMGSZ} px for classification)\n")
        print(configs_table(args.imgsz))
        return
    header = ["model", "params (train)", f"GFLOPs@{args.imgsz} (train)", "params (fused)",
              f"GFLOPs@{args.imgsz} (fused)"]
    rows = []
    for model_yaml in args.models:
        params, flops, fused_params, fused_flops = summarize(model_yaml, args.imgsz)
        rows.append([Path(model_yaml).name, f"{params:,}", f"{flops:.1f}", f"{fused_params:,}", f"{fused_flops:.1f}"])
    print(table(header, rows))


if __name__ == "__main__":
    main()
