"""The INT8 benchmark's tables, chart and JSON file: every model in every runtime and precision."""

from __future__ import annotations

from pathlib import Path

from .int8_runtimes import VARIANTS, ModelRun, Shape
from .latency import peak_label
from .report import shape_label, table
from .timing import Timing


def _ms(run: ModelRun, key: str, shape: Shape) -> float:
    """Median latency in milliseconds."""
    return run.latency[(key, *shape)].median * 1e3


def _label(key: str) -> str:
    """The column header of a variant key."""
    return next(v.label for v in VARIANTS if v.key == key)


def latency_table(runs: list[ModelRun], shape: Shape) -> str:
    """Latency of every model and variant at one shape: ms per batch-1 image, or images/s for a larger batch."""

    def cell(run: ModelRun, key: str) -> str:
        timing = run.latency[(key, *shape)]
        text = timing.ms() if shape[0] == 1 else f"{shape[0] / timing.median:.1f} img/s ({timing.median * 1e3:.1f} ms)"
        return f"{text} *" if key == run.default_int8 else text

    rows = [[run.entry.name, *(cell(run, v.key) for v in VARIANTS)] for run in runs]
    return table(["model", *(v.label for v in VARIANTS)], rows)


def efficiency_table(runs: list[ModelRun], peak_gflops: float, peaks: dict[str, Timing], shape: Shape) -> str:
    """Achieved GFLOP/s (GOP/s for INT8) and the fraction of the same runtime and precision's single-conv peak."""
    rate = {key: peak_gflops / timing.median for key, timing in peaks.items()}
    rows = [[peak_label(), *(f"{rate[v.peak]:.1f} (100%)" for v in VARIANTS)]]
    for run in runs:
        achieved = [run.gflops[shape[1]] * shape[0] / run.latency[(v.key, *shape)].median for v in VARIANTS]
        rows.append([run.entry.name, *(f"{a:.1f} ({a / rate[v.peak]:.0%})" for a, v in zip(achieved, VARIANTS))])
    return table(["model", *(v.label for v in VARIANTS)], rows)


def headline(runs: list[ModelRun], shapes: list[Shape]) -> str:
    """INT8 speed-ups over each model's own FP32 and the fused EfficientRep models' INT8 latency against the others'."""
    by_stem = {run.entry.stem: run for run in runs}
    rows = []
    for run in runs:
        default = run.default_int8
        rows.append([f"{run.entry.name}: ORT FP32 / ORT INT8 as `yolo export` gives it"]
                    + [f"{_ms(run, 'ort-fp32', s) / _ms(run, default, s):.2f}x" for s in shapes])
        rows.append([f"{run.entry.name}: OpenVINO FP32 / OpenVINO INT8"]
                    + [f"{_ms(run, 'ov-fp32', s) / _ms(run, 'ov-int8', s):.2f}x" for s in shapes])
    for scale in "ns":
        for rep in (f"yolov8{scale}-efficientrep", f"yolov8{scale}-qarepvgg"):
            for other in (f"yolov8{scale}", f"yolo11{scale}", f"yolo26{scale}"):
                a, b = by_stem.get(rep), by_stem.get(other)
                if not (a and b):
                    continue
                pair = f"{a.entry.name} / {b.entry.name}"
                rows.append([f"{pair}, ORT INT8 as `yolo export` gives each"]
                            + [f"{_ms(a, a.default_int8, s) / _ms(b, b.default_int8, s):.2f}x" for s in shapes])
                rows.append([f"{pair}, ORT INT8 both on the plugin's route"]
                            + [f"{_ms(a, 'ort-int8-plugin', s) / _ms(b, 'ort-int8-plugin', s):.2f}x" for s in shapes])
                rows.append([f"{pair}, OpenVINO INT8"]
                            + [f"{_ms(a, 'ov-int8', s) / _ms(b, 'ov-int8', s):.2f}x" for s in shapes])
    note = ("Speed-ups are median latency over median latency (above 1: INT8 is faster); model ratios likewise "
            "(below 1: the first model is faster).")
    return f"{table(['', *(shape_label(s) for s in shapes)], rows)}\n\n{note}\n"


def profile_table(runs: list[ModelRun]) -> str:
    """ONNX Runtime's kernel time by kind of node, FP32 and both INT8 routes, with the conv nodes each session runs."""
    rows = []
    for run in runs:
        for key in ("ort-fp32", "ort-int8-ultralytics", "ort-int8-plugin"):
            profile = run.profiles[key]
            rows.append([f"{run.entry.name}, {_label(key)}{' *' if key == run.default_int8 else ''}",
                         str(profile.quantized_convs), str(profile.float_convs),
                         *(f"{profile.share[k]:.0%}" for k in ("INT8 conv", "float conv", "quantize/dequantize",
                                                               "other"))])
    return table(["session", "QLinearConv nodes", "float conv nodes", "INT8 conv time", "float conv time",
                  "quantize/dequantize time", "other time"], rows)


def graph_table(runs: list[ModelRun]) -> str:
    """What each INT8 file holds and how its runtime runs it (``yolov8_efficientrep.graphs``' checks)."""
    rows = []
    for run in runs:
        for key, runtime in (("ort-int8-ultralytics", "ONNX Runtime"), ("ort-int8-plugin", "ONNX Runtime"),
                             ("ov-int8", "OpenVINO CPU")):
            graph = run.graphs[key]
            rows.append([f"{run.entry.name}, {_label(key)}", str(graph.convs), str(graph.quantized),
                         f"{graph.runtime_quantized} ({runtime})", ", ".join(graph.runtime_float[:3])
                         + (", ..." if len(graph.runtime_float) > 3 else ""), ", ".join(graph.leftovers) or "none"])
    return table(["INT8 file", "convs", "quantized in the file", "run in INT8", "run in float", "BatchNorm / Rep "
                  "branch left"], rows, align="---")


def plot(runs: list[ModelRun], shape: Shape, path: Path) -> None:
    """Bar chart: latency of every model in every runtime and precision at one shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(8, 1.8 * len(runs)), 5), dpi=120)
    width = 0.8 / len(VARIANTS)
    for i, variant in enumerate(VARIANTS):
        values = [_ms(run, variant.key, shape) for run in runs]
        ax.bar([j + (i - len(VARIANTS) / 2 + 0.5) * width for j in range(len(runs))], values, width,
               label=variant.label, color=f"C{i}")
    for j, run in enumerate(runs):  # mark what `yolo export quantize=8` gives each model
        i = next(i for i, v in enumerate(VARIANTS) if v.key == run.default_int8)
        ax.annotate("*", (j + (i - len(VARIANTS) / 2 + 0.5) * width, _ms(run, run.default_int8, shape)),
                    ha="center", va="bottom")
    ax.set_xticks(range(len(runs)), [run.entry.name.replace(" fused", "\nfused") for run in runs], fontsize=8)
    ax.set(ylabel="median latency, ms", title=f"CPU latency, {shape_label(shape)} (* = `yolo export quantize=8`)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def as_json(runs: list[ModelRun], command: str, timed_runs: int) -> dict:
    """The median latencies (ms) per model, keyed by YAML stem, as ``int8_accuracy.py`` reads them."""
    return {
        "command": command, "runs": timed_runs,
        "models": {run.entry.stem: {"name": run.entry.name, "default_int8": run.default_int8,
                                    "latency_ms": {f"{key} {shape_label((batch, imgsz))}": timing.median * 1e3
                                                   for (key, batch, imgsz), timing in run.latency.items()}}
                   for run in runs}}
