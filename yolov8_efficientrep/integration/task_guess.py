"""Let Ultralytics' task guess recognise models that end in a plugin head (``EffiDeHead``, ``EffiDeSegHead``, ...),
and name the release a model YAML needs when this one has no task for its head (semantic and depth before 8.4).

Ultralytics guesses a YAML's task from its last row's name (``"detect" in name.lower()``, ``"segment"``), which the
plugin's heads do not contain: without this, ``YOLO("yolov6n-repbifpan.yaml")`` gets no task at all.
"""

from __future__ import annotations

import functools
import importlib
from typing import Callable

from ..row_errors import newer_task_error
from ..rows import head_tasks
from .notice import cannot_apply
from .wrapping import wrap_once

# Modules that bind Ultralytics' guess_model_task by name (tasks' own loaders, the package re-export, Model).
_TASK_GUESS_USERS = ("ultralytics.nn.tasks", "ultralytics.nn", "ultralytics.engine.model")


def _plugin_head_task(cfg: object) -> str | None:
    """Return the task of a model YAML dict whose last row is one of the plugin's heads, else None."""
    try:
        head = cfg["head"][-1][2]
    except (KeyError, IndexError, TypeError):
        return None
    return head_tasks().get(head) if isinstance(head, str) else None


def _task_of_plugin_heads(guess: Callable) -> Callable:
    """Wrap ``guess_model_task``: a model or YAML whose last row is a plugin head gets that head's task."""

    @functools.wraps(guess)
    def guess_model_task(model):
        cfg = model if isinstance(model, dict) else getattr(model, "yaml", None)
        plugin_task = _plugin_head_task(cfg)
        if plugin_task:
            return plugin_task
        task = guess(model)
        if task is None and isinstance(cfg, dict):  # a head this release has no task for: the YAML names the release
            error = newer_task_error(cfg)
            if error is not None:
                raise error
        return task

    return guess_model_task


def install_task_guess() -> None:
    """Wrap ``guess_model_task`` wherever Ultralytics has bound it; idempotent."""
    tasks = importlib.import_module("ultralytics.nn.tasks")
    original = getattr(tasks, "guess_model_task", None)
    if original is None:
        cannot_apply("the task guess for EffiDeHead models (ultralytics.nn.tasks.guess_model_task)",
                     "yolov6-* YAMLs and imports with YOLOv6's head need task=detect (task=segment for -seg ones)")
        return
    wrap_once(tasks, "guess_model_task", _task_of_plugin_heads, rebind=_TASK_GUESS_USERS)
