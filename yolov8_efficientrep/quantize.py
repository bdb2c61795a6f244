"""ONNX Runtime INT8 export of models with plugin layers: settings that quantize every fused conv.

Ultralytics 8.4's ``format=onnx quantize=8`` quantizes with ONNX Runtime's ``quantize_static`` defaults: int8
activations and per-tensor int8 weights, on Conv/Gemm/MatMul nodes only. On x86, ONNX Runtime turns a
``DequantizeLinear -> Conv -> QuantizeLinear`` group into a ``QLinearConv`` only for uint8 activations
(``QDQIsInt8Allowed()`` is false outside ARM builds), so many convs run in float32 between quantize and dequantize
nodes. The plugin's route (``quantize_onnx_int8``), for its own models:

- ``quant_pre_process`` (ONNX Runtime's shape inference and graph pre-optimization) first, which lets every quantized
  conv of an unsimplified export become a ``QLinearConv``;
- uint8 activations, so that ONNX Runtime's x86 kernels take every conv;
- per-channel int8 weights: a fused RepVGG kernel sums three branches, each scaled per output channel by its own
  BatchNorm, so the channels' ranges differ widely and one scale per tensor leaves the small channels few levels
  (the quantization error the QARepVGG paper analyses);
- 7-bit weights (``reduce_range``): on x86 CPUs without VNNI, ONNX Runtime's ``QLinearConv`` adds pairs of uint8 x
  int8 products in 16 bits, which full-range weights make saturate; an exported file may run on any x86 CPU;
- the DFL's expectation conv (the 1x1 conv after the box head's Softmax) stays float, as Ultralytics' OpenVINO INT8
  export keeps it.

Everything else is Ultralytics' choice (QDQ format, MinMax calibration, only Conv/Gemm/MatMul quantized so the box
decode stays float). ``YOLOV8_EFFICIENTREP_ORT_INT8`` picks the route: ``auto`` (default: the plugin's route for
models with plugin layers, Ultralytics' own for every other model), ``plugin`` (every model) or ``ultralytics``
(every model, e.g. on ARM, where ONNX Runtime also fuses int8 activations). The measured effect of each setting is in
``docs/int8.md``.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

ORT_INT8_ROUTE_VARIABLE = "YOLOV8_EFFICIENTREP_ORT_INT8"
ORT_INT8_ROUTES = ("auto", "plugin", "ultralytics")
QUANTIZED_OP_TYPES = {"Conv", "Gemm", "MatMul"}  # as Ultralytics: the head's box decode stays float


def ort_int8_route(uses_plugin: bool) -> str:
    """Return ``"plugin"`` or ``"ultralytics"``: a model's ONNX INT8 route, by ``YOLOV8_EFFICIENTREP_ORT_INT8``.

    Raises:
        ValueError: The variable holds something other than ``auto``, ``plugin`` or ``ultralytics``.
    """
    route = os.environ.get(ORT_INT8_ROUTE_VARIABLE, "auto").strip().lower() or "auto"
    if route not in ORT_INT8_ROUTES:
        raise ValueError(f"{ORT_INT8_ROUTE_VARIABLE}={route!r}: use one of {', '.join(ORT_INT8_ROUTES)}")
    return route if route != "auto" else "plugin" if uses_plugin else "ultralytics"


def quantize_onnx_int8(onnx_file: str | Path, output_file: str | Path, dataset: Iterable,
                       transform_fn: Callable, input_name: str = "images", prefix: str = "", **options: object) -> str:
    """Quantize an FP32 ONNX file to INT8 (QDQ) with the plugin's route; Ultralytics' ``onnx_int8_quantize`` signature.

    Args:
        onnx_file (str | Path): The FP32 ONNX file (Ultralytics' export, metadata included; it is kept).
        output_file (str | Path): The INT8 ONNX file to write.
        dataset (Iterable): Calibration batches, as Ultralytics' INT8 calibration dataloader yields them.
        transform_fn (Callable): Turns a batch into the float32 NCHW array the graph takes.
        input_name (str): The graph input to feed.
        prefix (str): Prefix for log messages.
        **options: Parameters later Ultralytics releases add to ``onnx_int8_quantize`` (a calibration ``batch``, ...):
            passed on to Ultralytics' calibration reader where it takes them, otherwise logged as not used.

    Returns:
        (str): ``output_file``.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from ultralytics.utils import LOGGER
    from ultralytics.utils.export.onnx import onnx_calibration_reader

    LOGGER.info(f"{prefix} quantizing INT8 with ONNX Runtime, yolov8-efficientrep's route: pre-processed, uint8 "
                f"activations, per-channel 7-bit weights, DFL conv float ({ORT_INT8_ROUTE_VARIABLE}=ultralytics for "
                f"Ultralytics' settings)")
    with tempfile.TemporaryDirectory(prefix="efficientrep-int8-") as tmp:
        prepared = Path(tmp) / "preprocessed.onnx"
        quant_pre_process(str(onnx_file), str(prepared))
        graph = onnx.load(str(prepared), load_external_data=False).graph
        producer = {output: node.op_type for node in graph.node for output in node.output}
        exclude = [node.name for node in graph.node if node.op_type not in QUANTIZED_OP_TYPES
                   or producer.get(node.input[0]) == "Softmax"]  # the DFL's expectation conv
        reader_takes = inspect.signature(onnx_calibration_reader).parameters
        forwarded = {key: value for key, value in options.items() if key in reader_takes}
        if options.keys() - forwarded.keys():
            LOGGER.info(f"{prefix} the plugin's ONNX INT8 route does not use {', '.join(options.keys() - forwarded)}")
        reader = onnx_calibration_reader(dataset, transform_fn, input_name, **forwarded)
        quantize_static(str(prepared), str(output_file), reader,
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, reduce_range=True, nodes_to_exclude=exclude)
    return str(output_file)
