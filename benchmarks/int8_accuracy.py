"""INT8 accuracy: what ONNX Runtime and OpenVINO INT8 cost each model in mAP, against the speed they buy.

Each model of the INT8 benchmark's line-up is trained once on the generated shapes set with the side-by-side's recipe
(``lib/recipe.py``; ``lib/zoo.py`` caches it, shared with the ablation), exported by Ultralytics' exporter in FP32 and
INT8 for ONNX Runtime (INT8 with Ultralytics' settings and with the plugin's route) and OpenVINO, and every exported
file is validated by Ultralytics' validator on the validation split. INT8 calibrates on part of the training split.
Writes a markdown table and a picture of each INT8 speed-up (read from ``bench_int8.py``'s JSON file) against its
mAP50-95 change.

Usage: python benchmarks/bench_int8.py && python benchmarks/int8_accuracy.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

# lib first: importing it makes Ultralytics offline (lib/offline.py)
from lib import report, zoo
from lib.int8_runtimes import OPENVINO, VARIANTS, export, validate
from lib.lineup import INT8, INT8_DEFAULT, Entry, select
from lib.recipe import EPOCHS, RECIPE
from lib.timing import log

import torch
from ultralytics import YOLO

INT8_PAIRS = (("ort-int8-ultralytics", "ort-fp32"), ("ort-int8-plugin", "ort-fp32"), ("ov-int8", "ov-fp32"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (every default is the full measurement)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=report.RESULTS / "RESULTS_INT8_ACCURACY.md", help="markdown report")
    parser.add_argument("--models", nargs="+", metavar="STEM", default=INT8_DEFAULT, help="YAML stems")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="training epochs (the zoo caches each model)")
    parser.add_argument("--zoo", type=Path, default=zoo.DEFAULT_ZOO, help="cache of trained models")
    parser.add_argument("--latency", type=Path, default=report.RESULTS / "RESULTS_INT8.json",
                        help="bench_int8.py's JSON file, for the speed-ups in the picture")
    parser.add_argument("--speed-shape", default="batch 1 @640", help="the benchmark's shape the speed-ups are from")
    parser.add_argument("--calibration-fraction", type=float, default=0.25,
                        help="fraction of the training split INT8 calibrates on (0.25: 128 of 512 images)")
    args = parser.parse_args(argv)
    if not args.latency.is_file():
        parser.error(f"{args.latency} not found: run python benchmarks/bench_int8.py first (or pass --latency)")
    args.entries = select(args.models, INT8)
    args.speed = json.loads(args.latency.read_text())["models"]
    missing = [e.stem for e in args.entries if f"ort-fp32 {args.speed_shape}" not in args.speed.get(e.stem, {}).get(
        "latency_ms", {})]
    if missing:
        parser.error(f"{args.latency} has no {args.speed_shape!r} latency of {', '.join(missing)}; rerun bench_int8.py "
                     f"with them (--models) or pick another --speed-shape")
    args.chart = args.out.with_suffix(".png")
    return args


def measure(entry: Entry, args: argparse.Namespace, workdir: Path) -> dict[str, dict[str, float]]:
    """Train (or fetch) one model, export it in every variant and validate each; return metrics per variant."""
    trained = zoo.trained(entry.cfg, args.epochs, zoo=args.zoo, log=log)
    data, imgsz = zoo.dataset(args.zoo), RECIPE["imgsz"]
    results = {"pytorch": validate(trained.best, data, imgsz)}  # Ultralytics' validator fuses the model
    for variant in VARIANTS[1:]:
        folder = workdir / entry.stem / variant.key
        folder.mkdir(parents=True)
        checkpoint = shutil.copy(trained.best, folder / "best.pt")  # Ultralytics exports next to the checkpoint
        log(f"{entry.name}: export and validate {variant.label}")
        path = export(YOLO(checkpoint), variant, 1, imgsz, data, folder, split="train",
                      fraction=args.calibration_fraction)
        results[variant.key] = validate(path.parent if variant.runtime == OPENVINO else path, data, imgsz)
    return results


def accuracy_table(results: dict, args: argparse.Namespace, metric: str) -> str:
    """One metric of every model and variant, INT8 cells with their change from the same runtime's FP32."""
    rows = []
    for entry in args.entries:
        values = results[entry.stem]
        cells = []
        for variant in VARIANTS:
            value = values[variant.key][metric]
            fp32 = next((values[f][metric] for i, f in INT8_PAIRS if i == variant.key), None)
            cells.append(f"{value:.3f}" + (f" ({value - fp32:+.3f})" if fp32 is not None else ""))
        rows.append([entry.name, *cells])
    return report.table(["model", *(v.label for v in VARIANTS)], rows)


def speedup(args: argparse.Namespace, stem: str, int8: str, fp32: str) -> float:
    """INT8 speed-up over FP32 in the benchmark's JSON file at ``--speed-shape``."""
    latency = args.speed[stem]["latency_ms"]
    return latency[f"{fp32} {args.speed_shape}"] / latency[f"{int8} {args.speed_shape}"]


def plot(results: dict, args: argparse.Namespace) -> None:
    """Scatter: each model's INT8 speed-up over FP32 against its mAP50-95 change, one marker per INT8 variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for i, entry in enumerate(args.entries):
        for (int8, fp32), marker in zip(INT8_PAIRS, "os^"):
            change = results[entry.stem][int8]["mAP50-95"] - results[entry.stem][fp32]["mAP50-95"]
            label = f"{entry.name}, {next(v.label for v in VARIANTS if v.key == int8)}"
            ax.scatter(speedup(args, entry.stem, int8, fp32), change, marker=marker, s=60, color=f"C{i}",
                       label=label, zorder=3)
    ax.axhline(0, color="k", lw=0.8)
    ax.axvline(1, color="k", lw=0.8, ls="--")
    ax.set(xlabel=f"INT8 speed-up over FP32 in the same runtime ({args.speed_shape}, {args.latency.name})",
           ylabel="mAP50-95 change, INT8 - FP32", title="INT8 on CPU: speed-up vs accuracy change")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best", ncol=2)
    fig.tight_layout()
    fig.savefig(args.chart)
    plt.close(fig)


NOTES = """\
- Training: `benchmarks/lib/zoo.py`'s `trained(cfg, epochs)`, the side-by-side's recipe (generated shapes set, 512
  train / 128 val images of 160 px, batch 8, nbs 8, seed 0, deterministic, CPU), cached and shared with the other
  accuracy benchmarks. Every model is validated at 160 px on the 128 validation images by Ultralytics' validator,
  batch 1.
- PyTorch FP32 is the trained `best.pt` (the validator fuses it). Every other column is a file exported from it by
  Ultralytics' exporter at 160 px, as `yolo export` writes it; INT8 calibrates on the stated fraction of the
  training split (`split=train fraction=...`), so no validation image is a calibration image.
- ONNX Runtime INT8 comes with Ultralytics' settings (`quantize_static` defaults: int8 activations, per-tensor weights,
  every Conv quantized) and with the plugin's route (pre-processed, uint8 activations, per-channel weights, DFL conv
  float); a plain `yolo export format=onnx quantize=8` gives plugin models the plugin's route and every other model
  Ultralytics' settings. OpenVINO INT8 is Ultralytics' NNCF export (MIXED preset, its DFL float).
- OpenVINO runs as Ultralytics' validator compiles it: the CPU plugin's default precision, which is bfloat16 for the
  float parts on CPUs with AVX512-BF16 (FP32 column included).
- In brackets: change from the same runtime's FP32 file. The picture's speed-ups come from the INT8 benchmark's
  JSON file (models built from their YAMLs with random weights; latency does not depend on the values).
"""


def main(argv: list[str] | None = None) -> None:
    """Train, export, validate; write the report and the picture."""
    args = parse_args(argv)
    marker = report.marker(Path(__file__).name)
    report.refuse_to_overwrite_foreign(args.out, args.chart, marker)
    results = {}
    with tempfile.TemporaryDirectory(prefix="int8-accuracy-") as tmp:
        for entry in args.entries:
            results[entry.stem] = measure(entry, args, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, args)
    info = report.machine_info(torch.get_num_threads(), openvino=True)
    info.pop("threads")
    rows = [[key, value] for key, value in info.items()]
    rows.append(["training", f"{args.epochs} epochs, zoo {args.zoo}"])
    rows.append(["INT8 calibration", f"{args.calibration_fraction:.0%} of the training split"])
    rows.append(["speed-ups", f"{args.latency} ({args.speed_shape})"])
    if args.epochs < EPOCHS:
        rows.append(["note", f"**{args.epochs} epochs, not the default {EPOCHS}: less trained models, whose INT8 "
                             f"changes "
                             f"may differ from fully trained ones'**"])
    sections = [
        marker,
        "# INT8 accuracy: FP32 and INT8 in ONNX Runtime and OpenVINO\n\n" + report.table(["", ""], rows, align="---"),
        "## mAP50-95\n\n" + accuracy_table(results, args, "mAP50-95"),
        "## mAP50\n\n" + accuracy_table(results, args, "mAP50"),
        "## INT8 speed-up vs mAP50-95 change\n\n![INT8 speed-up vs mAP50-95 change]"
        f"({report.link(args.chart, args.out)})",
        "## How it was measured\n\n" + NOTES,
    ]
    report.write(args.out, sections)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    log(f"wrote {args.out}, {args.chart} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
