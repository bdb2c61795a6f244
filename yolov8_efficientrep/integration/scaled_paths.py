"""Find the YAML of a scaled model path by its file name, whatever the folders are called.

Ultralytics' ``yaml_model_load`` reads ``yolov8s-efficientrep.yaml`` from the unified ``yolov8-efficientrep.yaml``
beside it, naming that file by deleting the first digit run's n/s/l/m/x in the **whole path**
(``re.sub(r"(\\d+)([nslmx])(.+)?$", r"\\1\\3", str(path))``, 8.1 to 8.4): in ``/data/2024models/cfg/`` it deletes the
``m`` of ``2024models`` and looks in ``/data/2024odels/cfg/``. The wrapper takes over only such paths, where that
rule would change a folder: it applies the same rule to the file name alone (the path itself when it is a file, else
the unified name beside it) and sets the scale with Ultralytics' own ``guess_model_scale``, which reads the file name.
Every other path, bare names included (Ultralytics' own models), goes to Ultralytics' function unchanged.
"""

from __future__ import annotations

import functools
import importlib
import re
from pathlib import Path
from typing import Callable

from ..errors import EfficientRepError
from ..messages import printable
from .notice import cannot_apply
from .wrapping import wrap_once

UNIFIED = re.compile(r"(\d+)([nslmx])(.+)?$")  # Ultralytics' rule: yolov8s-x.yaml -> yolov8-x.yaml
# Modules that bind yaml_model_load by name (tasks' own models, the package re-export, Model._new).
_YAML_LOAD_USERS = ("ultralytics.nn.tasks", "ultralytics.nn", "ultralytics.engine.model")


class ModelYAMLNotFoundError(EfficientRepError, FileNotFoundError):
    """A model YAML path names no file, neither itself nor the unified file its scale letter picks."""


def unified_by_file_name(path: Path) -> Path:
    """Return the unified YAML that Ultralytics' rule names for ``path``, applied to the file name only.

    ``/data/2024models/yolov8s-efficientrep.yaml`` -> ``/data/2024models/yolov8-efficientrep.yaml``.
    """
    return path.with_name(UNIFIED.sub(r"\1\3", path.name))


def misread_folder(path: Path) -> bool:
    """Return whether Ultralytics' whole-path rule would change a folder of ``path`` rather than its file name."""
    return UNIFIED.sub(r"\1\3", str(path)) != str(unified_by_file_name(path))


def _model_yaml(path: Path) -> Path:
    """Return the file to read for a model path: the path itself if it is a file, else its unified file by name."""
    unified = unified_by_file_name(path)
    for candidate in (path, unified):
        if candidate.is_file():
            return candidate
    also = "" if unified == path else f", nor does the unified {printable(unified.name)} beside it"
    raise ModelYAMLNotFoundError(f"model YAML {printable(str(path), 200)} does not exist{also}: check the path")


def _by_file_name(load: Callable) -> Callable:
    """Wrap ``yaml_model_load``: a path whose folders its rule would misread is resolved by its file name."""

    @functools.wraps(load)
    def yaml_model_load(path):
        if not isinstance(path, (str, Path)) or not misread_folder(Path(path)):
            return load(path)
        path = Path(path)
        tasks = importlib.import_module("ultralytics.nn.tasks")
        read = tasks.YAML.load if hasattr(tasks, "YAML") else tasks.yaml_load
        cfg = read(tasks.check_yaml(_model_yaml(path)))  # check_yaml: Ultralytics' suffix check
        cfg["scale"] = tasks.guess_model_scale(path)  # Ultralytics' own, from the file name
        cfg["yaml_file"] = str(path)
        return cfg

    return yaml_model_load


def install_scaled_paths() -> None:
    """Wrap ``yaml_model_load`` wherever Ultralytics has bound it; idempotent."""
    tasks = importlib.import_module("ultralytics.nn.tasks")
    lacks = [name for name in ("yaml_model_load", "guess_model_scale", "check_yaml") if not hasattr(tasks, name)]
    if not (hasattr(tasks, "YAML") or hasattr(tasks, "yaml_load")):  # YAML.load from 8.3.x, yaml_load before
        lacks.append("YAML.load")
    if lacks:
        cannot_apply(f"scaled model paths by file name (ultralytics.nn.tasks lacks {', '.join(lacks)})",
                     "a scaled model path whose folders hold a digit before n, s, l, m or x (2024models/) may not "
                     "build; pass it from a folder without one")
        return
    wrap_once(tasks, "yaml_model_load", _by_file_name, rebind=_YAML_LOAD_USERS)
