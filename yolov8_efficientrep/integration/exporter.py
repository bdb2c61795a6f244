"""Wire the plugin's export and training checks (``callbacks.py``) and its ONNX INT8 route (``quantize.py``) into
Ultralytics: its default callbacks, ``Exporter.__call__`` and ``onnx_int8_quantize``."""

from __future__ import annotations

import functools
import importlib
import inspect

from torch import nn

from ..callbacks import (check_int8_export, exporting, model_being_exported, refuse_fused_checkpoint,
                         verify_export_fusion)
from ..quantize import ort_int8_route, quantize_onnx_int8
from ..rows import uses_plugin
from .notice import cannot_apply

MARK = "yolov8_efficientrep"  # set on the wrappers, making each install idempotent
# What the plugin's INT8 route needs from Ultralytics' onnx_int8_quantize, by name.
INT8_PARAMETERS = ("onnx_file", "output_file", "dataset", "transform_fn")


def install_callbacks() -> None:
    """Add the fusion check (``on_export_start``) and the fused-checkpoint refusal (``on_pretrain_routine_start``) to
    the callbacks every model created from now on gets; idempotent."""
    from ultralytics.utils.callbacks.base import default_callbacks

    for event, callback in (("on_export_start", verify_export_fusion),
                            ("on_pretrain_routine_start", refuse_fused_checkpoint)):
        if callback not in default_callbacks.setdefault(event, []):
            default_callbacks[event].append(callback)


def _recording_source(call):
    """Wrap ``Exporter.__call__``: record the model the export was called with, and check an INT8 result."""

    @functools.wraps(call)
    def __call__(self, model=None, *args, **kwargs):
        with exporting(self, model):
            exported = call(self, model, *args, **kwargs)
        check_int8_export(self, exported)
        return exported

    setattr(__call__, MARK, True)
    return __call__


def install_export_source() -> None:
    """Let the export checks see the model an export was called with (``Exporter.__call__``); idempotent."""
    from ultralytics.engine.exporter import Exporter

    call = Exporter.__dict__.get("__call__")
    if call is None or "model" not in inspect.signature(call).parameters:
        cannot_apply("the fused-vs-unfused export check (Exporter.__call__(model))",
                     "exports of plugin models are not checked against the unfused model")
    elif not getattr(call, MARK, False):
        Exporter.__call__ = _recording_source(call)


def _routing_int8(quantize):
    """Wrap Ultralytics' ``onnx_int8_quantize``: the plugin's settings for plugin models, Ultralytics' for others.

    Arguments are matched by name, so parameters a later Ultralytics adds reach the plugin's route too (which uses
    or reports them) and Ultralytics' own call unchanged.
    """
    signature = inspect.signature(quantize)

    @functools.wraps(quantize)
    def onnx_int8_quantize(*args, **kwargs):
        model = model_being_exported()
        if ort_int8_route(isinstance(model, nn.Module) and uses_plugin(model)) == "plugin":
            arguments = signature.bind(*args, **kwargs).arguments
            for name, parameter in signature.parameters.items():
                if parameter.kind == parameter.VAR_KEYWORD:  # **options of Ultralytics' own: pass them on by name
                    arguments.update(arguments.pop(name, {}))
            return quantize_onnx_int8(**arguments)
        return quantize(*args, **kwargs)

    setattr(onnx_int8_quantize, MARK, True)
    return onnx_int8_quantize


def install_int8_route() -> None:
    """Route ONNX INT8 exports (``format=onnx quantize=8``) of plugin models through the plugin's settings; idempotent.

    Releases without an ONNX INT8 export (8.1-8.3, early 8.4) have nothing to route.
    """
    try:
        onnx_export = importlib.import_module("ultralytics.utils.export.onnx")
    except ImportError:
        return
    quantize = getattr(onnx_export, "onnx_int8_quantize", None)
    if quantize is None or getattr(quantize, MARK, False):
        return
    parameters = inspect.signature(quantize).parameters
    missing = [name for name in INT8_PARAMETERS if name not in parameters]
    if missing or any(p.kind == p.VAR_POSITIONAL for p in parameters.values()):
        cannot_apply(f"the plugin's ONNX INT8 route (onnx_int8_quantize lacks {', '.join(missing) or 'named arguments'})",
                     "format=onnx quantize=8 of plugin models uses Ultralytics' settings, which run fewer convs in INT8")
        return
    onnx_export.onnx_int8_quantize = _routing_int8(quantize)
