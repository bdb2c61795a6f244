"""Inspect exported graphs: what fusion should have removed, and which convolutions run in INT8.

One scan (``unfused_layers``) finds what fusion leaves behind in any graph: BatchNorm nodes, and Adds of two
convolution outputs (an unfused Rep block's branches), looking through quantization plumbing; it reads ONNX files
(float or QDQ INT8) and OpenVINO IRs alike through small adapters. The INT8 checks also ask each runtime how it runs
every convolution.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

PASS_THROUGH = {"QuantizeLinear", "DequantizeLinear", "FakeQuantize", "Convert"}  # quantization plumbing
BATCH_NORM = {"BatchNormalization", "BatchNormInference"}  # ONNX, OpenVINO
CONVOLUTION = {"Conv", "Convolution", "GroupConvolution"}  # ONNX, OpenVINO
_OV_WEIGHT_PLUMBING = {"Multiply", "Subtract", "Reshape"}  # how OpenVINO scales int8 weights back
_OV_PRESERVING = {"Concat", "Split", "VariadicSplit", "MaxPool", "Interpolate", "Reshape", "Transpose", "Relu"}


class Node(NamedTuple):
    """A graph node as the scan sees it: its op type, its name, and the op types that produce its inputs."""

    op_type: str
    name: str
    sources: tuple[str, ...]  # op type producing each input, looking through quantization plumbing


def unfused_layers(nodes: Iterable[Node]) -> list[str]:
    """Return ``"<op type> <name>"`` of every BatchNorm, and of every Add that sums two convolution outputs."""
    return [f"{node.op_type} {node.name}" for node in nodes if node.op_type in BATCH_NORM
            or (node.op_type == "Add" and len(node.sources) == 2 and set(node.sources) <= CONVOLUTION)]


def _onnx_nodes(graph) -> list[Node]:
    """The scan's view of an ONNX graph."""
    producer = {output: node for node in graph.node for output in node.output}

    def source(name: str) -> str:
        node = producer.get(name)
        while node is not None and node.op_type in PASS_THROUGH and node.input:
            node = producer.get(node.input[0])
        return node.op_type if node is not None else ""

    return [Node(node.op_type, node.name, tuple(source(name) for name in node.input)) for node in graph.node]


def onnx_unfused_nodes(path: str | Path) -> list[str]:
    """Return the nodes of an ONNX file (float or QDQ INT8) that fusion should have removed; empty when fully fused.

    Needs the ``onnx`` package.
    """
    import onnx

    return unfused_layers(_onnx_nodes(onnx.load(str(path), load_external_data=False).graph))


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


def onnx_int8_graph(path: str | Path) -> Int8Graph:
    """Check an INT8 ONNX file: QDQ around each Conv in the file, ``QLinearConv`` after ONNX Runtime's optimization.

    The runtime count comes from the graph ONNX Runtime's CPU provider builds at session start (extended
    optimizations: the QDQ fusions, without hardware-specific layouts).
    """
    import onnx
    import onnxruntime

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {output: node.op_type for node in graph.node for output in node.output}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    convs = [node for node in graph.node if node.op_type == "Conv"]
    quantized = sum(all(producer.get(name) == "DequantizeLinear" for name in node.input[:2])
                    and consumers.get(node.output[0]) == ["QuantizeLinear"] for node in convs)

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    with tempfile.TemporaryDirectory(prefix="efficientrep-ort-") as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath, load_external_data=False).graph
    runtime = [node for node in optimized.node if node.op_type in {"Conv", "QLinearConv", "FusedConv"}]
    return Int8Graph(len(convs), quantized, sum(node.op_type == "QLinearConv" for node in runtime),
                     [node.name for node in runtime if node.op_type != "QLinearConv"],
                     unfused_layers(_onnx_nodes(graph)))


def qat_onnx_graph(path: str | Path) -> Int8Graph:
    """Check the ONNX file of a quantization-aware-trained model, as OpenVINO's CPU plugin runs it.

    ModelOpt's QAT export puts quantize/dequantize pairs on each convolution's input and weights but not on its output,
    so ONNX Runtime forms no ``QLinearConv`` and runs the graph in float; OpenVINO reads the ``.onnx`` itself and runs
    those convolutions in INT8. Quantized in the file: input and weights dequantized; run in INT8: OpenVINO's CPU plugin's
    count (``openvino_int8_graph``, which needs ``openvino``).
    """
    import onnx

    graph = openvino_int8_graph(path)
    onnx_graph = onnx.load(str(path), load_external_data=False).graph
    producer = {output: node.op_type for node in onnx_graph.node for output in node.output}
    convs = [node for node in onnx_graph.node if node.op_type == "Conv"]
    quantized = sum(all(producer.get(name) == "DequantizeLinear" for name in node.input[:2]) for node in convs)
    return graph._replace(convs=len(convs), quantized=quantized, leftovers=unfused_layers(_onnx_nodes(onnx_graph)))


def _ov_source(value, skip: set[str]):
    """Return the OpenVINO op that feeds ``value``, looking through the op types in ``skip``."""
    node = value.get_node()
    while node.get_type_name() in skip and node.inputs():
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


def _ov_nodes(ops: Iterable, source: Callable) -> list[Node]:
    """The scan's view of OpenVINO ops."""
    return [Node(op.get_type_name(), op.get_friendly_name(),
                 tuple(source(value).get_type_name() for value in op.input_values())) for op in ops]


def openvino_int8_graph(xml: str | Path) -> Int8Graph:
    """Check an INT8 OpenVINO IR: FakeQuantize on each convolution's input and int8 weights in the file, and the
    precision OpenVINO's CPU plugin runs each convolution in (its compiled model's ``runtimePrecision``)."""
    import openvino

    core = openvino.Core()
    model = core.read_model(str(xml))
    ops = model.get_ordered_ops()
    convs = [op for op in ops if op.get_type_name() in {"Convolution", "GroupConvolution"}]
    weight_plumbing = PASS_THROUGH | _OV_WEIGHT_PLUMBING
    quantized = 0
    for conv in convs:
        weights = _ov_source(conv.input_value(1), weight_plumbing)
        int8_weights = weights.get_type_name() == "FakeQuantize" or (
            weights.get_type_name() == "Constant" and weights.get_element_type().get_type_name() in {"i8", "u8"})
        quantized += _ov_quantized(conv.input_value(0)) and int8_weights

    precision = {}
    for op in core.compile_model(model, "CPU").get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) == "Convolution":
            precision[op.get_friendly_name()] = info["runtimePrecision"].astype(str).lower()
    leftovers = unfused_layers(_ov_nodes(ops, lambda value: _ov_source(value, weight_plumbing)))
    return Int8Graph(len(convs), quantized, sum(p in {"u8", "i8"} for p in precision.values()),
                     [name for name, p in precision.items() if p not in {"u8", "i8"}], leftovers)
