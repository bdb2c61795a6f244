"""Accuracy ablation: how fast each EfficientRep-n variant learns on the generated set, and what it costs, in one run.

Every variant (``lib/lineup.py``'s ``ABLATION``) trains from scratch with the side-by-side's recipe (``lib/recipe.py``:
160 px, batch 8, nbs 8, deterministic, CPU) for ``--epochs`` with each of ``--seeds``; models come from
``lib/zoo.py``'s cache (shared with ``int8_accuracy.py``), so a rerun only trains what changed. After ten epochs on
512 images the seed alone moves mAP50-95 more than most variants do (docs/benchmarks.md has the figures), so the
report gives the mean and the range over seeds, never one run. Then, on an idle machine, in this process: fused ONNX
Runtime latency at batch 1 (640 and 320, rotating rounds), parameters and GFLOPs of the fused model, and the training
time per epoch (the step time of one batch of 8 at 160 px, measured in a fresh process, times the epoch's 64 steps).

    python benchmarks/ablation.py                      # 3 seeds x 10 epochs, 30 epochs for --long-epochs
    python benchmarks/ablation.py --seeds 0 --epochs 1 --long-epochs 0 --runs 3 --out /tmp/ablation.md  # smoke test
    python benchmarks/ablation.py --trained-only       # report what the zoo holds; train nothing
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# lib first: importing it makes Ultralytics offline (lib/offline.py)
from lib import zoo
from lib.latency import ORT, prepare_model
from lib.lineup import ABLATION, ABLATION_LONG, AblationVariant, Entry
from lib.recipe import GENERATE, RECIPE
from lib.report import RESULTS, machine_info, marker, refuse_to_overwrite_foreign, table, write
from lib.timing import Timing, add_latency_args, check_sizes, log, timed_interleaved
from lib.training_cost import measure_in_fresh_process

import torch


@dataclass
class Row:
    """What was measured for one variant."""

    variant: AblationVariant
    scores: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # epochs -> [(mAP50-95, mAP50)] per seed
    latency: dict[int, Timing] = field(default_factory=dict)  # imgsz -> fused ONNX Runtime, batch 1
    params: int = 0
    gflops: float = 0.0  # fused, at the largest --imgsz
    epoch_seconds: float = 0.0
    missing: list[str] = field(default_factory=list)  # runs --trained-only found no cached model for


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; every default is the full measurement."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "ablation.md", help="markdown report (PNG next to it)")
    parser.add_argument("--zoo", type=Path, default=zoo.DEFAULT_ZOO, help="cache of trained models")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--long-epochs", type=int, default=30,
                        help=f"second training length for {' and '.join(ABLATION_LONG)} (0: none)")
    parser.add_argument("--long-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", metavar="NAME", help="subset of the variants, by name")
    parser.add_argument("--trained-only", action="store_true",
                        help="train nothing: report the (variant, seed) runs the zoo already holds, say which lack")
    add_latency_args(parser, "ONNX Runtime and the training step", batch=False)
    parser.add_argument("--train-runs", type=int, default=20, help="timed training steps per variant")
    args = parser.parse_args(argv)
    check_sizes(parser, args.imgsz, [args.runs, args.train_runs])
    names = {v.name for v in ABLATION}
    if args.variants and set(args.variants) - names:
        parser.error(f"unknown variant(s) {sorted(set(args.variants) - names)}; choose from {sorted(names)}")
    args.selected = [v for v in ABLATION if not args.variants or v.name in args.variants]
    return args


def train_all(rows: list[Row], args: argparse.Namespace) -> None:
    """Train (or find in the zoo) every variant for every seed; record final-epoch mAP50-95 and mAP50."""
    for row in rows:
        plans = [(args.epochs, args.seeds)]
        if args.long_epochs and row.variant.name in ABLATION_LONG:
            plans.append((args.long_epochs, args.long_seeds))
        for epochs, seeds in plans:
            for seed in seeds:
                if args.trained_only:
                    model = zoo.cached(row.variant.cfg, epochs, seed, args.zoo)
                    if model is None:
                        row.missing.append(f"{epochs} ep seed {seed}")
                        continue
                else:
                    model = zoo.trained(row.variant.cfg, epochs, seed, args.zoo, log=log)
                row.scores.setdefault(epochs, []).append(
                    (model.final("metrics/mAP50-95(B)"), model.final("metrics/mAP50(B)")))


def measure_cost(rows: list[Row], args: argparse.Namespace, workdir: Path) -> None:
    """Fused ONNX Runtime latency, parameters and GFLOPs, and training seconds per epoch of every variant."""
    calls = {}
    for index, row in enumerate(rows):
        entry = Entry(row.variant.name, row.variant.cfg, fused=True)
        result, model_calls = prepare_model(entry, [(1, s) for s in args.imgsz], args.threads, workdir)
        row.params, row.gflops = result.params, result.gflops[max(args.imgsz)]
        calls.update({(index, imgsz): call for (runtime, _, imgsz), call in model_calls.items() if runtime == ORT})
    log(f"latency: {ORT}, {len(calls)} cells, {args.runs} timed runs each")
    for (index, imgsz), timing in timed_interleaved(calls, args.warmup, args.runs).items():
        rows[index].latency[imgsz] = timing
    data = zoo.dataset(args.zoo).parent
    steps = math.ceil(GENERATE["train"] / RECIPE["batch"])
    for row in rows:
        log(f"training cost: {row.variant.name}")
        cost = measure_in_fresh_process(row.variant.cfg, data, RECIPE["batch"], args.threads, 3, args.train_runs,
                                        workdir)
        row.epoch_seconds = cost["timing"].median * steps


def _summary(values: list[float]) -> str:
    """Return ``mean (min-max, n seeds)`` over seeds, the single value, or a dash for none."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed)"
    return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f}, {len(values)} seeds)"


def sections(rows: list[Row], args: argparse.Namespace, chart: Path) -> list[str]:
    """Return the markdown report's sections."""
    info = machine_info(args.threads)
    recipe = ", ".join(f"{k} {v}" for k, v in RECIPE.items())
    info["training"] = (f"{GENERATE['train']} train / {GENERATE['val']} val generated images, from scratch, "
                        f"{recipe}; seeds {', '.join(map(str, args.seeds))}; mAP of the final epoch's validation")
    lengths = sorted({epochs for row in rows for epochs in row.scores})
    header = ["variant", *(f"mAP50-95 @{e} ep" for e in lengths), *(f"mAP50 @{e} ep" for e in lengths),
              *(f"ORT ms @{s}" for s in args.imgsz), "params", f"GFLOPs @{max(args.imgsz)}", "train s/epoch"]
    body = []
    for row in rows:
        maps = [_summary([s[0] for s in row.scores.get(e, [])]) for e in lengths]
        map50s = [_summary([s[1] for s in row.scores.get(e, [])]) for e in lengths]
        body.append([row.variant.name, *maps, *map50s, *(row.latency[s].ms() for s in args.imgsz),
                     f"{row.params:,}", f"{row.gflops:.1f}", f"{row.epoch_seconds:.1f}"])
    changes = [[row.variant.name, f"`{Path(row.variant.cfg).name}`", row.variant.change] for row in rows]
    missing = [f"{row.variant.name}: {', '.join(row.missing)}" for row in rows if row.missing]
    untrained = ("Not trained for this report (`--trained-only`): " + "; ".join(missing) + ".") if missing else ""
    return [
        marker("ablation.py"),
        "# Ablation: how fast EfficientRep-n variants learn, and what they cost",
        table(["", ""], [[k, v] for k, v in info.items()], align="---"),
        "## Results\n\n" + table(header, body),
        "mAP: mean (range) over the seeds. Latency: fused model (Rep blocks re-parameterized, Conv+BN folded), ONNX "
        "Runtime CPU, batch 1, median [interquartile range] of rotating rounds. train s/epoch: median step time "
        f"(batch {RECIPE['batch']} at {RECIPE['imgsz']} px, forward, loss, backward, SGD step, fresh process) "
        f"times the epoch's steps. {untrained}".strip(),
        "## Variants\n\n" + table(["variant", "YAML", "what it changes"], changes, align="---"),
        f"![mAP50-95 vs latency]({chart.name})",
    ]


def plot(rows: list[Row], args: argparse.Namespace, chart: Path) -> None:
    """Chart mAP50-95 (mean, range over seeds) against fused ONNX Runtime latency at the largest image size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imgsz = max(args.imgsz)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for i, row in enumerate(rows):
        maps = [s[0] for s in row.scores.get(args.epochs, [])]
        if not maps:
            continue
        mean = statistics.mean(maps)
        x = row.latency[imgsz].median * 1e3
        ax.errorbar(x, mean, yerr=[[mean - min(maps)], [max(maps) - mean]], fmt="os^Dv<>P*Xh"[i % 11],
                    color=plt.cm.tab20(i % 20), capsize=3, label=row.variant.name)  # 20 colours: no two alike
    ax.set(xlabel=f"fused ONNX Runtime latency, ms (batch 1 @{imgsz}, {args.threads} threads)",
           ylabel=f"mAP50-95 after {args.epochs} epochs (mean, range over seeds)",
           title="EfficientRep-n variants on the generated set: accuracy vs CPU latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(chart)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Train what the zoo lacks, measure cost, write the report and the chart."""
    args = parse_args(argv)
    out = args.out.resolve()
    chart = out.with_suffix(".png")
    refuse_to_overwrite_foreign(out, chart, marker("ablation.py"))
    torch.set_num_threads(args.threads)
    rows = [Row(variant) for variant in args.selected]
    train_all(rows, args)
    with tempfile.TemporaryDirectory(prefix="ablation-") as tmp:
        measure_cost(rows, args, Path(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, args, chart)
    write(out, sections(rows, args, chart))
    log(f"wrote {out} and {chart}")


if __name__ == "__main__":
    main()
