"""INT8 and OpenVINO for the benchmarks: one model in every runtime and precision, exported by Ultralytics.

Each file comes from Ultralytics' own exporter, as ``yolo export`` writes it (fused, checked by the plugin). The ONNX
Runtime INT8 file is made twice: with Ultralytics' settings and with the plugin's route (chosen with
``YOLOV8_EFFICIENTREP_ORT_INT8``, whatever the model). Also here: the single-conv peak in each runtime and precision,
and ONNX Runtime's kernel profile of a session.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Tuple

import numpy as np
import torch
from ultralytics import YOLO

from yolov8_efficientrep.quantize import ORT_INT8_ROUTE_VARIABLE, ort_int8_route, quantize_onnx_int8

from .environment import environment
from .latency import eager_forward, ort_session, peak_conv
from .lineup import Entry
from .timing import Timing

PYTORCH, ORT, OPENVINO = "PyTorch eager", "ONNX Runtime", "OpenVINO"


@dataclass(frozen=True)
class Variant:
    """One runtime and precision a model runs in."""

    key: str
    runtime: str
    precision: str
    label: str  # column header
    route: str | None = None  # ONNX Runtime INT8: "ultralytics" or "plugin"

    @property
    def peak(self) -> str:
        """The key of the peak conv this variant is measured against: its runtime's, in its precision."""
        return "ort-int8" if self.key.startswith("ort-int8") else self.key


VARIANTS = (
    Variant("pytorch", PYTORCH, "FP32", "PyTorch FP32"),
    Variant("ort-fp32", ORT, "FP32", "ORT FP32"),
    Variant("ort-int8-ultralytics", ORT, "INT8", "ORT INT8, Ultralytics' settings", "ultralytics"),
    Variant("ort-int8-plugin", ORT, "INT8", "ORT INT8, plugin's route", "plugin"),
    Variant("ov-fp32", OPENVINO, "FP32", "OpenVINO FP32"),
    Variant("ov-int8", OPENVINO, "INT8", "OpenVINO INT8"),
)
Shape = Tuple[int, int]  # (batch, imgsz)


@dataclass
class ModelRun:
    """Everything measured for one model of the line-up.

    Attributes:
        entry (Entry): The model.
        uses_plugin (bool): It has plugin layers (so ``yolo export quantize=8`` takes the plugin's route).
        eager (torch.nn.Module): The fused PyTorch model.
        gflops (dict): GFLOPs of one image per image size (Ultralytics' count).
        files (dict): ``(variant key, batch, imgsz) -> exported file``.
        latency (dict): ``(variant key, batch, imgsz) -> Timing``.
        graph_shape (Shape): The shape whose INT8 graphs are checked and profiled.
        graphs (dict): Variant key -> ``Int8Graph`` of its INT8 file at ``graph_shape``.
        profiles (dict): Variant key -> ``Profile`` of its ONNX Runtime session at ``graph_shape``.
    """

    entry: Entry
    uses_plugin: bool
    eager: torch.nn.Module
    gflops: dict[int, float] = field(default_factory=dict)
    files: dict[tuple[str, int, int], Path] = field(default_factory=dict)
    latency: dict[tuple[str, int, int], Timing] = field(default_factory=dict)
    graph_shape: Shape = (1, 640)
    graphs: dict[str, object] = field(default_factory=dict)
    profiles: dict[str, object] = field(default_factory=dict)

    @property
    def default_int8(self) -> str:
        """The ONNX Runtime INT8 variant a plain ``yolo export format=onnx quantize=8`` gives this model."""
        with environment(ORT_INT8_ROUTE_VARIABLE, None):
            return f"ort-int8-{ort_int8_route(self.uses_plugin)}"


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """Run a block in ``path``, where Ultralytics writes the export of a model built from a YAML."""
    old = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def export(model: YOLO, variant: Variant, batch: int, imgsz: int, data: Path, folder: Path, **calibration) -> Path:
    """Export ``model`` with Ultralytics' exporter for one variant and input shape into ``folder``; return the file.

    INT8 exports calibrate on ``data`` (its validation split, unless ``calibration`` passes other export arguments
    such as ``split`` and ``fraction``). Returns the ONNX file or the OpenVINO IR's ``.xml``.
    """
    fmt = "onnx" if variant.runtime == ORT else "openvino"
    quantize = {"INT8": 8}.get(variant.precision)
    int8 = {"data": str(data), **calibration} if quantize else {}
    with _working_directory(folder), environment(ORT_INT8_ROUTE_VARIABLE, variant.route), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript tracer's warnings about the head, once per export
        path = Path(model.export(format=fmt, imgsz=imgsz, batch=batch, quantize=quantize, verbose=False,
                                 **int8)).resolve()
    return path if fmt == "onnx" else next(path.glob("*.xml"))


def validate(path: Path, data: Path, imgsz: int) -> dict[str, float]:
    """mAP50-95 and mAP50 of a checkpoint or exported model from Ultralytics' validator (batch 1: static exports)."""
    metrics = YOLO(str(path), task="detect").val(data=str(data), imgsz=imgsz, batch=1, plots=False, verbose=False,
                                                 split="val")
    return {"mAP50-95": float(metrics.box.map), "mAP50": float(metrics.box.map50)}


def openvino_compiled(path: Path, threads: int) -> Callable[[np.ndarray], object]:
    """Compile an IR (or ONNX file) for OpenVINO's CPU plugin: float parts in float32, ``threads`` threads, latency."""
    import openvino

    return openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT":
                                                             "LATENCY", "INFERENCE_NUM_THREADS": threads})


def runner(runtime: str, path: Path, x: np.ndarray, threads: int) -> Callable[[], object]:
    """Return the call to time: one inference of an exported file on ``x`` in ``runtime`` (ONNX Runtime, OpenVINO)."""
    if runtime == ORT:
        session = ort_session(path, threads)
        feed = {session.get_inputs()[0].name: x}
        return lambda: session.run(None, feed)
    compiled = openvino_compiled(path, threads)
    request = compiled.create_infer_request()
    return lambda: request.infer({0: x})


def peak_calls(threads: int, workdir: Path) -> tuple[float, dict[str, Callable[[], object]]]:
    """Return the peak conv's GFLOPs per call and the call to time per variant key (one INT8 peak per runtime).

    The conv is ``latency.peak_conv``'s; its INT8 forms are quantized as the models are: ONNX Runtime's with the
    plugin's route (``QLinearConv``, uint8 x int8), OpenVINO's with NNCF.
    """
    import nncf
    import openvino

    conv, x, gflops = peak_conv()
    fp32 = workdir / "conv_peak.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(conv, (x,), str(fp32), dynamo=False, opset_version=17, input_names=["images"])
    int8 = workdir / "conv_peak_int8.onnx"
    quantize_onnx_int8(fp32, int8, [x.numpy()], lambda batch: batch)
    ov_int8 = workdir / "conv_peak_int8.xml"
    openvino.save_model(nncf.quantize(openvino.convert_model(str(fp32)), nncf.Dataset([x.numpy()]), subset_size=1),
                        str(ov_int8))
    feed = x.numpy()
    calls = {"pytorch": lambda: eager_forward(conv, x)}
    for key, runtime, path in (("ort-fp32", ORT, fp32), ("ort-int8", ORT, int8), ("ov-fp32", OPENVINO, fp32),
                               ("ov-int8", OPENVINO, ov_int8)):
        calls[key] = runner(runtime, path, feed, threads)
    return gflops, calls


QUANTIZED_CONV, FLOAT_CONVS, QDQ = "QLinearConv", {"Conv", "FusedConv", "NchwcConv"}, {"QuantizeLinear",
                                                                                        "DequantizeLinear"}


@dataclass
class Profile:
    """Where an ONNX Runtime session spends its kernel time."""

    quantized_convs: int  # QLinearConv nodes run
    float_convs: int  # float conv nodes run
    share: dict[str, float]  # kernel time share: "INT8 conv", "float conv", "quantize/dequantize", "other"


def profile_ort(path: Path, x: np.ndarray, threads: int, runs: int, workdir: Path, warmup: int = 3) -> Profile:
    """Profile ``runs`` runs of ``path`` in ONNX Runtime (after ``warmup`` runs); sum the kernel time by op type."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling, options.profile_file_prefix = True, str(workdir / f"profile-{path.stem}")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    for _ in range(warmup + runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    starts = sorted(event["ts"] for event in events if event.get("name") == "model_run")
    timed_from = starts[warmup]  # the profiler records every run; the warm-up runs are left out
    time: collections.Counter = collections.Counter()
    nodes = collections.defaultdict(set)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= timed_from:
            op = event["args"]["op_name"]
            time[op] += event["dur"]
            nodes[op].add(event["name"])
    total = sum(time.values()) or 1
    groups = {"INT8 conv": {QUANTIZED_CONV}, "float conv": FLOAT_CONVS, "quantize/dequantize": QDQ}
    share = {name: sum(time[op] for op in ops) / total for name, ops in groups.items()}
    share["other"] = 1 - sum(share.values())
    return Profile(len(nodes[QUANTIZED_CONV]), sum(len(nodes[op]) for op in FLOAT_CONVS), share)
