"""Every Ultralytics export format for a trained EfficientRep-n beside yolov8n: exported, fused, run, compared, timed.

Trains (or takes from the zoo's cache, ``lib/zoo.py``) yolov8n-efficientrep and yolov8n on the generated shapes set
with the benchmarks' recipe, then for each of Ultralytics' 22 export formats (``lib/formats.py``) and both models, in
a child process of the format's own Python environment (``--python FORMAT=PATH``; TensorFlow and Paddle pin numpy
and protobuf against the others): checks its packages are installed; ``YOLO(best.pt).export(format=...)`` as ``yolo
export`` does it; the plugin's fusion-check log line; the exported graph's conv and BatchNorm count against the fused
PyTorch model's ``Conv2d`` count (``lib/format_graphs.py``); raw outputs and detections after NMS on validation images
against the fused PyTorch model (``lib/format_checks.py``); median latency through Ultralytics' backend for the format,
both models timed in the same rounds; INT8 where Ultralytics offers it for LiteRT, MNN, RKNN and IMX, with its
mAP50-95 on the validation split. For NCNN it also runs every precision option (``lib/ncnn_precision.py``).

Usage: python benchmarks/deployment_formats.py --python saved_model=/venv-tf/bin/python pb=/venv-tf/bin/python \
           paddle=/venv-paddle/bin/python
(defaults: every format, 10 training epochs, 16 compared images, 20 timed runs,
benchmarks/results/RESULTS_FORMATS.md and .json)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

# lib first: importing it makes Ultralytics offline (lib/offline.py)
from lib import report, zoo
from lib.format_checks import BOX_TOLERANCE_PX, SCORE_TOLERANCE, first_output, image_batch, validation_images
from lib.formats import BY_ARG, FORMATS, Format
from lib.recipe import GENERATE, RECIPE
from lib.timing import log, timed_interleaved

import torch

MODELS = ("yolov8n-efficientrep.yaml", "yolov8n.yaml")
# INT8 exported and validated here (ONNX Runtime and OpenVINO INT8: docs/int8.md; RKNN INT8 is exported, but its
# simulator runs only a model built in its own session and Ultralytics deletes the INT8 ONNX it built from)
INT8_MAP = {"litert", "mnn", "imx"}
NOTES = f"""\
- Models: yolov8n-efficientrep (EfficientRep-n) and yolov8n trained with the benchmarks' recipe (`lib/recipe.py`) on
  the generated shapes set ({GENERATE['train']} train / {GENERATE['val']} val images of {GENERATE['imgsz']} px, 4
  classes), exported at imgsz {GENERATE['imgsz']}, batch 1, with `YOLO(best.pt).export(format=...)` and
  Ultralytics' defaults, each format in a child process of its own environment.
- Fusion check: the plugin's `on_export_start` line ("EfficientRep: fused N blocks, max |diff| ...") captured from
  Ultralytics' log; yolov8n has no Rep blocks, so no line.
- Graph: convolutions and BatchNorms read from the exported file (NCNN `.param`, MNN through MNNConvert's JSON dump,
  TFLite through the LiteRT interpreter, Paddle's program, ExecuTorch's XNNPACK delegate graph, ONNX, OpenVINO IR,
  TorchScript's inlined graph) against the fused PyTorch model's `nn.Conv2d` count; "fused" = the same count and no
  BatchNorm (an unfused RepVGG block adds a 1x1 branch conv and its branch Add).
- Raw: the output tensor of Ultralytics' `AutoBackend` for the file (the runtime configured as `yolo predict` does)
  against the fused float32 PyTorch model, boxes (pixels) and scores separately; the table gives the larger of the two
  relative differences (max |diff| / max |value|).
- Detections: `YOLO(file).predict` against `YOLO(best.pt).predict` (conf 0.25, iou 0.7) on the same validation
  images; matched by class and IoU >= 0.5. "Matches" = no unmatched box, coordinates within {BOX_TOLERANCE_PX} px
  and scores within {SCORE_TOLERANCE}.
- Latency: median of the timed runs of one `AutoBackend` forward pass (batch 1) on a validation image, EfficientRep-n
  and yolov8n in the same rotating rounds (`lib/timing.py`), threads as Ultralytics' backend for the format sets
  them.
- INT8: `quantize=8` with `data=` the shapes YAML (calibration on its training split, Ultralytics' `fraction`
  default), validated with Ultralytics' validator on the validation split at batch 1; PyTorch's mAP beside it.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (every default is the full measurement)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=report.RESULTS / "RESULTS_FORMATS.md", help="markdown report")
    parser.add_argument("--formats", nargs="+", default=[f.arg for f in FORMATS], choices=[f.arg for f in FORMATS],
                        metavar="FORMAT", help="Ultralytics format arguments (default: all 22)")
    parser.add_argument("--python", nargs="+", default=[], metavar="FORMAT=PATH",
                        help="the Python interpreter whose environment has a format's packages (default: this one)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (the zoo caches each model)")
    parser.add_argument("--zoo", type=Path, default=zoo.DEFAULT_ZOO, help="cache of trained models")
    parser.add_argument("--images", type=int, default=16, help="validation images compared with PyTorch")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="PyTorch threads")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per model and format")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds one format's child process may take")
    parser.add_argument("--update", action="store_true",
                        help="rerun only --formats and merge them into the existing JSON file and report")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the JSON file, run nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a child process: one format, JSON to --worker-out
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoints", nargs="+", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--names", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.interpreters = dict(item.split("=", 1) for item in args.python)
    except ValueError:
        parser.error(f"--python takes FORMAT=PATH pairs, got {args.python}")
    args.json = args.out.with_suffix(".json")
    return args


# ---------------------------------------------------------------- the child process: one format, both models


class LogLines(logging.Handler):
    """Collect Ultralytics' log messages (its logger does not propagate)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _plain(text: str) -> str:
    """``text`` without the terminal colour codes of Ultralytics' log."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _error(exc: BaseException) -> str:
    """The last line of an exception, without colour codes, for the table."""
    text = _plain(f"{type(exc).__name__}: {exc}").strip().splitlines()
    return text[-1][:300] if text else type(exc).__name__


def export(checkpoint: Path, fmt: str, folder: Path, **kwargs) -> tuple[Path, list[str], float]:
    """Export a copy of ``checkpoint`` in ``folder`` as ``yolo export`` does; return the file, the log and seconds."""
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    folder.mkdir(parents=True, exist_ok=True)
    source = Path(shutil.copy(checkpoint, folder / checkpoint.name))
    handler = LogLines()
    LOGGER.addHandler(handler)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = YOLO(str(source)).export(format=fmt, imgsz=RECIPE["imgsz"], batch=1, **kwargs)
    finally:
        LOGGER.removeHandler(handler)
    if not path:
        failure = next((line for line in reversed(handler.lines) if "export failure" in line or "ERROR" in line), "")
        raise RuntimeError(f"Ultralytics returned no file: {failure}")
    return Path(path), handler.lines, time.perf_counter() - started


def fusion_line(lines: list[str]) -> str:
    """The plugin's fusion-check line of an export log, colour codes removed ("" for a model without Rep blocks)."""
    found = [_plain(line) for line in lines if "EfficientRep:" in line and "fused" in line]
    return found[0].strip() if found else ""


def measure_model(fmt: Format, name: str, checkpoint: Path, data: Path, images: list[Path], workdir: Path) -> dict:
    """Export one model to one format and check it; return its record (with ``_call``, the call to time, if it ran)."""
    from ultralytics import YOLO
    from ultralytics.engine.exporter import FP32_UNSUPPORTED_FORMATS
    from ultralytics.nn.autobackend import AutoBackend

    from lib import format_graphs
    from lib.format_checks import detection_difference, raw_difference, results_from_raw
    from yolov8_efficientrep import fuse_model

    record: dict = {"model": name}
    folder = workdir / fmt.arg / name
    # formats that only export quantized (Edge TPU, IMX, ...) calibrate on the shapes set, not on Ultralytics' coco8
    calibration = {"data": str(data)} if fmt.arg in FP32_UNSUPPORTED_FORMATS else {}
    try:
        path, lines, seconds = export(checkpoint, fmt.arg, folder, **calibration)
    except Exception as exc:  # any exporter failure is the measurement
        record.update(exported=False, error=_error(exc))
        return record
    size = sum(f.stat().st_size for f in ([path] if path.is_file() else path.rglob("*")) if f.is_file())
    record.update(exported=True, file=path.name, seconds=round(seconds, 1), megabytes=round(size / 1e6, 1),
                  fusion_check=fusion_line(lines))
    reference = fuse_model(YOLO(str(checkpoint)).model.float().eval(), inplace=False)
    record["pytorch_convs"] = format_graphs.fused_conv_count(reference)
    try:
        count = format_graphs.read(fmt.arg, path)
        record["graph"] = None if count is None else {"convs": count.convs, "norms": count.norms,
                                                      "source": count.source,
                                                      "fused": count.fused(record["pytorch_convs"])}
    except Exception as exc:
        record["graph"] = {"error": _error(exc)}
    if fmt.blocked:
        return record
    try:
        batch = image_batch(images)
        if fmt.arg == "rknn":  # Ultralytics' RKNN backend needs the board: the toolkit's simulator instead
            from lib.rknn_simulator import simulator

            backend = simulator(folder / f"{checkpoint.stem}.onnx")  # the ONNX file the RKNN export built from
            record["runtime"] = "rknn-toolkit2 simulator (FP16, rk3588)"
        else:
            backend = AutoBackend(str(path), device=torch.device("cpu"))
        with torch.inference_mode():
            ref = [first_output(reference(batch[i:i + 1])) for i in range(len(batch))]
            out = [first_output(backend(batch[i:i + 1])) for i in range(len(batch))]
        if ref[0].shape == out[0].shape:
            record["raw"] = raw_difference(ref, out).__dict__
        else:  # IMX's graph ends in its own NMS: no raw tensor to compare, only the detections
            record["raw_note"] = f"no raw tensor: the exported graph outputs {out[0].shape} after its own NMS"
        if fmt.arg == "rknn":  # the same NMS on both sides' raw outputs
            theirs, mine = results_from_raw(ref, reference.names), results_from_raw(out, reference.names)
        else:
            predict = {"imgsz": RECIPE["imgsz"], "verbose": False, "device": "cpu"}
            mine = YOLO(str(path), task="detect").predict([str(p) for p in images], **predict)
            theirs = YOLO(str(checkpoint)).predict([str(p) for p in images], **predict)
        record["detections"] = detection_difference(theirs, mine).as_dict()
        record["runs"] = True
        x = batch[:1]
        record["_call"] = lambda: backend(x)
    except Exception as exc:
        record.update(runs=False, run_error=_error(exc))
        traceback.print_exc()
    return record


def int8_record(fmt: Format, name: str, checkpoint: Path, data: Path, workdir: Path) -> dict:
    """Export ``quantize=8`` and validate it on the validation split; return its mAP or the failure."""
    from ultralytics.engine.exporter import export_formats

    from lib.int8_runtimes import validate

    table = export_formats()
    takes = dict(zip(table["Argument"], table["Arguments"]))[fmt.arg]
    calibration = {"data": str(data)} if "data" in takes else {}  # MNN's INT8 is weight-only: no calibration
    try:
        path, _, _ = export(checkpoint, fmt.arg, workdir / f"{fmt.arg}-int8" / name, quantize=8, **calibration)
        if fmt.arg not in INT8_MAP:
            return {"exported": True, "calibrated": bool(calibration), "validated": False}
        return {"exported": True, "calibrated": bool(calibration), "validated": True,
                **validate(path, data, RECIPE["imgsz"])}
    except Exception as exc:
        return {"exported": False, "error": _error(exc)}


def ncnn_study(folders: dict[str, Path], checkpoints: dict[str, Path], images: list[Path], threads: int) -> dict:
    """NCNN's precision options against PyTorch per model, and the fused models' weight and activation ranges."""
    from ultralytics import YOLO

    from lib import ncnn_precision
    from yolov8_efficientrep import fuse_model

    study = {}
    batch = image_batch(images)
    for name, checkpoint in checkpoints.items():
        if name not in folders:
            continue
        model = fuse_model(YOLO(str(checkpoint)).model.float().eval(), inplace=False)
        variants = ncnn_precision.variant_differences(folders[name], model, batch, threads)
        variants.update(ncnn_precision.half_precision_differences(model, batch))
        study[name] = {"ranges": ncnn_precision.ranges(model, batch),
                       "variants": {k: v.__dict__ for k, v in variants.items()}}
    return study


def package_versions(fmt: Format) -> dict[str, str]:
    """The installed distributions that provide a format's modules, with their versions."""
    from importlib import metadata

    providers = metadata.packages_distributions()
    return {dist: metadata.version(dist) for name in fmt.modules for dist in providers.get(name, [])}


def onnx2tf_sample(data_root: Path, folder: Path) -> None:
    """Write the sample file Ultralytics' TensorFlow exports download for onnx2tf (``calibration_image_sample_data_
    20x128x128x3_float32.npy``, a GitHub asset: offline the export stops) from 20 generated training images instead."""
    import cv2
    import numpy as np

    images = sorted((data_root / "images" / "train").glob("*.png"))[:20]
    pixels = [cv2.resize(cv2.imread(str(p))[:, :, ::-1], (128, 128)) / 255.0 for p in images]
    np.save(folder / "calibration_image_sample_data_20x128x128x3_float32.npy", np.stack(pixels).astype(np.float32))


def worker(args: argparse.Namespace) -> None:
    """One format, both models: write the records as JSON to ``--worker-out``."""
    fmt = BY_ARG[args.worker]
    torch.set_num_threads(args.threads)
    result: dict = {"format": fmt.arg, "python": sys.executable}
    missing = fmt.missing()
    result["installed"] = not missing
    result["versions"] = package_versions(fmt)
    if missing:
        result["missing"] = missing
        args.worker_out.write_text(json.dumps(result, indent=1))
        return
    images = validation_images(args.data.parent, args.images)
    workdir = Path(tempfile.mkdtemp(prefix=f"formats-{fmt.arg}-"))
    os.chdir(workdir)  # Ultralytics' TensorFlow exports look for onnx2tf's sample file in the working directory
    if fmt.venv == "tf":
        onnx2tf_sample(args.data.parent, workdir)
    try:
        checkpoints = dict(zip(args.names, args.checkpoints))
        records = [measure_model(fmt, n, c, args.data, images, workdir) for n, c in checkpoints.items()]
        calls = {r["model"]: r.pop("_call") for r in records if "_call" in r}
        if calls:
            log(f"{fmt.title}: timing {', '.join(calls)}")
            for name, timing in timed_interleaved(calls, args.warmup, args.runs).items():
                next(r for r in records if r["model"] == name)["latency"] = timing.__dict__
        if fmt.int8 and fmt.arg in INT8_MAP | {"rknn"}:
            for record in records:
                log(f"{fmt.title}: INT8 export and validation of {record['model']}")
                record["int8"] = int8_record(fmt, record["model"], checkpoints[record["model"]], args.data, workdir)
        if fmt.arg == "ncnn":
            folders = {r["model"]: workdir / "ncnn" / r["model"] / r["file"] for r in records if r.get("exported")}
            result["ncnn_precision"] = ncnn_study(folders, checkpoints, images, args.threads)
        result["models"] = records
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.worker_out.write_text(json.dumps(result, indent=1, default=str))


# ---------------------------------------------------------------- the parent: train, run each format, write


def run_format(fmt: Format, args: argparse.Namespace, checkpoints: dict[str, Path], data: Path, tmp: Path) -> dict:
    """Run one format's child process; return its JSON record (or the child's failure)."""
    python = args.interpreters.get(fmt.arg, sys.executable)
    out = tmp / f"{fmt.arg}.json"
    command = [python, str(Path(__file__).resolve()), "--worker", fmt.arg, "--worker-out", str(out), "--data",
               str(data), "--images", str(args.images), "--threads", str(args.threads), "--warmup",
               str(args.warmup), "--runs", str(args.runs), "--names", *checkpoints,
               "--checkpoints", *map(str, checkpoints.values())]
    log(f"{fmt.title}: child process {python}")
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"format": fmt.arg, "python": python, "installed": True, "error": f"timed out after {args.timeout} s"}
    (tmp / f"{fmt.arg}.log").write_text(child.stdout + child.stderr)
    if child.returncode or not out.is_file():
        tail = [line for line in (child.stderr or child.stdout).strip().splitlines() if line.strip()][-1:]
        return {"format": fmt.arg, "python": python, "installed": True,
                "error": f"child process exit status {child.returncode}: {tail[0][:300] if tail else ''}"}
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> None:
    """Train or fetch both models, run every format, write the report and the JSON file."""
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    marker = report.marker(Path(__file__).name)
    if args.report_only:  # the JSON file is the input: only the report must be this benchmark's
        report.refuse_to_overwrite_foreign(args.out, args.out, marker)
        return write_report(args, marker, json.loads(args.json.read_text()))
    report.refuse_to_overwrite_foreign(args.out, args.json, marker)
    torch.set_num_threads(args.threads)
    from lib import format_tables
    from lib.int8_runtimes import validate

    checkpoints = {Path(cfg).stem: zoo.trained(cfg, args.epochs, zoo=args.zoo, log=log).best for cfg in MODELS}
    data = zoo.dataset(args.zoo)
    pytorch_map = {name: validate(c, data, RECIPE["imgsz"]) for name, c in checkpoints.items()}
    machine = {**report.machine_info(args.threads), "CPU flags (lscpu)": report.all_cpu_flags(),
               "load average at start": " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1 / 5 / 15 min; other "
               "work on the machine slows the timings, the same rounds keep the two models' ratio fair)"}
    earlier = json.loads(args.json.read_text()) if args.update and args.json.is_file() else {}
    if earlier:  # the first run's machine, with this run's date, command and load added
        machine = {**earlier.get("machine", machine), **{f"{key} ({', '.join(args.formats)} rerun)": machine[key]
                                            for key in ("date", "command", "load average at start")}}
    measured = {"machine": machine, "pytorch_map": pytorch_map,
                "formats": [r for r in earlier.get("formats", []) if r["format"] not in args.formats]}
    with tempfile.TemporaryDirectory(prefix="deployment-formats-") as tmp:
        for fmt in (BY_ARG[a] for a in args.formats):
            measured["formats"].append(run_format(fmt, args, checkpoints, data, Path(tmp)))
            measured["formats"].sort(key=lambda r: [f.arg for f in FORMATS].index(r["format"]))
            done = next(r for r in measured["formats"] if r["format"] == fmt.arg)
            log(f"{fmt.title}: {format_tables.one_line(done)}")
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(measured, indent=1))  # after each format: an interrupted run keeps its part
    write_report(args, marker, measured)


def write_report(args: argparse.Namespace, marker: str, measured: dict) -> None:
    """Write the markdown report of ``measured`` (the JSON file's content: machine, PyTorch mAP, formats)."""
    from lib import format_tables

    results, pytorch_map = measured["formats"], measured["pytorch_map"]
    info = measured.get("machine") or {**report.machine_info(args.threads),
                                       "CPU flags (lscpu)": report.all_cpu_flags()}
    sections = [
        marker,
        report.header("Deployment formats: EfficientRep-n and yolov8n in every Ultralytics export format", info,
                      args.warmup, args.runs),
        "## Formats\n\n" + format_tables.format_table(results, pytorch_map),
        "## Per model\n\n" + format_tables.detail_table(results),
        "## NCNN's precision options (raw outputs against PyTorch)\n\n" + format_tables.ncnn_table(results),
        "## Packages\n\n" + format_tables.versions_table(results),
        "## How it was measured\n\n" + NOTES,
    ]
    report.write(args.out, sections)
    log(f"wrote {args.out} and {args.json}")


if __name__ == "__main__":
    main()
