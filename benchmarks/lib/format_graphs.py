"""What an exported graph holds, read from the file each format writes: its convolutions and any BatchNorm left.

A fused EfficientRep network has exactly as many convolutions as the fused PyTorch model's ``nn.Conv2d`` modules: each
RepVGG block is one 3x3 conv. An unfused block would add a 1x1 branch conv (and a BatchNorm for its identity
branch), so "same conv count, no BatchNorm" is the check that no training branch and no branch ``Add`` survived.
Formats whose files are opaque here (a compiled vendor binary such as RKNN's) return None.
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

CONV_NAMES = {"Conv", "Convolution", "ConvolutionDepthWise", "GroupConvolution", "CONV_2D", "DEPTHWISE_CONV_2D",
              "conv2d", "depthwise_conv2d", "_convolution", "Conv2D", "DepthwiseConv2dNative", "ConvolutionDepthwise",
              "conv"}
NORM_NAMES = {"BatchNormalization", "BatchNorm", "batch_norm", "FusedBatchNormV3", "BatchNormInference"}  # + Core ML's


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
    """Op names of a Paddle 3 inference program (PIR JSON, where ``"#": "1.conv2d"`` is an op of dialect 1, pd_op)."""
    program = next(f for f in sorted(Path(folder).rglob("*.json")))
    ops = collections.Counter(re.findall(r'"#":\s*"1\.(\w+)"', program.read_text()))
    return _count(ops, f"{program.parent.name}/{program.name}")


def executorch_ops(folder: Path) -> GraphCount:
    """Convolutions of an ExecuTorch ``.pte``: the XNNPACK delegates' conv nodes plus any conv left to portable ops.

    A delegate's payload is XNNPACK's own flatbuffer behind an ``XNNHeader``; ExecuTorch's bundled ``flatc`` turns it
    into JSON with XNNPACK's schema, which ExecuTorch ships too.
    """
    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from executorch.exir._serialize._program import deserialize_pte_binary

    pte = next(Path(folder).glob("*.pte"))
    program = deserialize_pte_binary(pte.read_bytes())
    program = getattr(program, "program", program)
    root = Path(xnnpack_graph_serialize.__file__).parents[3]  # executorch/ (a namespace package: no __file__)
    flatc, schema = root / "data" / "bin" / "flatc", root / "backends" / "xnnpack" / "serialization" / "schema.fbs"
    ops: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for plan in program.execution_plan:
            ops.update(op.name.split("::")[-1].split(".")[0] for op in plan.operators)
            for index, delegate in enumerate(plan.delegates):
                blob = program.backend_delegate_data[delegate.processed.index].data
                header = XNNHeader.from_bytes(blob[:XNNHeader.EXPECTED_LENGTH])
                payload = Path(tmp) / f"delegate{index}.bin"
                payload.write_bytes(blob[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size])
                subprocess.run([str(flatc), "--json", "--strict-json", "--raw-binary", "-o", tmp, str(schema), "--",
                                str(payload)], check=True, capture_output=True)
                text = payload.with_suffix(".json").read_text()  # not strict JSON: flatc writes nan and inf bare
                ops.update(re.findall(r'"xnode_union_type":\s*"(\w+)"', text))
    ops["conv2d"] += ops.pop("XNNConv2d", 0) + ops.pop("convolution", 0)
    ops["depthwise_conv2d"] += ops.pop("XNNDepthwiseConv2d", 0)
    return _count(ops, f"{pte.name} (XNNPACK delegate graphs)")


def coreml_ops(path: Path) -> GraphCount:
    """Operation types of a Core ML ``.mlpackage``'s ML program (``conv``, ``batch_norm``), read with coremltools'
    spec loader, which works where Core ML itself cannot run (Linux)."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    ops: collections.Counter = collections.Counter()

    def walk(block) -> None:
        for op in block.operations:
            ops[op.type] += 1
            for inner in op.blocks:
                walk(inner)

    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            walk(block)
    return _count(ops, f"{Path(path).name} (ML program)")


READERS: dict[str, Callable[[Path], GraphCount]] = {
    "onnx": onnx_ops, "torchscript": torchscript_ops, "openvino": openvino_ops, "ncnn": ncnn_ops, "mnn": mnn_ops,
    "litert": tflite_ops, "paddle": paddle_ops, "executorch": executorch_ops, "coreml": coreml_ops,
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
