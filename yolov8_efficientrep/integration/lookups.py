"""Let Ultralytics find the YAMLs this package ships by bare name, from any directory.

Model YAMLs go through ``ultralytics.nn.tasks.check_yaml``, data YAMLs through ``check_file`` in
``ultralytics.data.utils``; both fall back to the shipped ``cfg/`` for a bare name that is not a file in the working
directory. Ultralytics ships no YAML with these names, so its own lookups are unchanged. Classification data YAMLs
(``shapes-cls.yaml``) also need ``check_cls_dataset`` to accept them.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Callable

from ..configs import bundled_yaml
from ..dataset_folders import classification_folder
from .notice import cannot_apply
from .wrapping import wrap_once

# Modules that bind check_cls_dataset by name at import: those already imported keep the original unless rebound.
_CLS_DATASET_USERS = ("ultralytics.engine.trainer", "ultralytics.engine.validator", "ultralytics.engine.exporter")


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


def install_yaml_lookups() -> None:
    """Wrap ``check_yaml`` (model YAMLs), ``check_file`` (data YAMLs) and ``check_cls_dataset`` where Ultralytics has
    bound them; idempotent."""
    tasks = importlib.import_module("ultralytics.nn.tasks")
    data_utils = importlib.import_module("ultralytics.data.utils")
    for module, name, wrap, loses in (
            (tasks, "check_yaml", _or_bundled, "shipped model YAMLs need their path (cfg/...), not a bare name"),
            (data_utils, "check_file", _or_bundled, "shipped data YAMLs need their path (cfg/...), not a bare name"),
            (data_utils, "check_cls_dataset", _accepting_generated_yamls,
             "classification training cannot take shapes-cls.yaml; pass its generated folder")):
        if getattr(module, name, None) is None:
            cannot_apply(f"the bare-name lookup ({module.__name__}.{name})", loses)
        else:
            wrap_once(module, name, wrap, rebind=_CLS_DATASET_USERS if name == "check_cls_dataset" else ())
