"""Callbacks the plugin adds to every Ultralytics model: verified fusion at export, no training from a fused file.

At export every Rep block is fused in float32 before any half / int8 step and the fused model is compared with the
unfused one on a real image; the export logs "fused N blocks, max |diff| = ..." or stops with ``FusionCheckError``.

Ultralytics >=8.4 runs ``on_export_start`` after it has deep-copied, fused and (for FP16 on GPU) halved its model,
so the unfused network is gone by then. ``Exporter.__call__`` is therefore wrapped to keep a reference to the model
it was called with (the caller's own model, which the exporter never modifies); the callback compares against a
float32 copy of it. Ultralytics 8.1-8.3 run ``on_export_start`` before the exporter has any model; there the
callback fuses and checks a float32 copy of that same source, the algebra the exporter's ``model.fuse()`` then
applies to its own copy in float32 (its ``half()`` comes after), and stops the export if Ultralytics' ``fuse()``
would leave a Rep block unfused.

INT8: fusion and its check run in ``on_export_start``, before either quantizer calibrates. Ultralytics'
``onnx_int8_quantize`` (8.4's ``format=onnx quantize=8``) is wrapped, where the exporter looks it up, so that models
with plugin layers get the plugin's ONNX Runtime settings (see ``quantize``); every other model gets Ultralytics' own
call unchanged. After an INT8 ONNX or OpenVINO export of a plugin model the quantized graph is checked and logged.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import inspect
from pathlib import Path

from torch import nn
from ultralytics.utils import LOGGER, colorstr

from .fusion import check_fusion, fuse_rep_blocks, image_size, is_fused, load_checkpoint, rep_blocks, sample_image
from .limits import non_finite_tensor
from .quantize import ROUTE_VARIABLE, onnx_int8_graph, openvino_int8_graph, ort_int8_route, quantize_onnx_int8

PREFIX = colorstr("EfficientRep:")
_SOURCE = "efficientrep_source_model"  # Exporter attribute holding the model the export was called with
# the model being exported, for the INT8 quantizer hook, which is called without the exporter
_EXPORTING: contextvars.ContextVar[nn.Module | None] = contextvars.ContextVar("efficientrep_exporting", default=None)


class FusedCheckpointError(ValueError):
    """Training was asked to start from a checkpoint whose Rep blocks are fused."""


def _uses_plugin(model: nn.Module) -> bool:
    """Return True if ``model`` holds a layer of this package: Ultralytics' own models are left exactly as they are."""
    return any(type(m).__module__.startswith(f"{__package__}.") for m in model.modules())


def _export_model(exporter) -> nn.Module | None:
    """Return the Ultralytics model inside the exporter's (some formats wrap it), or None where it has none yet."""
    model = getattr(exporter, "model", None)
    if model is None or hasattr(model, "yaml"):
        return model
    return next((m for m in model.modules() if hasattr(m, "yaml")), model)


def verify_export_fusion(exporter) -> None:
    """``on_export_start``: fuse every Rep block in float32 (idempotently) and check fused against unfused.

    Raises:
        ValueError: The model's weights are not finite (NaN or infinite values); the message names the tensor.
        FusionCheckError: The fused model's outputs differ from the unfused model's beyond tolerance.
        RuntimeError: Ultralytics <8.4 would export a Rep block unfused.
    """
    source = getattr(exporter, _SOURCE, None)
    if not isinstance(source, nn.Module) or not _uses_plugin(source) or not rep_blocks(source):
        return
    if getattr(exporter, "qat", False):
        LOGGER.info(f"{PREFIX} quantization-aware model: Rep blocks stay unfused, as Ultralytics keeps them")
        return
    if all(is_fused(b) for b in rep_blocks(source)):
        LOGGER.info(f"{PREFIX} all {len(rep_blocks(source))} Rep blocks were fused before export (a fused "
                    f"checkpoint?); no unfused model to compare with")
        return
    bad = non_finite_tensor(source.state_dict().items())  # NaN would fail the comparison as if fusion were wrong
    if bad is not None:
        weights = getattr(exporter.args, "model", None)
        raise ValueError(f"{weights if isinstance(weights, (str, Path)) else 'the exported model'}: its weights are "
                         f"not finite: tensor {bad} holds NaN or infinite values (a training run that diverged, or a "
                         f"damaged file), so the export would compute NaN; export a checkpoint whose weights are "
                         f"finite, such as an earlier epoch's")
    reference = copy.deepcopy(source).to(getattr(exporter, "device", None)).float().eval()
    model = _export_model(exporter)
    if model is None:  # Ultralytics <8.4: its exporter fuses its own copy of the same source right after this
        model = copy.deepcopy(reference).fuse(verbose=False)
        if fuse_rep_blocks(model):
            raise RuntimeError(f"{PREFIX} this Ultralytics version's exporter would leave some Rep blocks unfused; "
                               f"write a fused checkpoint with 'python -m yolov8_efficientrep fuse' and export that")
    else:
        fuse_rep_blocks(model)  # Rep blocks that Ultralytics' fuse() left; float32 algebra even if already halved
    height, width = image_size(getattr(exporter, "imgsz", None) or exporter.args.imgsz, reference)
    image = sample_image(height, width, reference.yaml.get("channels", 3))
    result = check_fusion(model, reference, image, what="export model")
    precision = f", in full FP32 ({' and '.join(result.switched)} off for the check)" if result.switched else ""
    LOGGER.info(f"{PREFIX} fused {result.blocks} blocks, max |diff| = {result.max_abs:.2e} "
                f"({result.max_rel:.2e} relative, within the relative tolerance {result.tolerance:.0e}) on a "
                f"{height}x{width} image{precision}")


def refuse_fused_checkpoint(trainer) -> None:
    """``on_pretrain_routine_start``: stop training that would start from a checkpoint with fused Rep blocks.

    Ultralytics would build the training-form model and copy over only the tensors whose names still match, silently
    re-initializing every fused block and BatchNorm.
    """
    for key in ("model", "pretrained"):
        weights = getattr(trainer.args, key, None)
        if not isinstance(weights, (str, Path)) or not str(weights).endswith(".pt") or not Path(weights).is_file():
            continue
        model, ckpt = load_checkpoint(weights)
        fused = sum(is_fused(b) for b in rep_blocks(model))
        if fused and _uses_plugin(model):
            origin = ckpt.get("efficientrep", {}).get("fused_from")
            raise FusedCheckpointError(
                f"{key}={weights} is a deploy checkpoint: {fused} of its Rep blocks are fused into single convolutions "
                f"and their branches and BatchNorm statistics are gone, so training would silently re-initialize "
                f"them. Train from the checkpoint it was fused from{f' ({origin})' if origin else ''} or from a "
                f"model YAML; use the fused file for predict, val and export"
            )


def check_int8_export(exporter, exported: str | list[str] | None) -> None:
    """After an INT8 ONNX or OpenVINO export of a plugin model: check the quantized graph and log what it holds.

    Logs the number of convs, how many are quantized in the file and run in INT8 by the runtime, and warns if the
    graph has another number of convs than the fused model, a BatchNorm or a Rep branch left, or quantized convs that
    the runtime runs in float between quantize and dequantize nodes.
    """
    args = exporter.args
    int8 = getattr(args, "quantize", None) == 8 or getattr(args, "int8", False)  # 8.4.x; 8.1-8.4.0 say int8=True
    source = getattr(exporter, _SOURCE, None)
    if not (int8 and exported and args.format in {"onnx", "openvino"} and isinstance(source, nn.Module)
            and _uses_plugin(source)) or getattr(exporter, "qat", False):  # QAT graphs keep their Rep blocks
        return
    path = Path(exported[-1] if isinstance(exported, (list, tuple)) else exported)  # 8.1 returns a list
    graph = onnx_int8_graph(path) if args.format == "onnx" else openvino_int8_graph(next(path.glob("*.xml")))
    expected = sum(isinstance(m, nn.Conv2d) for m in _export_model(exporter).modules())
    runtime = "ONNX Runtime" if args.format == "onnx" else "OpenVINO's CPU plugin"
    LOGGER.info(f"{PREFIX} INT8 {path.name} in {runtime}: {graph.summary()} (the fused model has {expected} convs)")
    problems = [f"{graph.convs} convs where the fused model has {expected}"] if graph.convs != expected else []
    problems += [f"unfused layers {graph.leftovers}"] if graph.leftovers else []
    if graph.runtime_quantized < graph.quantized:
        problems.append(f"{graph.quantized - graph.runtime_quantized} quantized convs run in float32 between quantize "
                        f"and dequantize nodes, paying for the conversions without the INT8 speed "
                        f"({ROUTE_VARIABLE}={ort_int8_route(True)})")
    if problems:
        LOGGER.warning(f"{PREFIX} INT8 export {path}: {'; '.join(problems)}")


def _record_source(call):
    """Wrap ``Exporter.__call__``: keep the model the export was called with, and check an INT8 result."""

    @functools.wraps(call)
    def __call__(self, model=None, *args, **kwargs):
        setattr(self, _SOURCE, model)
        token = _EXPORTING.set(model)
        try:
            exported = call(self, model, *args, **kwargs)
        finally:
            _EXPORTING.reset(token)
        check_int8_export(self, exported)
        return exported

    __call__.records_source = True
    return __call__


def _route_int8(quantize):
    """Wrap Ultralytics' ``onnx_int8_quantize``: the plugin's settings for plugin models, Ultralytics' for others."""

    @functools.wraps(quantize)
    def onnx_int8_quantize(*args, **kwargs):
        model = _EXPORTING.get()
        if ort_int8_route(isinstance(model, nn.Module) and _uses_plugin(model)) == "plugin":
            return quantize_onnx_int8(*args, **kwargs)
        return quantize(*args, **kwargs)

    onnx_int8_quantize.routes_int8 = True
    return onnx_int8_quantize


def _hook_onnx_int8() -> None:
    """Route ONNX INT8 exports through ``_route_int8`` where Ultralytics has them (8.4 releases with quantize=8).

    Left alone where the function is missing (8.1-8.3 and early 8.4 have no ONNX INT8 export) or takes other
    parameters than the plugin's route.
    """
    try:
        from ultralytics.utils.export import onnx as onnx_export
    except ImportError:
        return
    quantize = getattr(onnx_export, "onnx_int8_quantize", None)
    if quantize is None or getattr(quantize, "routes_int8", False):
        return
    if list(inspect.signature(quantize).parameters) == list(inspect.signature(quantize_onnx_int8).parameters):
        onnx_export.onnx_int8_quantize = _route_int8(quantize)


def register_callbacks() -> None:
    """Add the callbacks to every model created from now on and let exporters keep their source model; idempotent."""
    from ultralytics.engine.exporter import Exporter
    from ultralytics.utils.callbacks.base import default_callbacks

    for event, callback in (("on_export_start", verify_export_fusion),
                            ("on_pretrain_routine_start", refuse_fused_checkpoint)):
        if callback not in default_callbacks.setdefault(event, []):
            default_callbacks[event].append(callback)
    if not getattr(Exporter.__call__, "records_source", False):
        Exporter.__call__ = _record_source(Exporter.__call__)
    _hook_onnx_int8()
