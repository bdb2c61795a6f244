"""Benchmark EfficientRep against YOLOv8 on a GPU (PyTorch CUDA, FP16) in one run; write RESULTS_GPU.md and a chart.

Measures, side by side: latency at batch 1 and throughput at batch 32 (640 px), parameters, GFLOPs, achieved GFLOP/s
as a fraction of a single large 3x3 conv's peak on the same GPU and dtype, and the fused vs unfused speed-up. Takes
about two minutes on one GPU.

Usage: python benchmarks/bench_gpu.py  (defaults: the full line-up, CUDA FP16, benchmarks/RESULTS_GPU.md)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common  # noqa: F401  before Ultralytics: offline environment
import torch

import report
from common import LINEUP, Entry, build, log, machine_info, select, timed
from latency import ModelResult, count_gflops, peak_conv, reference_input

HERE = Path(__file__).resolve().parent
DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (every default is the full measurement)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS_GPU.md", help="markdown report to write")
    parser.add_argument("--chart", type=Path, help="PNG chart (default: latency_vs_gflops_gpu.png beside --out)")
    parser.add_argument("--models", nargs="+", metavar="STEM",
                        help=f"subset of the line-up by YAML stem ({', '.join(sorted({e.stem for e in LINEUP}))})")
    parser.add_argument("--device", default="cuda", help="torch device; 'cpu' only to try the script out")
    parser.add_argument("--dtype", choices=DTYPES, help="default: fp16 on CUDA, fp32 elsewhere")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per cell (20 or more for a measurement)")
    args = parser.parse_args(argv)
    if args.imgsz <= 0 or args.imgsz % 32 or min(*args.batches, args.runs) < 1:
        parser.error(f"--imgsz must be a positive multiple of 32 (the models' largest stride), got {args.imgsz}; "
                     f"batches and runs must be at least 1")
    args.device = torch.device(args.device)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device is visible to PyTorch; run this on a machine with a GPU (or pass "
                         "--device cpu to try the script out)")
    args.dtype = args.dtype or ("fp16" if args.device.type == "cuda" else "fp32")
    args.chart = args.chart or args.out.with_name("latency_vs_gflops_gpu.png")
    return args


def measure_on_device(entry: Entry, batches: list[int], imgsz: int, device: torch.device, dtype: torch.dtype,
                      runtime: str, warmup: int, runs: int) -> ModelResult:
    """Time one entry in PyTorch on ``device`` for every batch; fusion happens in float32, before the cast."""
    model = build(entry)
    params = sum(p.numel() for p in model.parameters())
    result = ModelResult(entry, params, {imgsz: count_gflops(model, imgsz, entry)})
    model = model.to(device, dtype)
    with torch.inference_mode():
        for batch in batches:
            x = reference_input(batch, imgsz).to(device, dtype)
            result.latency[runtime, batch, imgsz] = timed(lambda: model(x), warmup, runs, _sync(device))
    return result


def _sync(device: torch.device):
    """Return a function that waits for ``device``'s queued work (timings must include it)."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def device_info(device: torch.device, dtype: str) -> dict[str, str]:
    """Describe the accelerator for the report's header."""
    if device.type != "cuda":
        return {"device": f"{device} ({dtype}): a try-out, not a GPU measurement"}
    return {"GPU": torch.cuda.get_device_name(device), "CUDA / cuDNN": f"{torch.version.cuda} / "
            f"{torch.backends.cudnn.version()}", "precision": f"{dtype}, cudnn.benchmark on, PyTorch eager"}


NOTES = """\
- PyTorch eager on the device, eval mode, `torch.inference_mode()`, cudnn.benchmark on; every timed run ends with a
  device synchronize. Models are built from their YAMLs with random weights; "fused" is after Ultralytics'
  `model.fuse()` (in float32, then cast), Ultralytics' own models run fused, "unfused" is EfficientRep's training form.
- At batch 1 small models are bound by kernel-launch overhead on a large GPU, not by arithmetic: compare the batch-32
  columns for hardware efficiency.
- GFLOPs are Ultralytics' `get_flops` (2 x multiply-adds). The peak is one 3x3 conv, 256 -> 256 channels on an 80x80
  map, at the largest batch, same device and dtype, same run.
- TensorRT is not used: this script needs nothing beyond PyTorch, so it runs wherever the CPU benchmark does.
"""


def main(argv: list[str] | None = None) -> None:
    """Measure everything, then write the report and the chart."""
    args = parse_args(argv)
    first_line = report.marker(Path(__file__).name)
    report.refuse_to_overwrite_foreign(args.out, args.chart, first_line)
    dtype, runtime = DTYPES[args.dtype], f"PyTorch {args.device.type.upper()} {args.dtype}"
    torch.backends.cudnn.benchmark = True

    conv, x, peak_gflops = peak_conv(max(args.batches))
    conv, x = conv.to(args.device, dtype), x.to(args.device, dtype)
    log(f"conv peak on {args.device} ({args.dtype})")
    with torch.inference_mode():
        peaks = {runtime: (peak_gflops, timed(lambda: conv(x), args.warmup, args.runs, _sync(args.device)))}
    results = []
    for entry in select(args.models):
        log(f"latency: {entry.name}")
        results.append(measure_on_device(entry, args.batches, args.imgsz, args.device, dtype, runtime, args.warmup,
                                         args.runs))

    shapes = [(b, args.imgsz) for b in args.batches]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.chart.parent.mkdir(parents=True, exist_ok=True)
    report.plot(results, peaks, [runtime], shapes[-1], args.chart, f"EfficientRep vs YOLOv8, {runtime}: latency vs "
                f"GFLOPs")
    info = {**machine_info(torch.get_num_threads()), **device_info(args.device, args.dtype)}
    info.pop("threads")  # CPU threads do not drive a GPU measurement
    sections = [
        first_line,
        report.header(f"Benchmarks: EfficientRep vs YOLOv8, {runtime}", info, args.warmup, args.runs),
        "## Headline ratios\n\n" + report.headline(results, peaks, [runtime], shapes, shapes[-1]),
        "## Models\n\n" + report.models_table(results, [args.imgsz]),
        f"## Latency: {runtime}\n\n" + report.latency_table(results, runtime, shapes),
        "## Hardware efficiency: achieved GFLOP/s (fraction of the single-conv peak)\n\n"
        + report.efficiency_table(results, peaks, [runtime], shapes, max(args.batches)),
        report.chart_section(args.chart, args.out),
        "## How it was measured\n\n" + NOTES,
    ]
    args.out.write_text("\n\n".join(s.strip("\n") for s in sections) + "\n")
    log(f"wrote {args.out} and {args.chart}")


if __name__ == "__main__":
    main()
