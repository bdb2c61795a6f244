"""Benchmark INT8 and OpenVINO beside ONNX Runtime FP32 and PyTorch on this machine's CPU, in one run.

For yolov8n, YOLO11n, YOLO26n and the fused yolov8n-efficientrep and yolov8n-qarepvgg (s scale on request), every
file exported by Ultralytics' exporter as ``yolo export`` writes it: ONNX Runtime FP32 and INT8 (with Ultralytics'
settings and with the plugin's route), OpenVINO FP32 and INT8 (NNCF), and PyTorch eager FP32. Measures latency at
batch 1 (each --imgsz) and throughput at --batch, the fraction of a single 3x3 conv's peak in the same runtime and
precision, ONNX Runtime's kernel profile (INT8 vs float conv time) and what each INT8 graph holds. Writes a markdown
report, a chart and a JSON file of the latencies (which ``int8_accuracy.py`` plots against the accuracy).

Usage: python benchmarks/bench_int8.py  (defaults: the n-scale line-up, 20 timed runs, benchmarks/RESULTS_INT8.md)
Run it on an otherwise idle machine: timings taken beside other work are not comparable.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common  # before Ultralytics: offline environment
import torch

import int8_report
import report
from common import Entry, Timing, add_latency_args, check_sizes, log, select, timed_interleaved
from int8_runtimes import (ORT, OPENVINO, PYTORCH, VARIANTS, ModelRun, Shape, export, peak_calls, profile_ort, runner,
                           seeded_yolo)
from latency import count_gflops, eager_forward, reference_input
from yolov8_efficientrep.graphs import onnx_int8_graph, openvino_int8_graph
from yolov8_efficientrep.rows import uses_plugin
from yolov8_efficientrep.shapes import make_shapes_dataset

HERE = Path(__file__).resolve().parent
LINEUP = (
    Entry("yolov8n", "yolov8n.yaml", True),
    Entry("YOLO11n", "yolo11n.yaml", True),
    Entry("YOLO26n", "yolo26n.yaml", True),
    Entry("yolov8n-efficientrep fused", "yolov8n-efficientrep.yaml", True),
    Entry("yolov8n-qarepvgg fused", "yolov8n-qarepvgg.yaml", True),
    Entry("yolov8s", "yolov8s.yaml", True),
    Entry("YOLO11s", "yolo11s.yaml", True),
    Entry("YOLO26s", "yolo26s.yaml", True),
    Entry("yolov8s-efficientrep fused", "yolov8s-efficientrep.yaml", True),
    Entry("yolov8s-qarepvgg fused", "yolov8s-qarepvgg.yaml", True),
)
DEFAULT_MODELS = ["yolov8n", "yolo11n", "yolo26n", "yolov8n-efficientrep", "yolov8n-qarepvgg"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (every default is the full measurement)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS_INT8.md", help="markdown report to write")
    parser.add_argument("--models", nargs="+", metavar="STEM", default=DEFAULT_MODELS,
                        help=f"YAML stems (default: the n scale; also {', '.join(e.stem for e in LINEUP[5:])})")
    add_latency_args(parser)
    parser.add_argument("--calibration-images", type=int, default=16,
                        help="generated images INT8 exports calibrate on (the ranges do not change the speed)")
    parser.add_argument("--profile-runs", type=int, default=10, help="runs in ONNX Runtime's kernel profile")
    args = parser.parse_args(argv)
    check_sizes(parser, [*args.imgsz, args.batch_imgsz], [args.batch, args.runs, args.profile_runs])
    args.entries = select(args.models, LINEUP)
    args.shapes = [(1, s) for s in args.imgsz] + ([(args.batch, args.batch_imgsz)] if args.batch > 1 else [])
    args.chart, args.json = args.out.with_suffix(".png"), args.out.with_suffix(".json")
    return args


def prepare(entry: Entry, shapes: list[Shape], graph_shape: Shape, data: Path, workdir: Path) -> ModelRun:
    """Build one model, export every variant for every shape, count its GFLOPs and check its INT8 graphs."""
    yolo = seeded_yolo(entry.cfg)
    eager = common.build(entry)  # the same seeded weights, fused as the exporter fuses them
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

    int8_report.write(runs, peak_gflops, peak_timings, args, marker)
    log(f"wrote {args.out}, {args.chart} and {args.json}")


if __name__ == "__main__":
    main()
