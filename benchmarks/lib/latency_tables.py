"""The latency benchmarks' tables and chart (CPU and GPU): models, latency, efficiency against the conv peak, ratios,
training cost."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

from .latency import ModelResult, peak_label
from .lineup import BASELINE
from .report import link, shape_label, table
from .timing import Timing

Shape = Tuple[int, int]  # (batch, imgsz)
MIB = 2**20


def _find(results: list[ModelResult], name: str) -> ModelResult | None:
    """Return the result of the line-up entry called ``name``, if it was measured."""
    return next((r for r in results if r.entry.name == name), None)


def models_table(results: list[ModelResult], sizes: list[int]) -> str:
    """Parameters and GFLOPs (one image) of each model in the form that runs."""
    rows = [[r.entry.name, f"{r.params:,}", *(f"{r.gflops[s]:.2f}" for s in sizes)] for r in results]
    return table(["model", "params", *(f"GFLOPs @{s}" for s in sizes)], rows)


def latency_table(results: list[ModelResult], runtime: str, shapes: list[Shape]) -> str:
    """Latency of each model in one runtime: ms per batch-1 image, images/s (and ms per batch) for larger batches."""

    def cell(timing: Timing, batch: int) -> str:
        return timing.ms() if batch == 1 else f"{batch / timing.median:.1f} img/s ({timing.ms()} ms)"

    header_cells = [f"{shape_label(s)}: ms" if s[0] == 1 else f"{shape_label(s)}: throughput" for s in shapes]
    rows = [[r.entry.name, *(cell(r.latency[runtime, b, i], b) for b, i in shapes)] for r in results]
    return table(["model", *header_cells], rows)


def efficiency_table(results: list[ModelResult], peaks: dict[str, tuple[float, Timing]], runtimes: list[str],
                     shapes: list[Shape], peak_batch: int = 1) -> str:
    """Achieved GFLOP/s of each model and its fraction of the single-conv peak of the same runtime."""
    peak_rate = {rt: gflops / timing.median for rt, (gflops, timing) in peaks.items()}
    rows = [[peak_label(peak_batch), *(f"{peak_rate[rt]:.1f} (100%)" for rt in runtimes for _ in shapes)]]
    for r in results:
        cells = []
        for rt in runtimes:
            for batch, imgsz in shapes:
                rate = r.gflops[imgsz] * batch / r.latency[rt, batch, imgsz].median
                cells.append(f"{rate:.1f} ({rate / peak_rate[rt]:.0%})")
        rows.append([r.entry.name, *cells])
    return table(["model", *(f"{rt}, {shape_label(s)}" for rt in runtimes for s in shapes)], rows)


def ratio_rows(results: list[ModelResult], runtimes: list[str], shapes: list[Shape]) -> list[list[str]]:
    """Latency ratios within this run: fused EfficientRep vs its YOLOv8 and vs its own unfused form."""
    pairs = [(f"yolov8{s}-efficientrep fused", f"yolov8{s}") for s in "ns"]
    pairs += [(f"yolov8{s}-efficientrep unfused", f"yolov8{s}-efficientrep fused") for s in "ns"]
    rows = []
    for numerator, denominator in pairs:
        a, b = _find(results, numerator), _find(results, denominator)
        if a and b:
            for shape in shapes:
                ratios = (a.latency[(rt, *shape)].median / b.latency[(rt, *shape)].median for rt in runtimes)
                rows.append([f"{numerator} / {denominator}, {shape_label(shape)}", *(f"{x:.2f}x" for x in ratios)])
    return rows


def headline(results: list[ModelResult], peaks: dict[str, tuple[float, Timing]], runtimes: list[str],
             shapes: list[Shape], fraction_shape: Shape) -> str:
    """The ratios docs/benchmarks.md quotes: latency ratios, and each model's fraction of the conv peak at one shape."""
    rows = ratio_rows(results, runtimes, shapes)
    for r in results:
        fractions = []
        for rt in runtimes:
            gflops, timing = peaks[rt]
            achieved = r.gflops[fraction_shape[1]] * fraction_shape[0] / r.latency[(rt, *fraction_shape)].median
            fractions.append(f"{achieved / (gflops / timing.median):.0%}")
        rows.append([f"{r.entry.name}: fraction of conv peak, {shape_label(fraction_shape)}", *fractions])
    explanation = ("Latency ratios are median latency over median latency (above 1: the first model is slower; "
                   "unfused / fused is the speed-up from fusing).")
    return f"{table(['', *runtimes], rows)}\n\n{explanation}\n"


def training_table(training: dict[str, dict], batch: int, imgsz: int) -> str:
    """Time and peak memory of one training step per model, and their ratios to the baseline model."""
    base = training.get(f"{BASELINE}.yaml")
    rows = []
    for cfg, m in training.items():
        timing, extra = m["timing"], (m["peak_rss"] - m["rss_start"]) / MIB
        row = [Path(cfg).stem, timing.ms(), f"{m['peak_rss'] / MIB:.0f}", f"{extra:.0f}"]
        if base:
            base_extra = (base["peak_rss"] - base["rss_start"]) / MIB
            row += [f"{timing.median / base['timing'].median:.2f}x", f"{extra / base_extra:.2f}x"]
        rows.append(row)
    cols = ["model", f"step time, ms (batch {batch} @{imgsz})", "peak RSS, MiB", "peak RSS above start, MiB"]
    if base:
        cols += [f"time / {BASELINE}", f"memory above start / {BASELINE}"]
    return table(cols, rows)


def chart_section(chart: Path, out: Path) -> str:
    """Return the report section that shows the chart, linked relative to the report."""
    return f"## Latency vs GFLOPs\n\n![latency vs GFLOPs]({link(chart, out)})"


def plot(results: list[ModelResult], peaks: dict[str, tuple[float, Timing]], runtimes: list[str], shape: Shape,
         path: Path, title: str) -> Path:
    """Chart latency against GFLOPs, one point per model, one panel per runtime with its conv-peak line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch, imgsz = shape
    fig, axes = plt.subplots(1, len(runtimes), figsize=(6 * len(runtimes), 5), dpi=120, squeeze=False)
    xmax = max(r.gflops[imgsz] * batch for r in results) * 1.1
    for ax, rt in zip(axes[0], runtimes):
        for i, r in enumerate(results):  # unfused training forms hollow, deployed forms filled
            ax.scatter(r.gflops[imgsz] * batch, r.latency[rt, batch, imgsz].median * 1e3, s=60, marker="os^Dv<>"[i % 7],
                       color=f"C{i}", facecolors=f"C{i}" if r.entry.fused else "none", label=r.entry.name, zorder=3)
        gflops, timing = peaks[rt]
        rate = gflops / timing.median
        ax.plot([0, xmax], [0, xmax / rate * 1e3], "k--", lw=1, label="at the single 3x3 conv's peak GFLOP/s")
        ax.set(xlabel=f"GFLOPs per forward pass ({shape_label(shape)})", ylabel="median latency, ms",
               title=f"{rt} (conv peak {rate:.0f} GFLOP/s)",
               xlim=(0, xmax), ylim=(0, None))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
