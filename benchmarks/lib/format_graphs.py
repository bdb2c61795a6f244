"""What an exported graph holds, read from the file each format writes: its convolutions and any BatchNorm left.

A fused EfficientRep network has exactly as many convolutions as the fused PyTorch model's ``nn.Conv2d`` modules: each
RepVGG block is one 3x3 conv. An unfused block would add a 1x1 branch conv (and a BatchNorm for its identity
branch), so "same conv count, no BatchNorm" is the check that no training branch and no branch ``Add`` survived.
Formats whose files are opaque here (a compiled Core ML or vendor binary) return None.
"""

from __future__ import annotations

import collections
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

CONV_NAMES = {"Conv", "Convolution", "ConvolutionDepthWise", "GroupConvolution", "CONV_2D", "DEPTHWISE_CONV_2D",
              "conv2d", "depthwise_conv2d", "_convolution", "Conv2D", "DepthwiseConv2dNative", "ConvolutionDepthwise"}
NORM_NAMES = {"BatchNormalization", "BatchNorm", "batch_norm", "FusedBatchNormV3", "BatchNormInference"}


@dataclass(frozen=True)
class GraphCount:
    """Convolutions and BatchNorms counted in an exported file, with where they were read."""

    convs: int
    norms: int
    source: str  # which file or representation was read

    def fused(self, expected: int) -> bool:
        """The graph holds ``expected`` convolutions (the fused model's) and no BatchNorm."""
        return self.convs == expected and self.norms == 0


def fused_conv_count(model: nn.Module) -> int:
    """Return the number of ``nn.Conv2d`` modules of a fused PyTorch model (what every exported graph should hold)."""
    return sum(isinstance(module, nn.Conv2d) for module in model.modules())


def _count(ops: collections.Counter, source: str) -> GraphCount:
    """Sum the conv and BatchNorm op names of a Counter of op names."""
    return GraphCount(sum(n for op, n in ops.items() if op in CONV_NAMES),
                      sum(n for op, n in ops.items() if op in NORM_NAMES), source)


def onnx_ops(path: Path) -> GraphCount:
    """Node types of an ONNX file."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return _count(collections.Counter(node.op_type for node in graph.node), path.name)


def torchscript_ops(path: Path) -> GraphCount:
    """``aten::_convolution``/``aten::conv2d`` and ``aten::batch_norm`` calls of a TorchScript file's inlined graph."""
    import torch

    graph = torch.jit.load(str(path), map_location="cpu").inlined_graph
    ops = collections.Counter(node.kind().split("::")[-1] for node in graph.nodes())
    ops["_convolution"] += ops.pop("conv2d", 0)
    return _count(ops, f"{path.name} (inlined graph)")


def openvino_ops(folder: Path) -> GraphCount:
    """Layer types of an OpenVINO IR (its ``.xml``)."""
    xml = next(folder.glob("*.xml"))
    return _count(collections.Counter(re.findall(r'<layer [^>]*type="([^"]+)"', xml.read_text())), xml.name)


def ncnn_ops(folder: Path) -> GraphCount:
    """Layer types of an NCNN ``.param`` (its first word per layer line, after the two header lines)."""
    param = next(folder.glob("*.ncnn.param"))
    lines = param.read_text().splitlines()[2:]
    return _count(collections.Counter(line.split()[0] for line in lines if line.strip()), param.name)


def mnn_ops(path: Path) -> GraphCount:
    """Op types of an MNN file, dumped to JSON by MNN's own converter (``-f MNN --JsonFile``)."""
    from MNN.tools import mnnconvert

    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "model.json"
        mnnconvert.convert(["", "-f", "MNN", "--modelFile", str(path), "--JsonFile", str(dump)])
        oplists = json.loads(dump.read_text())["oplists"]
    return _count(collections.Counter(op["type"] for op in oplists), f"{path.name} (MNNConvert JSON dump)")


def tflite_ops(path: Path) -> GraphCount:
    """Builtin op names of a TFLite flatbuffer, as the LiteRT interpreter lists them."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(str(path))._get_ops_details()
    return _count(collections.Counter(op["op_name"] for op in details), path.name)


def paddle_ops(folder: Path) -> GraphCount:
    """Op names of a Paddle inference program (PIR ``.json`` or, for older Paddle, ``.pdmodel``)."""
    files = sorted(folder.rglob("*.json")) + sorted(folder.rglob("*.pdmodel"))
    program = next(f for f in files if f.name != "metadata.json")
    text = program.read_text(errors="replace") if program.suffix == ".json" else program.read_bytes().decode(
        "latin-1")
    ops = collections.Counter(re.findall(r"(?:pd_op\.)?\b(conv2d|depthwise_conv2d|batch_norm)\b", text))
    if program.suffix == ".json":  # PIR names each op once as "pd_op.<name>"
        ops = collections.Counter(re.findall(r'"pd_op\.(conv2d|depthwise_conv2d|batch_norm_?)"', text))
        ops["batch_norm"] += ops.pop("batch_norm_", 0)
    return _count(ops, program.name)


def executorch_ops(folder: Path) -> GraphCount:
    """Convolutions of an ExecuTorch ``.pte``: the XNNPACK delegate's conv nodes plus any conv left to portable ops.

    The delegate payload is XNNPACK's own flatbuffer; ExecuTorch's serializer reads it back into its graph dataclass.
    """
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import _extract_xnnpack_header
    from executorch.exir._serialize._program import deserialize_pte_binary

    pte = next(folder.glob("*.pte"))
    data = pte.read_bytes()
    program = deserialize_pte_binary(data)
    program = getattr(program, "program", program)
    ops: collections.Counter = collections.Counter()
    for plan in program.execution_plan:
        ops.update(op.name.split("::")[-1].split(".")[0] for op in plan.operators)
        for delegate in plan.delegates:
            blob = _delegate_bytes(program, delegate, data)
            ops.update(_xnnpack_node_types(blob, _extract_xnnpack_header))
    ops["conv2d"] += ops.pop("convolution", 0)
    return _count(ops, f"{pte.name} (XNNPACK delegate graph)")


def _delegate_bytes(program, delegate, data: bytes) -> bytes:
    """Return the processed bytes of one delegate of a deserialized ExecuTorch program."""
    processed = delegate.processed
    if getattr(processed, "location", None) is not None and "INLINE" in str(processed.location):
        return program.backend_delegate_data[processed.index].data
    return program.backend_delegate_data[processed.index].data if program.backend_delegate_data else b""


def _xnnpack_node_types(blob: bytes, extract_header: Callable) -> collections.Counter:
    """Node types (``XNNConv2d``, ``XNNDepthwiseConv2d``, ...) of one XNNPACK delegate payload."""
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import convert_to_xnnpack_graph

    header = extract_header(blob)
    flatbuffer = blob[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size] if header else blob
    graph = convert_to_xnnpack_graph(flatbuffer)
    names = collections.Counter(type(node.xnode_union).__name__ for node in graph.xnodes)
    return collections.Counter({{"XNNConv2d": "conv2d", "XNNDepthwiseConv2d": "depthwise_conv2d"}.get(k, k): v
                                for k, v in names.items()})


READERS: dict[str, Callable[[Path], GraphCount]] = {
    "onnx": onnx_ops, "torchscript": torchscript_ops, "openvino": openvino_ops, "ncnn": ncnn_ops, "mnn": mnn_ops,
    "litert": tflite_ops, "paddle": paddle_ops, "executorch": executorch_ops,
}


def tf_ops(folder: Path) -> GraphCount:
    """Op types of a TensorFlow SavedModel's float32 TFLite file, which Ultralytics' SavedModel export writes beside
    it (the SavedModel's own graph holds the same ops as TensorFlow functions)."""
    tflite = next(f for f in sorted(folder.glob("*.tflite")) if "float32" in f.name)
    return tflite_ops(tflite)


def pb_ops(path: Path) -> GraphCount:
    """Node ops of a frozen TensorFlow GraphDef (``.pb``)."""
    import tensorflow as tf

    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(path.read_bytes())
    return _count(collections.Counter(node.op for node in graph.node), path.name)


READERS.update({"saved_model": tf_ops, "pb": pb_ops})


def read(fmt: str, path: Path) -> GraphCount | None:
    """Count the convolutions and BatchNorms of an exported file, or None where the format is not readable here."""
    reader = READERS.get(fmt)
    return reader(Path(path)) if reader else None
