"""Benchmark EfficientRep against YOLOv8 on this machine's CPU in one run; write RESULTS.md and a chart.

Measures, side by side: latency in ONNX Runtime and PyTorch eager (batch 1 at each --imgsz, throughput at --batch),
parameters, GFLOPs, achieved GFLOP/s as a fraction of a single large 3x3 conv's peak in the same runtime, the
fused vs unfused speed-up, and the training cost per batch (time, peak memory) of each model's training form.

Usage: python benchmarks/bench_cpu.py  (defaults: the full line-up, 20 timed runs, benchmarks/results/RESULTS.md)
Run it on an otherwise idle machine: timings taken beside other work are not comparable.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

# lib first: importing it makes Ultralytics offline (lib/offline.py)
from lib import latency_tables, report
from lib.latency import EAGER, ORT, check_branches_kept, conv_peak_calls, prepare_model
from lib.lineup import CPU, select
from lib.timing import add_latency_args, check_sizes, log, timed_interleaved
from lib.training_cost import measure_in_fresh_process

import torch
from yolov8_efficientrep.shapes import make_shapes_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (every default is the full measurement)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=report.RESULTS / "RESULTS.md", help="markdown report to write")
    parser.add_argument("--chart", type=Path, help="PNG chart to write (default: latency_vs_gflops.png beside --out)")
    parser.add_argument("--models", nargs="+", metavar="STEM",
                        help=f"subset of the line-up by YAML stem ({', '.join(sorted({e.stem for e in CPU}))})")
    add_latency_args(parser, "both runtimes")
    parser.add_argument("--train-models", nargs="+", metavar="STEM", default=["yolov8n", "yolov6n",
                        "yolov8n-efficientrep"], help="models whose training step is measured (default: the n scale)")
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--train-imgsz", type=int, default=320)
    parser.add_argument("--train-warmup", type=int, default=3)
    parser.add_argument("--train-runs", type=int, default=20)
    args = parser.parse_args(argv)
    check_sizes(parser, [*args.imgsz, args.batch_imgsz, args.train_imgsz],
                [args.batch, args.runs, args.train_batch, args.train_runs])
    args.entries, args.train_cfgs = select(args.models, CPU), [e.cfg for e in select(args.train_models, CPU)]
    args.train_cfgs = list(dict.fromkeys(args.train_cfgs))  # unique, in line-up order
    args.chart = args.chart or args.out.with_name("latency_vs_gflops.png")
    return args


def fusion_pairs(results: list) -> list[tuple]:
    """Return ``(unfused, fused)`` results of the same EfficientRep YAML."""
    by_form = {(r.entry.cfg, r.entry.fused): r for r in results}
    return [(r, by_form[r.entry.cfg, True]) for r in results if not r.entry.fused and (r.entry.cfg, True) in by_form]


NOTES = """\
- Models are built from their YAMLs with random weights (latency does not depend on weight values). "fused" is
  after Ultralytics' `model.fuse()` (Conv+BN folded, each RepVGG block re-parameterized into one 3x3 conv);
  Ultralytics' own models run fused, as Ultralytics deploys them. "unfused" is EfficientRep's training form (three
  branches per block) in eval mode.
- ONNX Runtime: each model is exported as it is with `torch.onnx.export` (TorchScript exporter, opset 17, one static
  shape per cell, Detect head in export mode), CPUExecutionProvider, all graph optimizations, sequential execution,
  denormals flushed. The exporter folds BatchNorm into the preceding conv in both forms; the unfused form keeps its
  branches (checked below). PyTorch eager: eval mode, `torch.inference_mode()`, denormals flushed.
- Latency cells (every model and input shape, and the peak conv) are timed in 4 round-robin rounds, one runtime at a
  time: in each round every cell runs its warm-up runs and then a quarter of its timed runs back to back, so a drift
  of the machine's speed during the run spreads over all of them while each timed run sees a steady state.
- GFLOPs are Ultralytics' `get_flops` (2 x multiply-adds) of the form that runs. Achieved GFLOP/s = GFLOPs x batch /
  median latency. The peak is one 3x3 conv, 256 -> 256 channels on an 80x80 map, batch 1, timed in the same runtime
  with the same threads in the same run: the rate a network of plain 3x3 convs could at best approach.
- Training cost: each model in a fresh process, in training form and train mode; one step = forward, Ultralytics'
  detection loss (`model.loss`, default hyper-parameters), backward, SGD step (lr 0.01, momentum 0.937, Nesterov,
  weight decay 5e-4), always on the same batch of the generated shapes data set. Peak RSS is the process's
  high-water mark; "above start" subtracts the resident memory once the model and batch were built.
"""


def main(argv: list[str] | None = None) -> None:
    """Measure everything, then write the report and the chart."""
    args = parse_args(argv)
    marker = report.marker(Path(__file__).name)
    report.refuse_to_overwrite_foreign(args.out, args.chart, marker)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    shapes = [(1, s) for s in args.imgsz] + ([(args.batch, args.batch_imgsz)] if args.batch > 1 else [])
    runtimes = [ORT, EAGER]

    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        workdir = Path(tmp)
        peak_gflops, peak_calls = conv_peak_calls(args.threads, workdir)
        calls = {("peak", runtime): call for runtime, call in peak_calls.items()}
        results = []
        for index, entry in enumerate(args.entries):
            log(f"build and export: {entry.name}")
            result, model_calls = prepare_model(entry, shapes, args.threads, workdir)
            results.append(result)
            calls.update({(index, *cell): call for cell, call in model_calls.items()})
        timings = {}
        for runtime in runtimes:  # one runtime at a time: see timed_interleaved
            cells = {key: call for key, call in calls.items() if runtime in key}
            log(f"latency: {runtime}, {len(cells)} cells ({args.threads} threads), {args.runs} timed runs each")
            timings.update(timed_interleaved(cells, args.warmup, args.runs))
        peaks = {runtime: (peak_gflops, timings["peak", runtime]) for runtime in runtimes}
        for index, result in enumerate(results):
            result.latency = {key[1:]: timing for key, timing in timings.items() if key[0] == index}
        branch_notes = [check_branches_kept(unfused, fused) for unfused, fused in fusion_pairs(results)]
        data = make_shapes_dataset(workdir / "shapes", train=args.train_batch, val=0, imgsz=args.train_imgsz)
        training = {}
        for cfg in args.train_cfgs:
            log(f"training cost: {cfg}")
            training[cfg] = measure_in_fresh_process(cfg, data.parent, args.train_batch, args.threads,
                                                     args.train_warmup, args.train_runs, workdir)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.chart.parent.mkdir(parents=True, exist_ok=True)
    chart_shape = max((s for s in shapes if s[0] == 1), key=lambda s: s[1], default=shapes[0])
    latency_tables.plot(results, peaks, runtimes, chart_shape, args.chart,
                        f"EfficientRep vs YOLOv8, CPU ({args.threads} threads): latency vs GFLOPs")
    sizes = sorted({s for _, s in shapes})
    sections = [
        marker,
        report.header("Benchmarks: EfficientRep vs YOLOv8 on CPU", report.machine_info(args.threads), args.warmup,
                      args.runs),
        "## Headline ratios\n\n" + latency_tables.headline(results, peaks, runtimes, shapes, chart_shape),
        "## Models\n\n" + latency_tables.models_table(results, sizes),
        *(f"## Latency: {rt} (CPU)\n\n" + latency_tables.latency_table(results, rt, shapes) for rt in runtimes),
        "## Hardware efficiency: achieved GFLOP/s (fraction of the single-conv peak)\n\n"
        + latency_tables.efficiency_table(results, peaks, runtimes, shapes),
        f"## Training cost per batch ({args.train_runs} timed steps after {args.train_warmup} warm-up)\n\n"
        + latency_tables.training_table(training, args.train_batch, args.train_imgsz),
        latency_tables.chart_section(args.chart, args.out),
        "## How it was measured\n\n" + NOTES + "".join(f"- {note}\n" for note in branch_notes),
    ]
    report.write(args.out, sections)
    log(f"wrote {args.out} and {args.chart}")


if __name__ == "__main__":
    main()
