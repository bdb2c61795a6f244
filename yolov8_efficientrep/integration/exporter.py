"""The export seam: which model an export was called with, the checks that use it, and the ONNX INT8 route.

Ultralytics' exporter works on a deep copy of the model it is called with (fused, maybe halved, by 8.4 before any
callback runs), and its ONNX INT8 quantizer is called with neither. ``Exporter.__call__`` is wrapped to record that
source model in this module's one context variable for the length of the export: the ``on_export_start`` callback
(``on_export_start``, registered in ``events.py``) checks the fusion against it, the INT8 graph is checked once the
export returns, and ``onnx_int8_quantize`` picks the plugin's route for plugin models (``quantize.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import inspect
from typing import Iterator

from torch import nn

from ..callbacks import check_int8_export, verify_export_fusion
from ..quantize import ort_int8_route, quantize_onnx_int8
from ..rows import uses_plugin
from .notice import cannot_apply
from .wrapping import wrap_once

# What the plugin's INT8 route needs from Ultralytics' onnx_int8_quantize, by name.
INT8_PARAMETERS = ("onnx_file", "output_file", "dataset", "transform_fn")
_SOURCE: contextvars.ContextVar[nn.Module | None] = contextvars.ContextVar("efficientrep_export_source", default=None)


@contextlib.contextmanager
def exporting(model: nn.Module | None) -> Iterator[None]:
    """Record ``model`` as the source of the export running inside the block."""
    token = _SOURCE.set(model)
    try:
        yield
    finally:
        _SOURCE.reset(token)


def model_being_exported() -> nn.Module | None:
    """Return the model the export in progress (in this context) was called with, if any."""
    return _SOURCE.get()


def on_export_start(exporter) -> None:
    """``on_export_start``: check the exporter's fused model against the unfused source (``callbacks.py``)."""
    verify_export_fusion(exporter, model_being_exported())


def _recording_source(call):
    """Wrap ``Exporter.__call__``: record the model the export was called with, and check an INT8 result."""

    def __call__(self, model=None, *args, **kwargs):
        with exporting(model):
            exported = call(self, model, *args, **kwargs)
        check_int8_export(self, model, exported)
        return exported

    return functools.wraps(call)(__call__)


def install_export_source() -> None:
    """Let the export checks see the model an export was called with (``Exporter.__call__``); idempotent."""
    from ultralytics.engine.exporter import Exporter

    call = Exporter.__dict__.get("__call__")
    if call is None or "model" not in inspect.signature(call).parameters:
        cannot_apply("the fused-vs-unfused export check (Exporter.__call__(model))",
                     "exports of plugin models are not checked against the unfused model")
        return
    wrap_once(Exporter, "__call__", _recording_source)


def _routing_int8(quantize):
    """Wrap Ultralytics' ``onnx_int8_quantize``: the plugin's settings for plugin models, Ultralytics' for others.

    Arguments are matched by name, so parameters a later Ultralytics adds reach the plugin's route too (which uses
    or reports them) and Ultralytics' own call unchanged.
    """
    signature = inspect.signature(quantize)

    def onnx_int8_quantize(*args, **kwargs):
        model = model_being_exported()
        if ort_int8_route(isinstance(model, nn.Module) and uses_plugin(model)) == "plugin":
            arguments = signature.bind(*args, **kwargs).arguments
            for name, parameter in signature.parameters.items():
                if parameter.kind == parameter.VAR_KEYWORD:  # **options of Ultralytics' own: pass them on by name
                    arguments.update(arguments.pop(name, {}))
            return quantize_onnx_int8(**arguments)
        return quantize(*args, **kwargs)

    return functools.wraps(quantize)(onnx_int8_quantize)


def install_int8_route() -> None:
    """Route ONNX INT8 exports (``format=onnx quantize=8``) of plugin models through the plugin's settings; idempotent.

    Releases without an ONNX INT8 export (8.1-8.3, early 8.4) have nothing to route.
    """
    try:
        onnx_export = importlib.import_module("ultralytics.utils.export.onnx")
    except ImportError:
        return
    quantize = getattr(onnx_export, "onnx_int8_quantize", None)
    if quantize is None:
        return
    parameters = inspect.signature(quantize).parameters
    missing = [name for name in INT8_PARAMETERS if name not in parameters]
    if missing or any(p.kind == p.VAR_POSITIONAL for p in parameters.values()):
        cannot_apply(f"the plugin's ONNX INT8 route (onnx_int8_quantize lacks {', '.join(missing) or 'named arguments'})",
                     "format=onnx quantize=8 of plugin models uses Ultralytics' settings, which run fewer convs in INT8")
        return
    wrap_once(onnx_export, "onnx_int8_quantize", _routing_int8)
