"""Let Ultralytics' restricted checkpoint loader (``ULTRALYTICS_SAFE_LOAD=1``) rebuild models with plugin blocks.

Restricted loading unpickles with ``torch.load(weights_only=True)`` against an allow-list and imports nothing itself,
so a ``best.pt`` that pickles ``yolov8_efficientrep.blocks.RepVGGBlock`` is refused as "outside the supported
Ultralytics checkpoint format" unless the plugin's classes are on torch's list. They are put there only while
Ultralytics' own restricted loader runs (around ``_SafeLoad.loading``), never for the life of the process: torch's
list is process-wide, and a class on it may be called by any ``weights_only`` load with the file's arguments.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from typing import Iterator

import torch
from torch import nn

from .registration import _plugin_blocks

_lock = threading.Lock()
_users = 0  # restricted loads in flight (threads may load concurrently): the classes leave the list with the last one
_scope = contextlib.ExitStack()


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


@contextlib.contextmanager
def plugin_classes_allowed() -> Iterator[list[type[nn.Module]]]:
    """Put the plugin's classes on torch's ``weights_only`` allow-list inside the block; take them off after it.

    Counted across threads: the classes stay on the list until the last block that needs them has ended, so one
    thread's load never strips them from another's load in flight.
    """
    global _users
    classes = plugin_classes()
    with _lock:
        if _users == 0:
            _scope.enter_context(torch.serialization.safe_globals(classes))
        _users += 1
    try:
        yield classes
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _scope.close()


def scope_restricted_loading() -> bool:
    """Allow the plugin's classes inside Ultralytics' restricted loader (``_SafeLoad.loading``); idempotent.

    Returns:
        (bool): Whether the running Ultralytics has that loader (8.4 releases since ``ULTRALYTICS_SAFE_LOAD``); older
        releases always unpickle checkpoints in full, so there is nothing to scope.
    """
    tasks = importlib.import_module("ultralytics.nn.tasks")
    safe_load = getattr(tasks, "_SafeLoad", None)
    loading = vars(safe_load).get("loading") if safe_load is not None else None
    if not isinstance(loading, classmethod):
        from ultralytics import __version__
        from ultralytics.utils import LOGGER

        if hasattr(importlib.import_module("ultralytics.utils"), "SAFE_LOAD"):  # a restricted loader of another shape
            LOGGER.warning(f"yolov8-efficientrep: Ultralytics {__version__} has no _SafeLoad.loading to scope the "
                           f"plugin's classes to: ULTRALYTICS_SAFE_LOAD=1 cannot load checkpoints with plugin blocks")
        return False
    if getattr(loading.__func__, "allows_plugin_classes", False):
        return True
    restricted_loading = loading.__func__

    @contextlib.contextmanager
    def loading_with_plugin_classes(cls, weight):
        with plugin_classes_allowed(), restricted_loading(cls, weight):
            yield

    loading_with_plugin_classes.allows_plugin_classes = True
    safe_load.loading = classmethod(loading_with_plugin_classes)
    return True
