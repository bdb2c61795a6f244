"""Side by side: YOLOv8n and EfficientRep-n trained with identical settings and seeds on the generated shapes set.

The models (by default these two) train from scratch with the same Ultralytics arguments (data, epochs, image size,
batch, nbs, seed, deterministic, device), one after the other in this process. The report gives, per model and seed:
final mAP50 and mAP50-95 of ``best.pt`` validated unfused and fused from the same float32 weights
(``yolov8_efficientrep.evaluation.validate_unfused_and_fused``), training time per epoch (the batches only, without the
validation after each epoch), fused PyTorch inference time on CPU at batch 1, and parameters; one PNG shows every
learning curve. The defaults are the recipe of ``lib/recipe.py`` (30 epochs each, on CPU; docs/benchmarks.md says how
long that takes):

    python benchmarks/side_by_side.py  # writes benchmarks/results/side_by_side.md and .png

On a GPU, a real training budget (the batch and schedule of the H200 comparison in docs/benchmarks.md), more seeds,
and QARepVGG-n and YOLOv6-N 3.0 beside them (inference is still timed on CPU):

    python benchmarks/side_by_side.py --device 0 --epochs 60 --batch 16 --nbs 16 --seed 0 1 2 \\
        --models yolov8n yolov8n-efficientrep yolov8n-qarepvgg yolov6n-repbifpan --out side_by_side_gpu.md
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# lib first: importing it makes Ultralytics offline (lib/offline.py)
from lib.lineup import MODELS, SIDE_BY_SIDE
from lib.recipe import EPOCHS, GENERATE, RECIPE
from lib.report import RESULTS, machine_info, marker, refuse_to_overwrite_foreign, table, write
from lib.timing import RUNS_FOR_A_MEASUREMENT, Timing, log, timed

import torch
from ultralytics import YOLO
from yolov8_efficientrep.evaluation import Scores, validate_unfused_and_fused
from yolov8_efficientrep.fusion import sample_image
from yolov8_efficientrep.shapes import make_shapes_dataset

CURVES = (("metrics/mAP50-95(B)", "val mAP50-95"), ("metrics/mAP50(B)", "val mAP50"),
          (("train/box_loss", "train/cls_loss", "train/dfl_loss"), "train loss (box + cls + dfl)"))


@dataclass
class Result:
    """What was measured for one model."""

    name: str
    cfg: str
    unfused: Scores
    fused: Scores
    epoch_seconds: list[float]  # training time of each epoch, validation excluded
    inference: Timing  # fused PyTorch, batch 1
    params: tuple[int, int]  # unfused, fused
    curves: dict[str, list[float]]  # results.csv column (or sum of columns) -> value per epoch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options; the defaults are the recipe's, data set sizes those of ``cfg/shapes.yaml``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "side_by_side.md",
                        help="markdown report; the PNG of learning curves is written next to it")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--imgsz", type=int, default=RECIPE["imgsz"])
    parser.add_argument("--batch", type=int, default=RECIPE["batch"])
    parser.add_argument("--nbs", type=int, default=RECIPE["nbs"],
                        help="Ultralytics' nominal batch size; = batch: an optimizer step per batch, as in the demo")
    parser.add_argument("--models", nargs="+", default=list(SIDE_BY_SIDE[:2]), choices=SIDE_BY_SIDE, metavar="STEM",
                        help=f"model YAML stems, in report order: {', '.join(SIDE_BY_SIDE)}")
    parser.add_argument("--seed", type=int, nargs="+", default=[0],
                        help="Ultralytics' training seed(s), the same for every model; each seed trains every model")
    parser.add_argument("--device", default=RECIPE["device"],
                        help="training and validation device, e.g. 0 for the first GPU")
    parser.add_argument("--train-images", type=int, default=GENERATE["train"])
    parser.add_argument("--val-images", type=int, default=GENERATE["val"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--warmup", type=int, default=10, help="untimed inference runs before timing")
    parser.add_argument("--runs", type=int, default=100, help="timed inference runs")
    return parser.parse_args(argv)


def train(cfg: str, seed: int, data: Path, workdir: Path, args: argparse.Namespace) -> tuple[Path, list[float], Path]:
    """Train one model with one seed; return its best.pt, the training seconds of each epoch and its results.csv."""
    model = YOLO(cfg)
    started: list[float] = []
    seconds: list[float] = []
    model.add_callback("on_train_epoch_start", lambda trainer: started.append(time.perf_counter()))
    model.add_callback("on_train_epoch_end", lambda trainer: seconds.append(time.perf_counter() - started[-1]))
    settings = {**RECIPE, "imgsz": args.imgsz, "batch": args.batch, "nbs": args.nbs, "device": args.device}
    model.train(data=str(data), epochs=args.epochs, seed=seed, project=str(workdir), name=f"{Path(cfg).stem}-s{seed}",
                exist_ok=True, **settings)
    return Path(model.trainer.best), seconds, Path(model.trainer.save_dir) / "results.csv"


def read_curves(results_csv: Path) -> dict[str, list[float]]:
    """Return each curve of ``CURVES`` per epoch from Ultralytics' results.csv."""
    with results_csv.open() as file:
        rows = [{key.strip(): float(value) for key, value in row.items()} for row in csv.DictReader(file)]
    curves = {}
    for columns, label in CURVES:
        columns = (columns,) if isinstance(columns, str) else columns
        curves[label] = [sum(row[c] for c in columns) for row in rows]
    return curves


def measure(name: str, cfg: str, seed: int, data: Path, workdir: Path, args: argparse.Namespace) -> Result:
    """Train with one seed, validate unfused and fused, and time fused inference (on CPU) of one model."""
    log(f"{name}: training {cfg} for {args.epochs} epochs on {args.device}")
    best, seconds, results_csv = train(cfg, seed, data, workdir, args)
    log(f"{name}: validating {best} unfused and fused")
    scores = validate_unfused_and_fused(best, data=str(data), imgsz=args.imgsz, batch=args.batch, device=args.device,
                                        project=str(workdir), name=f"{Path(cfg).stem}-s{seed}-val", exist_ok=True)
    fused = scores.fused_model.cpu().eval()  # validation moved it to the training device
    image = sample_image(args.imgsz, args.imgsz)
    with torch.no_grad():
        inference = timed(lambda: fused(image), args.warmup, args.runs)
    params = tuple(sum(p.numel() for p in m.parameters()) for m in (scores.unfused_model, fused))
    return Result(name, cfg, scores.unfused, scores.fused, seconds, inference, params, read_curves(results_csv))


def plot(results: list[Result], chart: Path) -> None:
    """Draw every curve of ``CURVES`` for every model (and seed) into one PNG, one panel per curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 4), constrained_layout=True)
    for axis, (_, label) in zip(axes, CURVES):
        for result in results:
            values = result.curves[label]
            axis.plot(range(1, len(values) + 1), values, marker=".", label=result.name)
        axis.set(title=label, xlabel="epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.savefig(chart, dpi=120)
    plt.close(figure)


def sections(results: list[Result], chart: Path, args: argparse.Namespace, info: dict[str, str]) -> list[str]:
    """Return the markdown report's sections."""
    settings = (f"{args.train_images} train / {args.val_images} val images of `make_shapes_dataset` "
                f"({GENERATE['imgsz']} px, seed 0), {args.epochs} epoch{'s' * (args.epochs != 1)} from scratch, "
                f"imgsz {args.imgsz}, batch {args.batch}, nbs {args.nbs}, seed{'s' * (len(args.seed) > 1)} "
                f"{', '.join(map(str, args.seed))}, deterministic, "
                f"{'CPU' if args.device == 'cpu' else f'device {args.device}'}; every other argument is Ultralytics' "
                f"default")
    timing = (f"fused PyTorch model, batch 1 at {args.imgsz}x{args.imgsz}, {args.runs} timed runs after {args.warmup} "
              f"warm-up runs; median [interquartile range]")
    rows = [[key, value] for key, value in info.items()] + [["training", settings], ["inference", timing]]
    title = f"# {' vs '.join(MODELS[stem].title for stem in args.models)}, trained side by side"
    text = [marker("side_by_side.py"), title, table(["", ""], rows, align="---")]
    if args.runs < RUNS_FOR_A_MEASUREMENT or args.epochs < 10:
        text.append(f"**Smoke-test settings ({args.epochs} epochs, {args.runs} timed runs): these numbers prove the "
                    f"script runs; they are not a measurement.**")
    header = ["model", "mAP50", "mAP50-95", "train s/epoch", "fused inference ms", "params (fused)"]
    body = [[r.name, f"{r.fused.map50:.3f}", f"{r.fused.map50_95:.3f}", f"{statistics.median(r.epoch_seconds):.1f}",
             r.inference.ms(), f"{r.params[1]:,}"] for r in results]
    header2 = ["model", "mAP50 unfused", "mAP50 fused", "mAP50-95 unfused", "mAP50-95 fused", "max \\|difference\\|"]
    body2 = [[r.name, *(f"{v:.3f}" for v in (r.unfused.map50, r.fused.map50, r.unfused.map50_95, r.fused.map50_95)),
              f"{max(abs(a - b) for a, b in zip(r.unfused, r.fused)):.1e}"] for r in results]
    return text + [
        "## Results", table(header, body),
        "mAP: `best.pt` on the val split, fused (as deployed). train s/epoch: median over the epochs of the training "
        "batches' time, without the validation that follows each epoch.",
        "## Fused vs unfused", table(header2, body2),
        "Both from the same float32 weights of `best.pt`: Ultralytics' validator scores the network as it is, once "
        "before and once after re-parameterization (Conv+BN folding, and for EfficientRep every RepVGG block into one "
        "3x3 convolution).",
        "## Learning curves", f"![learning curves]({chart.name})"]


def main(argv: list[str] | None = None) -> None:
    """Train every model with every seed, measure them and write the report and the chart."""
    args = parse_args(argv)
    out = args.out.resolve()
    chart = out.with_name(f"{out.stem}.png")
    refuse_to_overwrite_foreign(out, chart, marker("side_by_side.py"))
    torch.set_num_threads(args.threads)
    info = {**machine_info(args.threads), "threads": f"{args.threads} (torch.set_num_threads)"}
    workdir = Path(tempfile.mkdtemp(prefix="side-by-side-"))
    try:
        data = make_shapes_dataset(workdir / "shapes", train=args.train_images, val=args.val_images,
                                   imgsz=GENERATE["imgsz"])
        results = [measure(MODELS[stem].title + (f", seed {seed}" if len(args.seed) > 1 else ""), f"{stem}.yaml", seed,
                           data, workdir, args) for seed in args.seed for stem in args.models]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, chart)
    write(out, sections(results, chart, args, info))
    log(f"wrote {out} and {chart}")
    for r in results:
        difference = abs(r.unfused.map50_95 - r.fused.map50_95)
        if difference >= 1e-3:
            sys.exit(f"{r.name}: fused and unfused mAP50-95 differ by {difference:.1e} (>= 1e-3); see {out}")


if __name__ == "__main__":
    main()
