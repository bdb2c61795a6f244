"""Find the YAMLs this package ships by bare name from any directory: ``yolov8n-efficientrep.yaml``, ``shapes.yaml``.

Model YAMLs go through ``ultralytics.nn.tasks.check_yaml``, data YAMLs through ``check_file`` in
``ultralytics.data.utils``; both fall back to the shipped ``cfg/`` for a bare name that is not a file in the working
directory. Ultralytics ships no YAML with these names, so its own lookups are unchanged. Classification data YAMLs
(``shapes-cls.yaml``) also need ``check_cls_dataset`` to accept them: see ``install_bundled_lookup``.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

from .shapes import classification_folder

# The repository's top-level cfg/ (a symlink inside the package, so wheels and editable installs both carry it).
CFG_DIR = Path(__file__).resolve().parent / "cfg"
# Modules that bind check_cls_dataset by name at import: those already imported keep the original unless rebound.
_CLS_DATASET_USERS = ("ultralytics.engine.trainer", "ultralytics.engine.validator", "ultralytics.engine.exporter")


def bundled_yaml(name: str | Path) -> Path | None:
    """Return the shipped YAML for a bare file name such as ``yolov8-efficientrep.yaml``, else None.

    Only bare names are looked up: a path with a directory part means the user chose a location.
    """
    path = Path(name)
    if path.parent != Path(".") or path.exists():
        return None
    candidate = CFG_DIR / path.name
    return candidate if candidate.is_file() else None


def scaled_name(stem: str, scale: str) -> str:
    """Return the file name that picks ``scale`` of a unified config, Ultralytics' way.

    The scale letter follows the family's name: ``yolov8-efficientrep`` -> ``yolov8n-efficientrep.yaml``,
    ``yolo26-efficientrep`` -> ``yolo26n-efficientrep.yaml``, ``yolov6-reppan`` -> ``yolov6n-reppan.yaml``.
    """
    return re.sub(r"^(yolov?\d+)", rf"\g<1>{scale}", stem) + ".yaml"


def _or_bundled(find: Callable) -> Callable:
    """Wrap a file finder (``check_yaml``, ``check_file``) so that a bare name of a shipped YAML returns its path."""

    @functools.wraps(find)
    def find_or_bundled(file, *args, **kwargs):
        bundled = bundled_yaml(file) if isinstance(file, (str, Path)) else None
        return str(bundled) if bundled else find(file, *args, **kwargs)

    return find_or_bundled


def _accepting_generated_yamls(check_cls_dataset: Callable) -> Callable:
    """Wrap ``check_cls_dataset`` so that a generated classification data YAML stands for its folder."""

    @functools.wraps(check_cls_dataset)
    def check_cls_dataset_or_generated(dataset, *args, **kwargs):
        if isinstance(dataset, (str, Path)) and str(dataset).endswith((".yaml", ".yml")):
            path = bundled_yaml(dataset) or Path(dataset)
            dataset = (classification_folder(path) if path.is_file() else None) or dataset
        return check_cls_dataset(dataset, *args, **kwargs)

    return check_cls_dataset_or_generated


def install_bundled_lookup(tasks: ModuleType) -> None:
    """Let Ultralytics find the shipped model and data YAMLs by bare name, and take ``shapes-cls.yaml`` for classify.

    Wraps ``tasks.check_yaml`` (model YAMLs), ``ultralytics.data.utils.check_file`` (data YAMLs) and
    ``check_cls_dataset`` wherever Ultralytics has bound it. Called once, by ``register()``.
    """
    tasks.check_yaml = _or_bundled(tasks.check_yaml)
    data_utils = importlib.import_module("ultralytics.data.utils")
    data_utils.check_file = _or_bundled(data_utils.check_file)
    original = data_utils.check_cls_dataset
    data_utils.check_cls_dataset = _accepting_generated_yamls(original)
    for name in _CLS_DATASET_USERS:  # imported later, they bind the wrapped function themselves
        module = sys.modules.get(name)
        if getattr(module, "check_cls_dataset", None) is original:
            module.check_cls_dataset = data_utils.check_cls_dataset
