"""Let Ultralytics' restricted checkpoint loader (``ULTRALYTICS_SAFE_LOAD=1``) rebuild models with plugin blocks.

Restricted loading unpickles with ``torch.load(weights_only=True)`` against an allow-list and imports nothing itself,
so a ``best.pt`` that pickles ``yolov8_efficientrep.blocks.RepVGGBlock`` is refused as "outside the supported
Ultralytics checkpoint format" unless the plugin's classes are on torch's list. They are put there only while
Ultralytics' own restricted loader runs (around ``_SafeLoad.loading``), never for the life of the process: torch's
list is process-wide, and a class on it may be called by any ``weights_only`` load with the file's arguments. Within
that window the classes can be built only on the loading thread (``limits.RestrictedLoadOnly``), and their
constructors may create at most one parameter per byte of the file being loaded (``limits.restricted_load``).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from typing import Iterator

import torch
from torch import nn

from ..limits import restricted_load
from ..rows import plugin_classes
from .notice import cannot_apply

_lock = threading.Lock()
_users = 0  # restricted loads in flight (threads may load concurrently): the classes leave the list with the last one
_scope = contextlib.ExitStack()


def _file_size(weight: object) -> int:
    """Return the size in bytes of the checkpoint file ``weight`` names; 0 if it names none (the load then fails)."""
    try:
        return os.path.getsize(weight)
    except (OSError, TypeError, ValueError):
        return 0


@contextlib.contextmanager
def plugin_classes_allowed(weight: object) -> Iterator[list[type[nn.Module]]]:
    """Let a ``torch.load(weights_only=True)`` of the file ``weight`` on this thread rebuild the plugin's classes.

    They go on torch's allow-list inside the block and off after it, counted across threads: the classes stay on the
    list until the last block that needs them has ended, so one thread's load never strips them from another's load
    in flight. Only this thread may build them meanwhile, and their constructors may create at most one parameter per
    byte of ``weight`` (see ``limits.restricted_load``).
    """
    global _users
    classes = plugin_classes()
    with _lock:
        if _users == 0:
            _scope.enter_context(torch.serialization.safe_globals(classes))
        _users += 1
    try:
        with restricted_load(_file_size(weight)):
            yield classes
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _scope.close()


def install_restricted_loading() -> None:
    """Allow the plugin's classes inside Ultralytics' restricted loader (``_SafeLoad.loading``); idempotent.

    Releases before ``ULTRALYTICS_SAFE_LOAD`` (8.1-8.3, early 8.4) always unpickle checkpoints in full: nothing to
    scope there.
    """
    tasks = importlib.import_module("ultralytics.nn.tasks")
    safe_load = getattr(tasks, "_SafeLoad", None)
    loading = vars(safe_load).get("loading") if safe_load is not None else None
    if not isinstance(loading, classmethod):
        if hasattr(importlib.import_module("ultralytics.utils"), "SAFE_LOAD"):  # a restricted loader of another shape
            cannot_apply("allowing the plugin's classes in the restricted loader (_SafeLoad.loading)",
                         "ULTRALYTICS_SAFE_LOAD=1 cannot load checkpoints with plugin blocks")
        return
    if getattr(loading.__func__, "allows_plugin_classes", False):
        return
    restricted_loading = loading.__func__

    @contextlib.contextmanager
    def loading_with_plugin_classes(cls, weight):
        with plugin_classes_allowed(weight), restricted_loading(cls, weight):
            yield

    loading_with_plugin_classes.allows_plugin_classes = True
    safe_load.loading = classmethod(loading_with_plugin_classes)
