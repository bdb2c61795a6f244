"""Benchmark EfficientRep against YOLOv8, YOLO11, YOLO26 and YOLOv6 on a GPU as deployment runs them; write a report.

Every model of the line-up is built from its YAML with random, seeded weights (nothing is downloaded), fused as it is
deployed (one unfused EfficientRep-n shows what fusing buys), cast to FP16 and channels_last, and timed at batch 1, 32
and 256 at 640 px in two ways: PyTorch eager, and its forward pass captured once in a CUDA graph and replayed (no
Python or kernel-launch overhead: close to what a compiled runtime such as TensorRT gives). Each cell is timed with
CUDA events: the median over 7 blocks of 20 forward passes, after 10 warm-up passes. The report gives parameters,
GFLOPs, images/s at the largest batch and the fraction of the peak of one 3x3 conv (256 -> 256 channels on an 80x80
map, at the largest batch) on the same GPU, dtype and memory format; the JSON beside it holds every median.

Usage: python benchmarks/bench_gpu.py  (needs a CUDA GPU; writes benchmarks/results/RESULTS_GPU.md, .json and a chart)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

# lib first: importing it makes Ultralytics offline (lib/offline.py)
from lib import latency_tables, report
from lib.latency import PEAK_CHANNELS, PEAK_SIZE, ModelResult, count_gflops, peak_conv, reference_input
from lib.lineup import GPU, Entry, build, select
from lib.timing import RUNS_FOR_A_MEASUREMENT, Timing, log

import torch
from torch import nn

DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
GRAPH, EAGER = "CUDA graph", "eager"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (every default is the full measurement); stop at once where CUDA is missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=report.RESULTS / "RESULTS_GPU.md",
                        help="markdown report; the JSON (same name, .json) and the chart are written beside it")
    parser.add_argument("--chart", type=Path, help="PNG chart (default: latency_vs_gflops_gpu.png beside --out)")
    parser.add_argument("--models", nargs="+", metavar="STEM",
                        help=f"subset of the line-up by YAML stem ({', '.join(sorted({e.stem for e in GPU}))})")
    parser.add_argument("--device", default="cuda", help="torch device; 'cpu' only to try the script out (eager)")
    parser.add_argument("--dtype", choices=DTYPES, help="default: fp16 on CUDA, fp32 elsewhere")
    parser.add_argument("--contiguous", action="store_true", help="NCHW tensors instead of channels_last")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--warmup", type=int, default=10, help="untimed forward passes before each cell")
    parser.add_argument("--blocks", type=int, default=7, help="timed blocks per cell; the median block is reported")
    parser.add_argument("--runs", type=int, default=20, help="forward passes per timed block")
    args = parser.parse_args(argv)
    if args.imgsz <= 0 or args.imgsz % 32 or min(*args.batches, args.blocks, args.runs) < 1:
        parser.error(f"--imgsz must be a positive multiple of 32 (the models' largest stride), got {args.imgsz}; "
                     f"batches, blocks and runs must be at least 1")
    args.batches = sorted(set(args.batches))
    args.device = torch.device(args.device)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"bench_gpu.py needs a CUDA GPU, and PyTorch sees none here (torch {torch.__version__}, "
                         f"CUDA build: {torch.version.cuda or 'no'}); run it on a machine with an NVIDIA GPU, or pass "
                         f"--device cpu to try the script out")
    args.dtype = args.dtype or ("fp16" if args.device.type == "cuda" else "fp32")
    args.chart = args.chart or args.out.with_name("latency_vs_gflops_gpu.png")
    return args


def device_name(device: torch.device) -> str:
    """The GPU's name, or the device itself for a try-out."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


def runtimes_for(device: torch.device) -> list[str]:
    """The ways a model is run: CUDA-graph replay (CUDA only) and eager."""
    return [GRAPH, EAGER] if device.type == "cuda" else [EAGER]


def time_cell(run: Callable[[], object], device: torch.device, warmup: int, blocks: int, runs: int) -> Timing:
    """Seconds per call of ``run``: ``blocks`` blocks of ``runs`` calls, each block timed as a whole.

    On CUDA each block is timed with CUDA events recorded on the stream around it (the GPU's time for the block);
    elsewhere with the wall clock.
    """
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(blocks):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(runs):
                run()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3 / runs)
        else:
            started = time.perf_counter()
            for _ in range(runs):
                run()
            samples.append((time.perf_counter() - started) / runs)
    return Timing.of(samples)


def graph_replay(forward: Callable[[], object], warmup: int) -> Callable[[], None]:
    """Capture one call of ``forward`` (a forward pass on a static input) in a CUDA graph; return its replay.

    The warm-up runs on a side stream, as capture requires, and settles what the captured pass then reuses: cuDNN's
    algorithm choice (cudnn.benchmark) and the detection head's anchors for this input shape.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(max(warmup, 3)):
            forward()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        forward()
    return graph.replay


def measure(module: nn.Module, inputs: dict[int, torch.Tensor], imgsz: int, args: argparse.Namespace,
            runtimes: list[str]) -> dict[tuple[str, int, int], Timing]:
    """Time ``module`` on each batch of ``inputs`` in every runtime; keys are (runtime, batch, imgsz)."""
    memory_format = torch.contiguous_format if args.contiguous else torch.channels_last
    module = module.to(args.device, DTYPES[args.dtype]).to(memory_format=memory_format)
    latency = {}
    with torch.no_grad():  # not inference_mode: its tensors must not be updated outside it, as capture may
        for batch, x in inputs.items():
            x = x.to(args.device, DTYPES[args.dtype]).contiguous(memory_format=memory_format)
            for runtime in runtimes:
                run = (lambda: module(x)) if runtime == EAGER else graph_replay(lambda: module(x), args.warmup)
                latency[runtime, batch, imgsz] = time_cell(run, args.device, args.warmup, args.blocks, args.runs)
                del run  # a replay holds its graph and the graph's memory
    if args.device.type == "cuda":
        torch.cuda.empty_cache()
    return latency


def conv_peak(args: argparse.Namespace, runtimes: list[str]) -> dict[str, tuple[float, Timing]]:
    """Time the peak-reference conv at the largest batch; return, per runtime, its GFLOPs per call and timing."""
    batch = args.batches[-1]
    conv, x, gflops = peak_conv(batch)
    latency = measure(conv, {batch: x}, PEAK_SIZE, args, runtimes)
    return {runtime: (gflops, latency[runtime, batch, PEAK_SIZE]) for runtime in runtimes}


def measure_entry(entry: Entry, args: argparse.Namespace, runtimes: list[str]) -> ModelResult:
    """Build one entry, count it, and time it at every batch; fusion happens in float32, before the cast."""
    model = build(entry)
    result = ModelResult(entry, sum(p.numel() for p in model.parameters()),
                         {args.imgsz: count_gflops(model, args.imgsz, entry)})
    inputs = {batch: reference_input(batch, args.imgsz) for batch in args.batches}
    result.latency = measure(model, inputs, args.imgsz, args, runtimes)
    return result


def deployment_table(results: list[ModelResult], peaks: dict[str, tuple[float, Timing]], runtimes: list[str],
                     batches: list[int], imgsz: int) -> str:
    """One row per model: parameters, GFLOPs, the median ms of each batch and runtime, and at the largest batch the
    images/s and the fraction of the conv peak (in the first runtime: CUDA graph on a GPU)."""
    largest, main = batches[-1], runtimes[0]
    peak_gflops, peak_timing = peaks[main]
    short = {GRAPH: "graph", EAGER: "eager"}
    header = ["model", "params", "GFLOPs", *(f"bs{b} {short[rt]} ms" for b in batches for rt in runtimes),
              f"img/s bs{largest}", f"% conv peak bs{largest}"]
    rows = []
    for r in results:
        seconds = r.latency[main, largest, imgsz].median
        achieved = r.gflops[imgsz] * largest / seconds
        rows.append([r.entry.name, f"{r.params:,}", f"{r.gflops[imgsz]:.1f}",
                     *(f"{r.latency[rt, b, imgsz].median * 1e3:.3f}" for b in batches for rt in runtimes),
                     f"{largest / seconds:,.0f}", f"{100 * achieved / (peak_gflops / peak_timing.median):.1f}"])
    return report.table(header, rows)


def as_json(results: list[ModelResult], peaks: dict[str, tuple[float, Timing]], args: argparse.Namespace,
            runtimes: list[str]) -> dict:
    """Every median (ms) with the set-up, in the layout of the committed H200 results."""
    keys = {GRAPH: "graph_ms", EAGER: "eager_ms"}
    gflops, timing = peaks[runtimes[0]]
    cuda = args.device.type == "cuda"
    return {
        "gpu": device_name(args.device),
        "torch": torch.__version__, "cudnn": torch.backends.cudnn.version() if cuda else None, "imgsz": args.imgsz,
        "dtype": args.dtype, "memory_format": "contiguous" if args.contiguous else "channels_last",
        "conv_peak_tflops": gflops / timing.median / 1e3,
        "models": {r.entry.name: {"params": r.params, "gflops": r.gflops[args.imgsz],
                                  **{str(b): {keys[rt]: r.latency[rt, b, args.imgsz].median * 1e3 for rt in runtimes}
                                     for b in args.batches}} for r in results},
    }


def header(args: argparse.Namespace, runtimes: list[str]) -> str:
    """The title and the table describing machine, GPU, libraries, date and timing protocol."""
    info = report.machine_info(torch.get_num_threads())
    info.pop("threads")  # CPU threads do not drive a GPU measurement
    layout = "NCHW" if args.contiguous else "channels_last"
    if args.device.type == "cuda":
        info.update({"GPU": device_name(args.device),
                     "CUDA / cuDNN": f"{torch.version.cuda} / {torch.backends.cudnn.version()}",
                     "precision": f"{args.dtype}, {layout}, cudnn.benchmark on"})
    else:
        info["device"] = f"{args.device} ({args.dtype}, {layout}, eager only): a try-out, not a GPU measurement"
    info["timing"] = (f"{' and '.join(runtimes)}; per cell {args.warmup} warm-up passes, then {args.blocks} blocks of "
                      f"{args.runs} passes timed with {'CUDA events' if args.device.type == 'cuda' else 'the clock'}; "
                      f"the median block")
    table = report.table(["", ""], [[key, value] for key, value in info.items()], align="---")
    text = f"# GPU benchmark: EfficientRep vs YOLOv8, YOLO11, YOLO26, YOLOv6\n\n{table}\n"
    if args.blocks * args.runs < RUNS_FOR_A_MEASUREMENT:
        text += (f"\n**Smoke-test settings ({args.blocks} x {args.runs} timed passes, fewer than "
                 f"{RUNS_FOR_A_MEASUREMENT}): these numbers prove the script runs; they are not a measurement.**\n")
    return text


NOTES = f"""\
- Models are built from their YAMLs with random weights, seeded (latency does not depend on the values). "fused" is
  after Ultralytics' `model.fuse()`, which re-parameterizes every Rep block in float32 before the cast; Ultralytics'
  own models run fused too; "unfused" is EfficientRep's three-branch training form.
- "CUDA graph": the forward pass on a static input is captured once (after warm-up on a side stream) and replayed, so
  no Python runs and no kernel is launched one by one: at batch 1 this is what deployment with a compiled runtime
  sees. "eager": PyTorch calling each layer, as `yolo predict` runs a `.pt`. Both under `torch.no_grad()`.
- GFLOPs are Ultralytics' `get_flops` (2 x multiply-adds) of one image. The peak is one 3x3 conv, {PEAK_CHANNELS} ->
  {PEAK_CHANNELS} channels on a {PEAK_SIZE}x{PEAK_SIZE} map, at the largest batch, timed the same way in the same run.
- TensorRT is not used: this script needs nothing beyond PyTorch.
"""


def main(argv: list[str] | None = None) -> None:
    """Measure everything, then write the report, the JSON and the chart."""
    args = parse_args(argv)
    first_line = report.marker(Path(__file__).name)
    json_path = args.out.with_suffix(".json")
    report.refuse_to_overwrite_foreign(args.out, args.chart, first_line)
    report.refuse_to_overwrite_foreign(args.out, json_path, first_line)
    torch.backends.cudnn.benchmark = True
    runtimes = runtimes_for(args.device)

    log(f"conv peak on {args.device} ({args.dtype}, batch {args.batches[-1]})")
    peaks = conv_peak(args, runtimes)
    results = []
    for entry in select(args.models, GPU):
        log(f"latency: {entry.name}")
        results.append(measure_entry(entry, args, runtimes))

    shapes = [(b, args.imgsz) for b in args.batches]
    for path in (args.out, args.chart):
        path.parent.mkdir(parents=True, exist_ok=True)
    latency_tables.plot(results, peaks, runtimes, shapes[-1], args.chart, f"EfficientRep vs YOLOv8, YOLO11, YOLO26, "
                        f"YOLOv6: {args.dtype} on {device_name(args.device)}")
    sections = [
        first_line,
        header(args, runtimes),
        "## Headline ratios\n\n" + latency_tables.headline(results, peaks, runtimes, shapes, shapes[-1]),
        f"## Latency: {' and '.join(runtimes)}\n\nMedian ms per forward pass of the batch at {args.imgsz} px; images/s "
        f"and the fraction of the conv peak at batch {args.batches[-1]} in {runtimes[0]}.\n\n"
        + deployment_table(results, peaks, runtimes, args.batches, args.imgsz),
        latency_tables.chart_section(args.chart, args.out),
        "## How it was measured\n\n" + NOTES,
    ]
    report.write(args.out, sections)
    json_path.write_text(json.dumps(as_json(results, peaks, args, runtimes), indent=1) + "\n")
    log(f"wrote {args.out}, {json_path.name} and {args.chart}")


if __name__ == "__main__":
    main()
