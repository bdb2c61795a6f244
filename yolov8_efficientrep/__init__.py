"""YOLOv6's EfficientRep blocks for Ultralytics YOLOv8, as a plugin: importing this package registers them.

Registration (``register()``, ``integration.install()``) patches Ultralytics, which it imports. The plugin's own
command (``yolov8-efficientrep``, ``python -m yolov8_efficientrep``) registers only when a sub-command runs, so that
``--help`` imports neither torch nor Ultralytics; the row classes (``RepVGGBlock``, ...) and the public functions
load on first use.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

__version__ = "0.1.0"
# The public names besides the row classes (rows.py's table), and the module each one lives in.
_PUBLIC = {"EfficientRepError": "errors", "FusionCheckError": "fusion", "UnknownModuleError": "row_errors",
           "YAMLRowError": "row_errors", "fuse_checkpoint": "checkpoints", "fuse_model": "fusion"}
_SUBMODULES = frozenset(module.name for module in pkgutil.iter_modules(__path__))


def register() -> None:
    """Patch the running Ultralytics so that its parser, loaders, exporter and trainer know the plugin; idempotent.

    Raises:
        ImportError: The installed Ultralytics is outside the supported range, or its parser has an unknown shape.
    """
    from .integration import install

    install()


def _row_classes() -> dict[str, type]:
    from .rows import ROWS, is_plugin_class

    return {row.name: row.cls for row in ROWS if is_plugin_class(row.cls)}


def __getattr__(name: str) -> object:
    """Load a public name on first use: a row class by its row name, or one of ``_PUBLIC``; ``__all__``."""
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    if name == "__all__":
        return (*_row_classes(), *_PUBLIC, "register")
    if not name.startswith("_") and name not in _SUBMODULES:  # a submodule is imported by the import system
        rows = _row_classes()
        if name in rows:
            return rows[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _own_command() -> bool:
    """Return whether this interpreter runs the plugin's command: its console script, or ``python -m`` of it."""
    argv = getattr(sys, "orig_argv", sys.argv)
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1] == __name__
    return os.path.basename(sys.argv[0] if sys.argv else "").startswith("yolov8-efficientrep")


if not _own_command():
    register()
