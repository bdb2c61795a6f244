"""YOLOv6's EfficientRep blocks for Ultralytics YOLOv8, as a plugin: importing this package registers them.

Registration patches Ultralytics (``integration.install()``): at once if Ultralytics is imported already, else as
soon as Ultralytics has finished importing (the start-up hook's finder, ``yolov8_efficientrep_hook.py``), before
anything can build a model. Importing the package itself imports neither torch nor Ultralytics, so the command line
starts at once; the row classes (``RepVGGBlock``, ...) and the public functions load on first use.
"""

from __future__ import annotations

import importlib
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


def _register_with_ultralytics() -> None:
    """Register now if Ultralytics is imported, else as soon as it is (an error then fails that import)."""
    if "ultralytics" in sys.modules:
        register()
        return
    try:
        import yolov8_efficientrep_hook
    except ImportError:  # a frozen application without the hook module: register now
        register()
        return
    yolov8_efficientrep_hook.install(strict=True)


_register_with_ultralytics()
