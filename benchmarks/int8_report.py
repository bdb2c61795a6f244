"""Turn the INT8 / OpenVINO benchmark's measurements into its markdown report, chart and JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import report
from common import Timing, machine_info
from int8_runtimes import PEAK_LABEL, VARIANTS, ModelRun, Shape
from report import table

NOTES = """\
- Models are built from their YAMLs with seeded random weights (latency does not depend on the values) and exported
  by Ultralytics' own exporter, as `yolo export` writes them (so fused, Rep blocks checked by the plugin; static
  shapes; Ultralytics' default `simplify=True`): `format=onnx`, `format=onnx quantize=8`, `format=openvino` and
  `format=openvino quantize=8`, with `batch` and `imgsz` per cell. INT8 exports calibrate on generated shapes images
  (the calibration ranges do not change the speed).
- ONNX Runtime INT8 comes twice: with Ultralytics' settings (`quantize_static` defaults: int8 activations, per-tensor
  weights) and with the plugin's route (pre-processed, uint8 activations, per-channel weights, DFL conv float),
  whatever the model; `YOLOV8_EFFICIENTREP_ORT_INT8` picks the route. `*` marks the one a plain
  `yolo export format=onnx quantize=8` gives the model: the plugin's route for models with plugin layers,
  Ultralytics' settings for the others.
- ONNX Runtime: CPUExecutionProvider, all graph optimizations, sequential, denormals flushed. OpenVINO: CPU plugin,
  `INFERENCE_PRECISION_HINT=f32` (without it the float parts run in bfloat16 on CPUs that have it),
  `PERFORMANCE_HINT=LATENCY`, one infer request. PyTorch: the fused model in eager mode, `torch.inference_mode()`.
  The same threads everywhere.
- Every cell of one input shape and one runtime (and that runtime's peak convs) is timed in 4 round-robin rounds:
  each round gives every cell its warm-up runs and a quarter of its timed runs, so a drift of the machine's speed
  spreads over all of them; one runtime at a time.
- GFLOPs are Ultralytics' count (2 x multiply-adds) of the fused model; an INT8 model does the same operations.
  Achieved rate = GFLOPs x batch / median latency. The peak is one 3x3 conv, 256 -> 256 channels on an 80x80 map,
  batch 1, in the same runtime and precision, timed in the same rounds: ONNX Runtime INT8 is the plugin's route
  (`QLinearConv`, uint8 x int8), OpenVINO INT8 is NNCF's.
- The profile sums ONNX Runtime's per-node kernel times (`SessionOptions.enable_profiling`) over the profiled runs,
  after 3 untimed runs; the counts are the conv nodes the optimized session runs.
"""


def _shape(shape: Shape) -> str:
    """Return ``batch B @S``."""
    return f"batch {shape[0]} @{shape[1]}"


def _ms(run: ModelRun, key: str, shape: Shape) -> float:
    """Median latency in milliseconds."""
    return run.latency[(key, *shape)].median * 1e3


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
    rows = [[PEAK_LABEL, *(f"{rate[v.peak]:.1f} (100%)" for v in VARIANTS)]]
    for run in runs:
        achieved = [run.gflops[shape[1]] * shape[0] / run.latency[(v.key, *shape)].median for v in VARIANTS]
        rows.append([run.entry.name, *(f"{a:.1f} ({a / rate[v.peak]:.0%})" for a, v in zip(achieved, VARIANTS))])
    return table(["model", *(v.label for v in VARIANTS)], rows)


def _find(runs: list[ModelRun], name: str) -> ModelRun | None:
    """The run of the model called ``name``, if measured."""
    return next((run for run in runs if run.entry.name == name), None)


def headline(runs: list[ModelRun], shapes: list[Shape]) -> str:
    """INT8 speed-ups over each model's own FP32 and the fused EfficientRep models' INT8 latency against the others'."""
    rows = []
    for run in runs:
        default = run.default_int8
        rows.append([f"{run.entry.name}: ORT FP32 / ORT INT8 as `yolo export` gives it"]
                    + [f"{_ms(run, 'ort-fp32', s) / _ms(run, default, s):.2f}x" for s in shapes])
        rows.append([f"{run.entry.name}: OpenVINO FP32 / OpenVINO INT8"]
                    + [f"{_ms(run, 'ov-fp32', s) / _ms(run, 'ov-int8', s):.2f}x" for s in shapes])
    for scale in "ns":
        for rep in (f"yolov8{scale}-efficientrep fused", f"yolov8{scale}-qarepvgg fused"):
            for other in (f"yolov8{scale}", f"YOLO11{scale}", f"YOLO26{scale}"):
                a, b = _find(runs, rep), _find(runs, other)
                if not (a and b):
                    continue
                rows.append([f"{rep} / {other}, ORT INT8 as `yolo export` gives each"]
                            + [f"{_ms(a, a.default_int8, s) / _ms(b, b.default_int8, s):.2f}x" for s in shapes])
                rows.append([f"{rep} / {other}, ORT INT8 both on the plugin's route"]
                            + [f"{_ms(a, 'ort-int8-plugin', s) / _ms(b, 'ort-int8-plugin', s):.2f}x" for s in shapes])
                rows.append([f"{rep} / {other}, OpenVINO INT8"]
                            + [f"{_ms(a, 'ov-int8', s) / _ms(b, 'ov-int8', s):.2f}x" for s in shapes])
    note = ("Speed-ups are median latency over median latency (above 1: INT8 is faster); model ratios likewise "
            "(below 1: the first model is faster).")
    return f"{table(['', *(_shape(s) for s in shapes)], rows)}\n\n{note}\n"


def profile_table(runs: list[ModelRun]) -> str:
    """ONNX Runtime's kernel time by kind of node, FP32 and both INT8 routes, with the conv nodes each session runs."""
    rows = []
    for run in runs:
        for key in ("ort-fp32", "ort-int8-ultralytics", "ort-int8-plugin"):
            profile, label = run.profiles[key], next(v.label for v in VARIANTS if v.key == key)
            rows.append([f"{run.entry.name}, {label}{' *' if key == run.default_int8 else ''}",
                         str(profile.quantized_convs), str(profile.float_convs),
                         *(f"{profile.share[k]:.0%}" for k in ("INT8 conv", "float conv", "quantize/dequantize",
                                                               "other"))])
    return table(["session", "QLinearConv nodes", "float conv nodes", "INT8 conv time", "float conv time",
                  "quantize/dequantize time", "other time"], rows)


def graph_table(runs: list[ModelRun]) -> str:
    """What each INT8 file holds and how its runtime runs it (``yolov8_efficientrep.quantize``'s checks)."""
    rows = []
    for run in runs:
        for key, runtime in (("ort-int8-ultralytics", "ONNX Runtime"), ("ort-int8-plugin", "ONNX Runtime"),
                             ("ov-int8", "OpenVINO CPU")):
            graph, label = run.graphs[key], next(v.label for v in VARIANTS if v.key == key)
            rows.append([f"{run.entry.name}, {label}", str(graph.convs), str(graph.quantized),
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
    ax.set(ylabel="median latency, ms", title=f"CPU latency, {_shape(shape)} (* = `yolo export quantize=8`)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(runs: list[ModelRun], peak_gflops: float, peak_timings: dict[Shape, dict[str, Timing]], args,
          marker: str) -> None:
    """Write the markdown report, the chart and the JSON file of median latencies."""
    import nncf
    import openvino

    for path in (args.out, args.chart, args.json):
        path.parent.mkdir(parents=True, exist_ok=True)
    chart_shape = max((s for s in args.shapes if s[0] == 1), key=lambda s: s[1])
    plot(runs, chart_shape, args.chart)
    info = machine_info(args.threads)
    info["versions"] += f", openvino {openvino.__version__}, nncf {nncf.__version__}"
    chart = Path(os.path.relpath(args.chart, args.out.parent)).as_posix()
    sections = [
        marker,
        report.header("Benchmarks: INT8 and OpenVINO on CPU", info, args.warmup, args.runs),
        "## Headline ratios\n\n" + headline(runs, args.shapes),
        *(f"## Latency, {_shape(s)}\n\n" + latency_table(runs, s) for s in args.shapes),
        *(f"## Fraction of the single-conv peak, {_shape(s)}: achieved GFLOP/s (GOP/s for INT8)\n\n"
          + efficiency_table(runs, peak_gflops, peak_timings[s], s) for s in args.shapes),
        f"## ONNX Runtime profile, {_shape(runs[0].graph_shape)} ({args.profile_runs} runs)\n\n" + profile_table(runs),
        f"## INT8 graphs, {_shape(runs[0].graph_shape)}\n\n" + graph_table(runs),
        f"## Latency chart\n\n![latency of every model in every runtime and precision]({chart})",
        "## How it was measured\n\n" + NOTES,
    ]
    args.out.write_text("\n\n".join(s.strip("\n") for s in sections) + "\n")
    args.json.write_text(json.dumps({
        "command": info["command"], "runs": args.runs,
        "models": {run.entry.stem: {"name": run.entry.name, "default_int8": run.default_int8,
                                    "latency_ms": {f"{key} {_shape((batch, imgsz))}": timing.median * 1e3
                                                   for (key, batch, imgsz), timing in run.latency.items()}}
                   for run in runs}}, indent=1))
