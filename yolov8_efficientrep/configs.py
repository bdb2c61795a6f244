"""The YAMLs this package ships (``cfg/``), by bare name: ``yolov8n-efficientrep.yaml``, ``shapes.yaml``.

``integration/lookups.py`` lets Ultralytics' own lookups fall back to these for a bare name that is not a file in the
working directory.
"""

from __future__ import annotations

import re
from pathlib import Path

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


def scaled_name(stem: str, scale: str) -> str:
    """Return the file name that picks ``scale`` of a unified config, Ultralytics' way.

    The scale letter follows the family's name: ``yolov8-efficientrep`` -> ``yolov8n-efficientrep.yaml``,
    ``yolo26-efficientrep`` -> ``yolo26n-efficientrep.yaml``, ``yolov6-reppan`` -> ``yolov6n-reppan.yaml``.
    """
    return re.sub(r"^(yolov?\d+)", rf"\g<1>{scale}", stem) + ".yaml"
