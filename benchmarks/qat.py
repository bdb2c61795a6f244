"""QAT that keeps the re-parameterization: FP32, PTQ and both QAT routes side by side, in accuracy and CPU latency.

For EfficientRep-n and QARepVGG-n (``--models``): the float model from the zoo (``lib/zoo.py``, the side-by-side's
recipe, ``--epochs``) and two quantization-aware fine-tunes of it by Ultralytics' ``quantize=8`` (NVIDIA ModelOpt,
``--qat-epochs``, the same recipe, cached in the zoo too): Ultralytics' own QAT, which trains and exports the Rep
blocks unfused (``YOLOV8_EFFICIENTREP_QAT=ultralytics``), and the plugin's, which trains the fused network. Every file
comes from Ultralytics' exporter: ONNX Runtime FP32 and INT8 PTQ (the plugin's route), OpenVINO FP32 and INT8 PTQ
(NNCF), and each QAT checkpoint's QDQ ONNX file. Measures each file's mAP with Ultralytics' validator, what each INT8
graph holds, and the batch-1 latency in OpenVINO and ONNX Runtime beside each runtime's single INT8 conv peak. Writes a
markdown report, a picture and a JSON file.

Usage: python benchmarks/qat.py  (defaults: 30-epoch zoo models, 5 QAT epochs, latency at 640 px, 20 timed runs,
benchmarks/results/RESULTS_QAT.md)
Run it on an otherwise idle machine: timings taken beside other work are not comparable.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# lib first: importing it makes Ultralytics offline (lib/offline.py)
from lib import report, zoo
from lib.int8_runtimes import OPENVINO, ORT, VARIANTS, Variant, export, peak_calls, runner, validate
from lib.latency import count_gflops, op_counts, peak_label, reference_input
from lib.lineup import MODELS, QAT, QAT_DEFAULT, Entry, build, select
from lib.recipe import EPOCHS, RECIPE
from lib.timing import Timing, check_sizes, log, timed_interleaved

import yaml
from ultralytics import YOLO
from yolov8_efficientrep.graphs import onnx_int8_graph, onnx_unfused_nodes, openvino_int8_graph, qat_onnx_graph

# A QAT checkpoint exports as a plain ONNX file (no quantize=8): ModelOpt's quantizers become its Q/DQ nodes.
QAT_VARIANTS = (Variant("qat-ultralytics", ORT, "QAT", "QAT unfused (Ultralytics')"),
                Variant("qat-fused", ORT, "QAT", "QAT fused (plugin's)"))
QAT_ROUTE = {"qat-ultralytics": "ultralytics", "qat-fused": "fused"}  # YOLOV8_EFFICIENTREP_QAT of each QAT variant
PTQ_LABELS = {"ort-fp32": "ORT FP32", "ort-int8-plugin": "ORT INT8 PTQ", "ov-fp32": "OpenVINO FP32",
              "ov-int8": "OpenVINO INT8 PTQ"}
FILES = (*(v for v in VARIANTS if v.key in PTQ_LABELS), *QAT_VARIANTS)  # every exported file
LABELS = {"pytorch": "PyTorch FP32", **PTQ_LABELS, **{v.key: v.label for v in QAT_VARIANTS}}
FP32_OF = {"ort-int8-plugin": "ort-fp32", "ov-int8": "ov-fp32", "qat-ultralytics": "ort-fp32", "qat-fused": "ort-fp32"}


@dataclass(frozen=True)
class Cell:
    """One timed combination: a runtime running one exported file."""

    key: str
    runtime: str
    file: str  # the exported file's variant key
    label: str

    @property
    def peak(self) -> str:
        """The key of this runtime's INT8 single-conv peak (``int8_runtimes.peak_calls``)."""
        return "ov-int8" if self.runtime == OPENVINO else "ort-int8"


CELLS = (
    Cell("ov-fp32", OPENVINO, "ov-fp32", "OpenVINO FP32"),
    Cell("ov-int8", OPENVINO, "ov-int8", "OpenVINO INT8 PTQ"),
    Cell("ov-qat-ultralytics", OPENVINO, "qat-ultralytics", "OpenVINO, QAT unfused"),
    Cell("ov-qat-fused", OPENVINO, "qat-fused", "OpenVINO, QAT fused"),
    Cell("ort-fp32", ORT, "ort-fp32", "ORT FP32"),
    Cell("ort-int8-plugin", ORT, "ort-int8-plugin", "ORT INT8 PTQ"),
    Cell("ort-qat-ultralytics", ORT, "qat-ultralytics", "ORT, QAT unfused"),
    Cell("ort-qat-fused", ORT, "qat-fused", "ORT, QAT fused"),
)
INT8_FILES = ("ort-int8-plugin", "ov-int8", "qat-ultralytics", "qat-fused")


@dataclass(frozen=True)
class GraphCounts:
    """What an exported graph holds and how many of its convs each runtime runs in INT8 (None: not asked)."""

    convs: int
    quantized: int | None  # convs quantized in the file
    ort_int8: int | None  # convs ONNX Runtime runs as QLinearConv
    openvino_int8: int | None  # convs OpenVINO's CPU plugin runs in u8/i8
    leftovers: list[str]  # BatchNorm nodes and Adds of two conv outputs (``graphs.unfused_layers``)

    def count(self, op_type: str) -> int:
        """How many leftovers are of ``op_type`` (``BatchNorm`` matches ONNX's and OpenVINO's BatchNorm ops)."""
        return sum(item.split(" ", 1)[0].startswith(op_type) for item in self.leftovers)


@dataclass
class Measured:
    """Everything measured for one model: its trained runs, exported files, accuracy, graphs and latency."""

    entry: Entry
    runs: dict[str, zoo.TrainedModel]  # "float" and each QAT variant key
    files: dict[tuple[str, int], Path] = field(default_factory=dict)  # (variant key, imgsz) -> file
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # variant key -> mAP50-95, mAP50
    graphs: dict[str, GraphCounts] = field(default_factory=dict)  # variant key -> counts at the latency size
    latency: dict[str, Timing] = field(default_factory=dict)  # cell key -> Timing
    gflops: float = 0.0  # the fused model's, one image at the latency size

    @property
    def name(self) -> str:
        """The model's name in the report, e.g. ``EfficientRep-n``."""
        return MODELS[self.entry.stem].title

    def ms(self, cell: str) -> float:
        """Median latency of a cell in milliseconds."""
        return self.latency[cell].median * 1e3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (every default is the full measurement)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=report.RESULTS / "RESULTS_QAT.md",
                        help="markdown report (the picture and the JSON file are written beside it)")
    parser.add_argument("--models", nargs="+", metavar="STEM", default=QAT_DEFAULT,
                        help=f"YAML stems (default: {' '.join(QAT_DEFAULT)}; also "
                             f"{', '.join(e.stem for e in QAT[len(QAT_DEFAULT):])})")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="float training epochs (the zoo caches each model)")
    parser.add_argument("--qat-epochs", type=int, default=5, help="QAT fine-tuning epochs of each route")
    parser.add_argument("--qat-overrides", nargs="+", metavar="KEY=VALUE", default=[],
                        help="training arguments both QAT routes take on top of the float recipe, as yolo takes them "
                             "(e.g. optimizer=SGD lr0=0.001 warmup_epochs=0); default: none")
    parser.add_argument("--seed", type=int, default=0, help="training seed of the float model and of both QAT runs")
    parser.add_argument("--zoo", type=Path, default=zoo.DEFAULT_ZOO, help="cache of trained models")
    parser.add_argument("--calibration-fraction", type=float, default=0.25,
                        help="fraction of the training split PTQ calibrates on (0.25: 128 of 512 images)")
    parser.add_argument("--imgsz", type=int, default=640, help="image size of the latency measurement (batch 1)")
    parser.add_argument("--threads", type=int, default=2, help="threads in ONNX Runtime and OpenVINO")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per cell (20 or more for a measurement)")
    args = parser.parse_args(argv)
    check_sizes(parser, [args.imgsz], [args.runs])
    if min(args.epochs, args.qat_epochs, args.threads) < 1:
        parser.error("--epochs, --qat-epochs and --threads must be at least 1")
    if not 0 < args.calibration_fraction <= 1:
        parser.error(f"--calibration-fraction must be in (0, 1], got {args.calibration_fraction}")
    args.qat_overrides = overrides(parser, args.qat_overrides)
    args.entries = select(args.models, QAT)
    args.chart, args.json = args.out.with_suffix(".png"), args.out.with_suffix(".json")
    return args


def overrides(parser: argparse.ArgumentParser, pairs: list[str]) -> dict:
    """Parse ``KEY=VALUE`` training arguments, each value read as YAML (``0.001`` a number, ``SGD`` a string)."""
    if any("=" not in pair or pair.startswith("=") for pair in pairs):
        parser.error(f"--qat-overrides takes KEY=VALUE pairs, got {' '.join(pairs)}")
    return {key: yaml.safe_load(value) for key, value in (pair.split("=", 1) for pair in pairs)}


def train(entry: Entry, args: argparse.Namespace) -> dict[str, zoo.TrainedModel]:
    """Train (or fetch from the zoo) the float model and both QAT fine-tunes of it."""
    source = zoo.trained(entry.cfg, args.epochs, args.seed, zoo=args.zoo, log=log)
    runs = {"float": source}
    for variant in QAT_VARIANTS:
        runs[variant.key] = zoo.qat_trained(source, args.qat_epochs, QAT_ROUTE[variant.key], args.seed, zoo=args.zoo,
                                            log=log, **args.qat_overrides)
    return runs


def export_files(model: Measured, imgsz: int, args: argparse.Namespace, workdir: Path) -> None:
    """Export every file of one model at ``imgsz`` (PTQ from the float checkpoint, QAT from its own) into
    ``model.files``; PTQ calibrates on ``--calibration-fraction`` of the training split."""
    for variant in FILES:
        if (variant.key, imgsz) in model.files:
            continue
        folder = workdir / model.entry.stem / f"{variant.key}-{imgsz}"
        folder.mkdir(parents=True)
        checkpoint = shutil.copy(model.runs.get(variant.key, model.runs["float"]).best, folder / "best.pt")
        log(f"{model.name}: export {LABELS[variant.key]} at {imgsz} px")
        model.files[variant.key, imgsz] = export(YOLO(checkpoint), variant, 1, imgsz, zoo.dataset(args.zoo), folder,
                                                 split="train", fraction=args.calibration_fraction)


def measure_accuracy(model: Measured, args: argparse.Namespace) -> None:
    """Validate the float checkpoint and every file exported at the recipe's image size."""
    data, imgsz = zoo.dataset(args.zoo), RECIPE["imgsz"]
    model.accuracy["pytorch"] = validate(model.runs["float"].best, data, imgsz)  # the validator fuses it
    for variant in FILES:
        log(f"{model.name}: validate {LABELS[variant.key]}")
        path = model.files[variant.key, imgsz]
        model.accuracy[variant.key] = validate(path.parent if variant.runtime == OPENVINO else path, data, imgsz)


def graph_counts(key: str, path: Path) -> GraphCounts:
    """Count what one exported file holds, with the check that fits it (``yolov8_efficientrep.graphs``)."""
    if key == "ort-fp32":  # the fused float model, the reference
        return GraphCounts(op_counts(path)["Conv"], None, None, None, onnx_unfused_nodes(path))
    if key == "ov-int8":
        graph = openvino_int8_graph(path)
        return GraphCounts(graph.convs, graph.quantized, None, graph.runtime_quantized, graph.leftovers)
    if key == "ort-int8-plugin":
        graph = onnx_int8_graph(path)
        return GraphCounts(graph.convs, graph.quantized, graph.runtime_quantized, None, graph.leftovers)
    graph = qat_onnx_graph(path)  # a QAT file: OpenVINO's count, and ONNX Runtime's (no QLinearConv expected)
    return GraphCounts(graph.convs, graph.quantized, onnx_int8_graph(path).runtime_quantized, graph.runtime_quantized,
                       graph.leftovers)


def time_runtime(models: list[Measured], peaks: dict, runtime: str, args: argparse.Namespace) -> dict[str, Timing]:
    """Time every model's cells of one runtime with that runtime's peak convs, in rotating rounds; store the models'
    timings in them and return the peaks'."""
    x = reference_input(1, args.imgsz).numpy()
    prefix = "ov-" if runtime == OPENVINO else "ort-"
    calls = {("peak", key): call for key, call in peaks.items() if key.startswith(prefix)}
    for index, model in enumerate(models):
        for cell in (c for c in CELLS if c.runtime == runtime):
            calls[index, cell.key] = runner(runtime, model.files[cell.file, args.imgsz], x, args.threads)
    log(f"latency: {runtime}, batch 1 @{args.imgsz}, {len(calls)} cells, {args.runs} timed runs each")
    peak_timings = {}
    for (owner, key), timing in timed_interleaved(calls, args.warmup, args.runs).items():
        if owner == "peak":
            peak_timings[key] = timing
        else:
            models[owner].latency[key] = timing
    return peak_timings


def accuracy_table(models: list[Measured], metric: str) -> str:
    """One metric of every model and file; INT8 cells with their change from the FP32 file of the runtime that ran
    them (ONNX Runtime for the QAT files)."""
    rows = []
    for model in models:
        cells = []
        for key in LABELS:
            value = model.accuracy[key][metric]
            change = f" ({value - model.accuracy[FP32_OF[key]][metric]:+.3f})" if key in FP32_OF else ""
            cells.append(f"{value:.3f}{change}")
        rows.append([model.name, *cells])
    return report.table(["model", *LABELS.values()], rows)


def latency_table(models: list[Measured]) -> str:
    """Median latency [quartiles] of every model and cell."""
    rows = [[model.name, *(model.latency[cell.key].ms() for cell in CELLS)] for model in models]
    return report.table(["model", *(cell.label for cell in CELLS)], rows)


def efficiency_table(models: list[Measured], peak_gflops: float, peaks: dict[str, Timing]) -> str:
    """Achieved GOP/s of every cell and its fraction of the same runtime's single-conv INT8 peak."""
    rate = {key: peak_gflops / timing.median for key, timing in peaks.items()}
    rows = [[f"{peak_label()}, INT8", *(f"{rate[cell.peak]:.1f} (100%)" for cell in CELLS)],
            [f"{peak_label()}, FP32", *(f"{rate[cell.peak.replace('int8', 'fp32')]:.1f}" for cell in CELLS)]]
    for model in models:
        achieved = [model.gflops / model.latency[cell.key].median for cell in CELLS]
        rows.append([model.name, *(f"{a:.1f} ({a / rate[c.peak]:.0%})" for a, c in zip(achieved, CELLS))])
    return report.table(["", *(cell.label for cell in CELLS)], rows)


def graph_table(models: list[Measured]) -> str:
    """What each INT8 file (and the FP32 reference) holds, and how many convs each runtime runs in INT8."""

    def number(value: int | None) -> str:
        return "-" if value is None else str(value)

    rows = []
    for model in models:
        for key in ("ort-fp32", *INT8_FILES):
            graph = model.graphs[key]
            rows.append([f"{model.name}, {LABELS[key]}", str(graph.convs), number(graph.quantized),
                         number(graph.ort_int8), number(graph.openvino_int8), str(graph.count("BatchNorm")),
                         str(graph.count("Add"))])
    return report.table(["file", "convs", "quantized in the file", "INT8 in ONNX Runtime (QLinearConv)",
                         "INT8 in OpenVINO", "BatchNorm", "Adds of two convs"], rows)


HEADLINE = (  # (row label, kind, a, b): mAP50-95 a - b, or latency b / a (above 1: a is faster)
    ("mAP50-95: QAT fused - QAT unfused", "map", "qat-fused", "qat-ultralytics"),
    ("mAP50-95: QAT fused - ORT INT8 PTQ", "map", "qat-fused", "ort-int8-plugin"),
    ("mAP50-95: QAT fused - OpenVINO INT8 PTQ", "map", "qat-fused", "ov-int8"),
    ("mAP50-95: QAT fused - ORT FP32", "map", "qat-fused", "ort-fp32"),
    ("OpenVINO speed-up of QAT fused over QAT unfused", "ms", "ov-qat-fused", "ov-qat-ultralytics"),
    ("OpenVINO speed-up of QAT fused over INT8 PTQ", "ms", "ov-qat-fused", "ov-int8"),
    ("OpenVINO speed-up of QAT fused over FP32", "ms", "ov-qat-fused", "ov-fp32"),
    ("ONNX Runtime speed-up of QAT fused over QAT unfused", "ms", "ort-qat-fused", "ort-qat-ultralytics"),
    ("ONNX Runtime speed-up of INT8 PTQ over QAT fused", "ms", "ort-int8-plugin", "ort-qat-fused"),
)


def headline(models: list[Measured]) -> str:
    """QAT fused against QAT unfused, PTQ and FP32: mAP50-95 differences and latency ratios, one column per model."""
    rows = []
    for label, kind, a, b in HEADLINE:
        if kind == "map":
            rows.append([label, *(f"{m.accuracy[a]['mAP50-95'] - m.accuracy[b]['mAP50-95']:+.3f}" for m in models)])
        else:
            rows.append([label, *(f"{m.ms(b) / m.ms(a):.2f}x" for m in models)])
    note = ("mAP50-95 differences at 160 px (above 0: the first is more accurate); speed-ups are median latency over "
            "median latency at batch 1 (above 1: the first is faster).")
    return f"{report.table(['', *(m.name for m in models)], rows)}\n\n{note}\n"


def training_table(models: list[Measured]) -> str:
    """Epochs and median seconds per training epoch of the float run and of each QAT run, as measured when trained."""
    rows = []
    for model in models:
        for key, label in (("float", "FP32"), *((v.key, v.label) for v in QAT_VARIANTS)):
            run = model.runs[key]
            rows.append([f"{model.name}, {label}", str(len(run.epoch_seconds)),
                         f"{statistics.median(run.epoch_seconds):.1f}", str(run.best.parents[1])])
    return report.table(["run", "epochs", "s / epoch (median)", "zoo folder"], rows, align=["---:", "---:", "---"])


def plot(models: list[Measured], args: argparse.Namespace) -> None:
    """Two panels (OpenVINO, ONNX Runtime): each model's mAP50-95 against its batch-1 latency, FP32, INT8 PTQ and
    both QATs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5), dpi=120)
    for ax, runtime in zip(axes, (OPENVINO, ORT)):
        cells = [cell for cell in CELLS if cell.runtime == runtime]
        for i, model in enumerate(models):
            for cell, marker in zip(cells, "osD^"):
                ax.scatter(model.ms(cell.key), model.accuracy[cell.file]["mAP50-95"], marker=marker, s=60,
                           color=f"C{i}", label=f"{model.name}, {LABELS[cell.file]}", zorder=3)
        ax.set(xlabel=f"median latency, ms (batch 1 @{args.imgsz}, {args.threads} threads)", ylabel="mAP50-95",
               title=f"{runtime}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    fig.suptitle("FP32, INT8 PTQ and QAT (unfused / fused): accuracy vs CPU latency")
    fig.tight_layout()
    fig.savefig(args.chart)
    plt.close(fig)


def as_json(models: list[Measured], command: str, runs: int) -> dict:
    """The measured numbers per model, keyed by YAML stem."""
    return {"command": command, "runs": runs, "models": {
        m.entry.stem: {"name": m.name, "accuracy": m.accuracy, "gflops": m.gflops,
                       "latency_ms": {key: timing.median * 1e3 for key, timing in m.latency.items()},
                       "graphs": {key: {"convs": g.convs, "quantized": g.quantized, "ort_int8": g.ort_int8,
                                        "openvino_int8": g.openvino_int8, "batch_norm": g.count("BatchNorm"),
                                        "conv_adds": g.count("Add")} for key, g in m.graphs.items()}}
        for m in models}}


NOTES = """\
- Training: the float model is `benchmarks/lib/zoo.py`'s `trained(cfg, epochs, seed)`, the side-by-side's recipe
  (generated shapes set, 512 train / 128 val images of 160 px, batch 8, nbs 8, deterministic, CPU; everything else
  Ultralytics' defaults: `optimizer=auto`, which picks AdamW at lr 0.00125 for runs this short, 3 warm-up epochs),
  cached and shared with the other accuracy benchmarks. Both QAT runs are `zoo.qat_trained`: `YOLO(float
  best.pt).train(quantize=8, ...)` for `--qat-epochs` epochs with the same recipe and seed and the header's overrides
  (the same for both routes), cached in the zoo beside it. Ultralytics' QAT puts NVIDIA ModelOpt fake quantizers on
  each conv's input and weights (ranges calibrated on 8 training batches, then held) and keeps the head's output convs
  float. It runs once under `YOLOV8_EFFICIENTREP_QAT=ultralytics` (Ultralytics' own: every Rep block trains its three
  branches, each quantized, and exports unfused) and once with the plugin's default (`fused`: every Rep block fused
  into its single 3x3 conv before the quantizers go in; QAT trains and exports that network).
- Files: Ultralytics' exporter, as `yolo export` writes them: `format=onnx` (ORT FP32), `format=onnx quantize=8` (ORT
  INT8 PTQ: the plugin's route, what the plain command gives plugin models), `format=openvino` and `format=openvino
  quantize=8` (NNCF, MIXED preset) from the float `best.pt`; `format=onnx` from each QAT `best.pt` (a QDQ graph:
  Ultralytics refuses `format=openvino` for QAT models). PTQ calibrates on the stated fraction of the training split
  (`split=train fraction=...`), so no validation image is a calibration image.
- Accuracy: every file exported at 160 px and validated by Ultralytics' validator on the 128 validation images, batch
  1; PyTorch FP32 is the float `best.pt` (the validator fuses it). The QAT ONNX files are validated by the same
  validator, which runs ONNX files in ONNX Runtime: their accuracy is ModelOpt's quantize/dequantize arithmetic as ONNX
  Runtime computes it in float, not OpenVINO's INT8 kernels. OpenVINO runs as the validator compiles it (the CPU
  plugin's default precision: bfloat16 float parts on CPUs with AVX512-BF16). In brackets: change from the FP32 file
  of the runtime that ran the file (ONNX Runtime for the QAT files).
- Graphs (files exported at the latency size): `yolov8_efficientrep.graphs`: `onnx_int8_graph` for the ORT PTQ file
  (QLinearConv in the graph ONNX Runtime's CPU provider builds), `openvino_int8_graph` for the OpenVINO PTQ IR (the
  precision OpenVINO's CPU plugin compiles each conv to), `qat_onnx_graph` and `onnx_int8_graph` for each QAT file
  (OpenVINO reading the `.onnx` itself; ONNX Runtime forms no QLinearConv from ModelOpt's graph: no quantize node after
  the convs). BatchNorm nodes and Adds of two conv outputs are what fusion should have removed (`graphs.unfused_layers`:
  an unfused Rep block sums its 3x3 and 1x1 convs in one such Add; a BatchNorm no conv absorbs, an identity
  branch's or QARepVGG's after the sum, stays a node; the Add that brings an identity branch in is not counted). The
  FP32 row is the fused float model: the reference conv count.
- Latency: batch 1 at `--imgsz`, files exported at that size from the same checkpoints (PTQ calibrated as above), one
  random input. OpenVINO: CPU plugin, `INFERENCE_PRECISION_HINT=f32`, `PERFORMANCE_HINT=LATENCY`, one infer request;
  it reads each QAT `.onnx` directly. ONNX Runtime: CPUExecutionProvider, all graph optimizations, sequential,
  denormals flushed. The same threads everywhere. Every cell of one runtime (and that runtime's peak convs) is timed in
  4 round-robin rounds, each giving every cell its warm-up runs and a quarter of its timed runs; one runtime at a time.
- Fraction of the peak: GFLOPs are Ultralytics' count (2 x multiply-adds) of the fused model at `--imgsz` for every
  cell, also the unfused QAT graph's, which does more work for the same result (so its rate is the useful rate).
  Achieved rate = GFLOPs / median latency. The peak is one 3x3 conv, 256 -> 256 channels on an 80x80 map, batch 1, in
  the same runtime, quantized as the models are (ONNX Runtime: the plugin's route, QLinearConv; OpenVINO: NNCF), timed
  in the same rounds; its FP32 rate is shown for reference.
"""


def main(argv: list[str] | None = None) -> None:
    """Train, export, validate, count and time everything; write the report, the picture and the JSON file."""
    args = parse_args(argv)
    marker = report.marker(Path(__file__).name)
    report.refuse_to_overwrite_foreign(args.out, args.chart, marker)
    models = [Measured(entry, train(entry, args)) for entry in args.entries]
    with tempfile.TemporaryDirectory(prefix="bench-qat-") as tmp:
        workdir = Path(tmp)
        for model in models:
            for imgsz in dict.fromkeys((RECIPE["imgsz"], args.imgsz)):
                export_files(model, imgsz, args, workdir)
            measure_accuracy(model, args)
            model.graphs = {key: graph_counts(key, model.files[key, args.imgsz]) for key in ("ort-fp32", *INT8_FILES)}
            model.gflops = count_gflops(build(model.entry), args.imgsz, model.entry)
        peak_gflops, peaks = peak_calls(args.threads, workdir)
        peak_timings = {}
        for runtime in (OPENVINO, ORT):
            peak_timings.update(time_runtime(models, peaks, runtime, args))

    for path in (args.out, args.chart, args.json):
        path.parent.mkdir(parents=True, exist_ok=True)
    plot(models, args)
    info = report.machine_info(args.threads, openvino=True, modelopt=True)
    info["threads"] = f"{args.threads} (ONNX Runtime intra-op threads, inter-op 1; OpenVINO INFERENCE_NUM_THREADS)"
    qat_args = " ".join(f"{key}={value}" for key, value in args.qat_overrides.items()) or "none"
    info["training"] = (f"epochs: float {args.epochs}, QAT {args.qat_epochs} per route; QAT's overrides of the float "
                        f"recipe: {qat_args}; seed {args.seed}; zoo {args.zoo}")
    info["PTQ calibration"] = f"{args.calibration_fraction:.0%} of the training split"
    if args.epochs < EPOCHS:
        info["note"] = (f"**{args.epochs} float epochs, not the default {EPOCHS}: less trained models, whose INT8 "
                        f"changes may differ from fully trained ones'**")
    sections = [
        marker,
        report.header("QAT that keeps the re-parameterization: FP32, PTQ and QAT on CPU", info, args.warmup,
                      args.runs),
        "## Headline: QAT fused against QAT unfused, PTQ and FP32\n\n" + headline(models),
        f"## mAP50-95 (validation split, {RECIPE['imgsz']} px)\n\n" + accuracy_table(models, "mAP50-95"),
        f"## mAP50 (validation split, {RECIPE['imgsz']} px)\n\n" + accuracy_table(models, "mAP50"),
        f"## Latency, batch 1 @{args.imgsz}: ms, median [interquartile range]\n\n" + latency_table(models),
        f"## Fraction of the INT8 single-conv peak, batch 1 @{args.imgsz}: achieved GOP/s\n\n"
        + efficiency_table(models, peak_gflops, peak_timings),
        f"## INT8 graphs, batch 1 @{args.imgsz}\n\n" + graph_table(models),
        "## Training\n\n" + training_table(models),
        "## Accuracy vs latency\n\n![mAP50-95 against latency, FP32, PTQ and both QATs]"
        f"({report.link(args.chart, args.out)})",
        "## How it was measured\n\n" + NOTES,
    ]
    report.write(args.out, sections)
    args.json.write_text(json.dumps(as_json(models, info["command"], args.runs), indent=1))
    log(f"wrote {args.out}, {args.chart} and {args.json}")


if __name__ == "__main__":
    main()
