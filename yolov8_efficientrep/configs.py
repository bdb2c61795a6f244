"""Find the model YAMLs this package ships, so ``YOLO("yolov8n-efficientrep.yaml")`` works from any directory."""

from __future__ import annotations

import functools
from pathlib import Path
from types import ModuleType

# The repository's top-level cfg/ (a symlink inside the package, so wheels and editable installs both carry it).
CFG_DIR = Path(__file__).resolve().parent / "cfg"


def bundled_yaml(name: str | Path) -> Path | None:
    """Return the shipped YAML for a bare file name such as ``yolov8-efficientrep.yaml``, else None.

    Only bare names are looked up: a path with a directory part means the user chose a location.
    """
    path = Path(name)
    if path.parent != Path(".") or path.exists():
        return None
    candidate = CFG_DIR / path.name
    return candidate if candidate.is_file() else None


def install_bundled_lookup(tasks: ModuleType) -> None:
    """Make ``tasks.check_yaml`` (used by ``yaml_model_load``) fall back to the shipped YAMLs for bare names.

    Names Ultralytics ships never collide with ours, so its own lookups are unchanged.
    """
    check_yaml = tasks.check_yaml

    @functools.wraps(check_yaml)
    def check_yaml_or_bundled(file, *args, **kwargs):
        bundled = bundled_yaml(file)
        return str(bundled) if bundled else check_yaml(file, *args, **kwargs)

    tasks.check_yaml = check_yaml_or_bundled
