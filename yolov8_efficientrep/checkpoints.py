"""Let Ultralytics' restricted checkpoint loader (``ULTRALYTICS_SAFE_LOAD=1``) rebuild models that use plugin blocks.

Restricted loading unpickles with ``torch.load(weights_only=True)`` against an allow-list of torch and Ultralytics
classes and imports nothing itself, so a ``best.pt`` that pickles ``yolov8_efficientrep.blocks.RepVGGBlock`` is refused
as "outside the supported Ultralytics checkpoint format" unless the plugin has allow-listed its classes first. Importing
the package does that, and the start-up hook imports it before Ultralytics can load any checkpoint.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from .registration import _plugin_blocks


def plugin_classes() -> list[type[nn.Module]]:
    """Return every plugin layer class a checkpoint may pickle.

    That is each registered block defined in this package, plus the plugin's ``nn.Module`` classes those blocks' modules
    define or import (the units a block is built from, such as ``BottleRep`` inside a ``RepBlock``). Ultralytics' own
    classes (``RepConv``) are left to Ultralytics' allow-list.
    """
    package = __name__.rpartition(".")[0]
    modules = {cls.__module__ for cls, _ in _plugin_blocks().values() if cls.__module__.startswith(f"{package}.")}
    classes = {
        obj
        for module in modules
        for obj in vars(sys.modules[module]).values()
        if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__.startswith(f"{package}.")
    }
    return sorted(classes, key=lambda cls: (cls.__module__, cls.__qualname__))


def allow_restricted_loading() -> list[type[nn.Module]]:
    """Allow-list the plugin's layer classes for ``torch.load(weights_only=True)``; return them.

    Torch without ``add_safe_globals`` (before 2.4) has no restricted loading for Ultralytics to use, so nothing is
    needed there.
    """
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:
        return []
    classes = plugin_classes()
    add_safe_globals(classes)
    return classes
