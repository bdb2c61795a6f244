"""Benchmark INT8 and OpenVINO beside ONNX Runtime FP32 and PyTorch on this machine's CPU, in one run.

For yolov8n, YOLO11n, YOLO26n and the fused yolov8n-efficientrep and yolov8n-qarepvgg (s scale on request), every
file exported by Ultralytics' exporter as ``yolo export`` writes it: ONNX Runtime FP32 and INT8 (with Ultralytics'
settings and with the plugin's route), OpenVINO FP32 and INT8 (NNCF), and PyTorch eager FP32. Measures latency at
batch 1 (each --imgsz) and throughput at --batch, the fraction of a single 3x3 conv's peak in the same runtime and
precision, ONNX Runtime's kernel profile (INT8 vs float conv time) and what each INT8 graph holds. Writes a markdown
report, a chart and a JSON file of the latencies (which ``int8_accuracy.py`` plots against the accuracy).

Usage: python benchmarks/bench_int8.py  (defaults: the n-scale line-up, 20 timed runs,
benchmarks/results/RESULTS_INT8.md)
Run it on an otherwise idle machine: timings taken beside other work are not comparable.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

# lib first: importing it makes Ultralytics offline (lib/offline.py)
from lib import int8_tables, report
from lib.int8_runtimes import (ORT, OPENVINO, PYTORCH, VARIANTS, ModelRun, Shape, export, peak_calls, profile_ort,
                               runner)
from lib.latency import count_gflops, eager_forward, reference_input
from lib.lineup import INT8, INT8_DEFAULT, Entry, build, seeded_yolo, select
from lib.timing import Timing, add_latency_args, check_sizes, log, timed_interleaved

import torch
from yolov8_efficientrep.graphs import onnx_int8_graph, openvino_int8_graph
from yolov8_efficientrep.rows import uses_plugin
from yolov8_efficientrep.shapes import make_shapes_dataset

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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (every default is the full measurement)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=report.RESULTS / "RESULTS_INT8.md", help="markdown report to write")
    parser.add_argument("--models", nargs="+", metavar="STEM", default=INT8_DEFAULT,
                        help=f"YAML stems (default: the n scale; also {', '.join(e.stem for e in INT8[5:])})")
    add_latency_args(parser)
    parser.add_argument("--calibration-images", type=int, default=16,
                        help="generated images INT8 exports calibrate on (the ranges do not change the speed)")
    parser.add_argument("--profile-runs", type=int, default=10, help="runs in ONNX Runtime's kernel profile")
    args = parser.parse_args(argv)
    check_sizes(parser, [*args.imgsz, args.batch_imgsz], [args.batch, args.runs, args.profile_runs])
    args.entries = select(args.models, INT8)
    args.shapes = [(1, s) for s in args.imgsz] + ([(args.batch, args.batch_imgsz)] if args.batch > 1 else [])
    args.chart, args.json = args.out.with_suffix(".png"), args.out.with_suffix(".json")
    return args


def prepare(entry: Entry, shapes: list[Shape], graph_shape: Shape, data: Path, workdir: Path) -> ModelRun:
    """Build one model, export every variant for every shape, count its GFLOPs and check its INT8 graphs."""
    yolo = seeded_yolo(entry.cfg)
    eager = build(entry)  # the same seeded weights, fused as the exporter fuses them
    run = ModelRun(entry, uses_plugin(eager), eager, graph_shape=graph_shape)
    for batch, imgsz in shapes:
        run.gflops.setdefault(imgsz, count_gflops(eager, imgsz, entry))
        for variant in VARIANTS[1:]:  # PyTorch runs the eager model itself
            folder = workdir / entry.stem / f"{variant.key}-b{batch}-{imgsz}"
            run.files[variant.key, batch, imgsz] = export(yolo, variant, batch, imgsz, data, folder)
    for key in ("ort-int8-ultralytics", "ort-int8-plugin"):
        run.graphs[key] = onnx_int8_graph(run.files[(key, *graph_shape)])
    run.graphs["ov-int8"] = openvino_int8_graph(run.files[("ov-int8", *graph_shape)])
    return run


def time_shape(runs: list[ModelRun], peaks: dict, shape: Shape, args: argparse.Namespace) -> dict[str, Timing]:
    """Time every model and variant at one shape, one runtime at a time, in rotating rounds with that runtime's peak
    convs; store the models' timings in ``runs`` and return the peaks'."""
    batch, imgsz = shape
    x = reference_input(batch, imgsz)
    prefix = {ORT: "ort-", OPENVINO: "ov-", PYTORCH: "pytorch"}
    peak_timings = {}
    for runtime in (ORT, OPENVINO, PYTORCH):
        cells = {("peak", key): call for key, call in peaks.items() if key.startswith(prefix[runtime])}
        for index, run in enumerate(runs):
            for variant in (v for v in VARIANTS if v.runtime == runtime):
                cells[index, variant.key] = (lambda model=run.eager: eager_forward(model, x)) if runtime == PYTORCH \
                    else runner(runtime, run.files[variant.key, batch, imgsz], x.numpy(), args.threads)
        log(f"latency: {runtime}, batch {batch} @{imgsz}, {len(cells)} cells, {args.runs} timed runs each")
        for (owner, key), timing in timed_interleaved(cells, args.warmup, args.runs).items():
            if owner == "peak":
                peak_timings[key] = timing
            else:
                runs[owner].latency[key, batch, imgsz] = timing
        del cells  # close this runtime's sessions before the next runtime runs
    return peak_timings


def main(argv: list[str] | None = None) -> None:
    """Export, check, time and profile everything, then write the report, the chart and the JSON file."""
    args = parse_args(argv)
    marker = report.marker(Path(__file__).name)
    report.refuse_to_overwrite_foreign(args.out, args.chart, marker)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    graph_shape = max((s for s in args.shapes if s[0] == 1), key=lambda s: s[1])  # batch 1, largest size

    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        workdir = Path(tmp)
        data = make_shapes_dataset(workdir / "calibration", train=1, val=args.calibration_images, imgsz=160)
        peak_gflops, peaks = peak_calls(args.threads, workdir)
        runs = []
        for entry in args.entries:
            log(f"export {len(VARIANTS) - 1} variants x {len(args.shapes)} shapes: {entry.name}")
            runs.append(prepare(entry, args.shapes, graph_shape, data, workdir))
        peak_timings = {shape: time_shape(runs, peaks, shape, args) for shape in args.shapes}
        x = reference_input(*graph_shape).numpy()
        for run in runs:
            log(f"ONNX Runtime profile: {run.entry.name}")
            for key in ("ort-fp32", "ort-int8-ultralytics", "ort-int8-plugin"):
                run.profiles[key] = profile_ort(run.files[(key, *graph_shape)], x, args.threads, args.profile_runs,
                                                workdir)

    for path in (args.out, args.chart, args.json):
        path.parent.mkdir(parents=True, exist_ok=True)
    int8_tables.plot(runs, graph_shape, args.chart)
    info = report.machine_info(args.threads, openvino=True)
    shape = report.shape_label(graph_shape)
    sections = [
        marker,
        report.header("Benchmarks: INT8 and OpenVINO on CPU", info, args.warmup, args.runs),
        "## Headline ratios\n\n" + int8_tables.headline(runs, args.shapes),
        *(f"## Latency, {report.shape_label(s)}\n\n" + int8_tables.latency_table(runs, s) for s in args.shapes),
        *(f"## Fraction of the single-conv peak, {report.shape_label(s)}: achieved GFLOP/s (GOP/s for INT8)\n\n"
          + int8_tables.efficiency_table(runs, peak_gflops, peak_timings[s], s) for s in args.shapes),
        f"## ONNX Runtime profile, {shape} ({args.profile_runs} runs)\n\n" + int8_tables.profile_table(runs),
        f"## INT8 graphs, {shape}\n\n" + int8_tables.graph_table(runs),
        "## Latency chart\n\n![latency of every model in every runtime and precision]"
        f"({report.link(args.chart, args.out)})",
        "## How it was measured\n\n" + NOTES,
    ]
    report.write(args.out, sections)
    args.json.write_text(json.dumps(int8_tables.as_json(runs, info["command"], args.runs), indent=1))
    log(f"wrote {args.out}, {args.chart} and {args.json}")


if __name__ == "__main__":
    main()
