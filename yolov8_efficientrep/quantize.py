"""INT8 export of models with plugin layers: ONNX Runtime settings that quantize every fused conv, and graph checks.

Ultralytics 8.4's ``format=onnx quantize=8`` quantizes with ONNX Runtime's ``quantize_static`` defaults: int8
activations and per-tensor int8 weights, on Conv/Gemm/MatMul nodes only. On x86, ONNX Runtime turns a
``DequantizeLinear -> Conv -> QuantizeLinear`` group into a ``QLinearConv`` only for uint8 activations
(``QDQIsInt8Allowed()`` is false outside ARM builds), so a conv whose int8 pairs ONNX Runtime does not rewrite to
uint8 itself runs in float32 between quantize and dequantize nodes: 44 of 58 convs become ``QLinearConv`` in the
fused yolov8n-efficientrep at 640 (13 with ``simplify=False``), 7 of 64 in yolov8n, whose INT8 file is then slower
than its FP32 one.

The plugin's route (``quantize_onnx_int8``), for its own models (measured on the fused yolov8n-efficientrep: convs
at 640 px; mAP50-95 of a 10-epoch model on the generated shapes set, 0.2966 in FP32 ONNX):

- ``quant_pre_process`` (ONNX Runtime's shape inference and graph pre-optimization) first: on an export that was not
  simplified (``simplify=False``) only 17 of the 57 quantized convs become ``QLinearConv`` without it, all with it;
- uint8 activations, so that ONNX Runtime's x86 kernels take every conv;
- per-channel int8 weights: a fused RepVGG kernel sums three branches, each scaled per output channel by its own
  BatchNorm, so the channels' ranges differ widely and one scale per tensor leaves the small channels few levels
  (the quantization error the QARepVGG paper analyses): mAP50-95 0.2940 per channel, 0.2898 per tensor;
- 7-bit weights (``reduce_range``): on x86 CPUs without VNNI, ONNX Runtime's ``QLinearConv`` multiplies uint8 by
  int8 with an instruction that adds pairs of products in 16 bits, and full-range weights make those sums saturate
  (class scores off by up to 0.41 from ONNX Runtime's own unfused QDQ arithmetic on a Xeon without VNNI; mAP50-95
  0.2940). Half the weight range keeps every pair below 2^15: 0.2962 (Ultralytics' settings: 0.2937). An exported
  file may run on any x86 CPU;
- the DFL's expectation conv (the 1x1 conv after the box head's Softmax) stays float, as Ultralytics' OpenVINO INT8
  export keeps it and as its ONNX code means to keep the box decode; 0.01% of the work.

Everything else is Ultralytics' choice (QDQ format, MinMax calibration, only Conv/Gemm/MatMul quantized so the box
decode stays float). ``YOLOV8_EFFICIENTREP_ORT_INT8`` picks the route: ``auto`` (default: the plugin's route for
models with plugin layers, Ultralytics' own for every other model), ``plugin`` (every model) or ``ultralytics``
(every model, e.g. on ARM, where ONNX Runtime also fuses int8 activations).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

ROUTE_VARIABLE = "YOLOV8_EFFICIENTREP_ORT_INT8"
ROUTES = ("auto", "plugin", "ultralytics")
QUANTIZED_OP_TYPES = {"Conv", "Gemm", "MatMul"}  # as Ultralytics: the head's box decode stays float
_PASS_THROUGH = {"QuantizeLinear", "DequantizeLinear", "FakeQuantize", "Convert"}  # quantization plumbing
_OV_PRESERVING = {"Concat", "Split", "VariadicSplit", "MaxPool", "Interpolate", "Reshape", "Transpose", "Relu"}


def ort_int8_route(uses_plugin: bool) -> str:
    """Return ``"plugin"`` or ``"ultralytics"``: a model's ONNX INT8 route, by ``YOLOV8_EFFICIENTREP_ORT_INT8``.

    Raises:
        ValueError: The variable holds something other than ``auto``, ``plugin`` or ``ultralytics``.
    """
    route = os.environ.get(ROUTE_VARIABLE, "auto").strip().lower() or "auto"
    if route not in ROUTES:
        raise ValueError(f"{ROUTE_VARIABLE}={route!r}: use one of {', '.join(ROUTES)}")
    return route if route != "auto" else "plugin" if uses_plugin else "ultralytics"


def quantize_onnx_int8(onnx_file: str | Path, output_file: str | Path, dataset: Iterable,
                       transform_fn: Callable, input_name: str = "images", prefix: str = "") -> str:
    """Quantize an FP32 ONNX file to INT8 (QDQ) with the plugin's route; Ultralytics' ``onnx_int8_quantize`` signature.

    Args:
        onnx_file (str | Path): The FP32 ONNX file (Ultralytics' export, metadata included; it is kept).
        output_file (str | Path): The INT8 ONNX file to write.
        dataset (Iterable): Calibration batches, as Ultralytics' INT8 calibration dataloader yields them.
        transform_fn (Callable): Turns a batch into the float32 NCHW array the graph takes.
        input_name (str): The graph input to feed.
        prefix (str): Prefix for log messages.

    Returns:
        (str): ``output_file``.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from ultralytics.utils import LOGGER
    from ultralytics.utils.export.onnx import onnx_calibration_reader

    LOGGER.info(f"{prefix} quantizing INT8 with ONNX Runtime, yolov8-efficientrep's route: pre-processed, uint8 "
                f"activations, per-channel 7-bit weights, DFL conv float ({ROUTE_VARIABLE}=ultralytics for "
                f"Ultralytics' settings)")
    with tempfile.TemporaryDirectory(prefix="efficientrep-int8-") as tmp:
        prepared = Path(tmp) / "preprocessed.onnx"
        quant_pre_process(str(onnx_file), str(prepared))
        graph = onnx.load(str(prepared), load_external_data=False).graph
        producer = {output: node.op_type for node in graph.node for output in node.output}
        exclude = [node.name for node in graph.node if node.op_type not in QUANTIZED_OP_TYPES
                   or producer.get(node.input[0]) == "Softmax"]  # the DFL's expectation conv
        quantize_static(str(prepared), str(output_file), onnx_calibration_reader(dataset, transform_fn, input_name),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, reduce_range=True, nodes_to_exclude=exclude)
    return str(output_file)


class Int8Graph(NamedTuple):
    """What an INT8 graph holds, in its file and as its runtime runs it."""

    convs: int  # convolutions in the file (ConvTranspose excluded)
    quantized: int  # of them, quantized in the file: Q/DQ (ONNX) or FakeQuantize (OpenVINO) on input and weights
    runtime_quantized: int  # convolutions the runtime runs in 8 bits (ONNX Runtime QLinearConv; OpenVINO u8/i8)
    runtime_float: list[str]  # names of the convolutions the runtime runs in floating point
    leftovers: list[str]  # BatchNorm nodes and Adds of two conv outputs (an unfused Rep block's branches)

    def summary(self) -> str:
        """Return a one-line account for the export log (up to 3 float convs named)."""
        names = ", ".join(self.runtime_float[:3]) + (", ..." if len(self.runtime_float) > 3 else "")
        floats = f" ({len(self.runtime_float)} float: {names})" if self.runtime_float else ""
        left = f"; NOT FUSED: {', '.join(self.leftovers)}" if self.leftovers else "; no BatchNorm, no Rep branch"
        return (f"{self.convs} convs, {self.quantized} quantized in the file, {self.runtime_quantized} run in INT8"
                f"{floats}{left}")


def _trace(name: str, producer: dict, skip: set[str]) -> str | None:
    """Return the op type that produces tensor ``name``, looking through quantization plumbing."""
    node = producer.get(name)
    while node is not None and node[0] in skip:
        node = producer.get(node[1])
    return node[0] if node is not None else None


def onnx_int8_graph(path: str | Path) -> Int8Graph:
    """Check an INT8 ONNX file: QDQ around each Conv in the file, ``QLinearConv`` after ONNX Runtime's optimization.

    The runtime count comes from the graph ONNX Runtime's CPU provider builds at session start (extended
    optimizations: the QDQ fusions, without hardware-specific layouts).
    """
    import onnx
    import onnxruntime

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {output: (node.op_type, node.input[0] if node.input else "") for node in graph.node
                for output in node.output}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    convs = [node for node in graph.node if node.op_type == "Conv"]
    quantized = sum(all(producer.get(name, ("",))[0] == "DequantizeLinear" for name in node.input[:2])
                    and consumers.get(node.output[0]) == ["QuantizeLinear"] for node in convs)
    leftovers = [f"{node.op_type} {node.name}" for node in graph.node if node.op_type == "BatchNormalization"
                 or (node.op_type == "Add" and all(_trace(name, producer, _PASS_THROUGH) == "Conv"
                                                   for name in node.input))]

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    with tempfile.TemporaryDirectory(prefix="efficientrep-ort-") as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath, load_external_data=False).graph
    runtime = [node for node in optimized.node if node.op_type in {"Conv", "QLinearConv", "FusedConv"}]
    return Int8Graph(len(convs), quantized, sum(node.op_type == "QLinearConv" for node in runtime),
                     [node.name for node in runtime if node.op_type != "QLinearConv"], leftovers)


def _ov_source(value):
    """Return the OpenVINO op that feeds ``value``, looking through quantization plumbing and weight scaling."""
    node = value.get_node()
    while node.get_type_name() in _PASS_THROUGH | {"Multiply", "Subtract", "Reshape"} and node.inputs():
        node = node.input_value(0).get_node()
    return node


def _ov_quantized(value) -> bool:
    """Return True if ``value`` comes from a FakeQuantize, directly or through ops that keep the quantized values
    (NNCF quantizes a Concat's or a split's inputs rather than its outputs)."""
    node = value.get_node()
    if node.get_type_name() == "FakeQuantize":
        return True
    inputs = [v for v in node.input_values() if v.get_node().get_type_name() != "Constant"]
    return node.get_type_name() in _OV_PRESERVING and bool(inputs) and all(_ov_quantized(v) for v in inputs)


def openvino_int8_graph(xml: str | Path) -> Int8Graph:
    """Check an INT8 OpenVINO IR: FakeQuantize on each convolution's input and int8 weights in the file, and the
    precision OpenVINO's CPU plugin runs each convolution in (its compiled model's ``runtimePrecision``)."""
    import openvino

    core = openvino.Core()
    model = core.read_model(str(xml))
    ops = model.get_ordered_ops()
    convs = [op for op in ops if op.get_type_name() in {"Convolution", "GroupConvolution"}]
    quantized = 0
    for conv in convs:
        weights = _ov_source(conv.input_value(1))
        int8_weights = weights.get_type_name() == "FakeQuantize" or (
            weights.get_type_name() == "Constant" and weights.get_element_type().get_type_name() in {"i8", "u8"})
        quantized += _ov_quantized(conv.input_value(0)) and int8_weights
    leftovers = [f"{op.get_type_name()} {op.get_friendly_name()}" for op in ops
                 if op.get_type_name() == "BatchNormInference" or (op.get_type_name() == "Add" and all(
                     _ov_source(value).get_type_name() in {"Convolution", "GroupConvolution"}
                     for value in op.input_values()))]

    precision = {}
    for op in core.compile_model(model, "CPU").get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) == "Convolution":
            precision[op.get_friendly_name()] = info["runtimePrecision"].astype(str).lower()
    return Int8Graph(len(convs), quantized, sum(p in {"u8", "i8"} for p in precision.values()),
                     [name for name, p in precision.items() if p not in {"u8", "i8"}], leftovers)
