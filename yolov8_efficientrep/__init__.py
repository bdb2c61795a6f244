"""YOLOv6's EfficientRep blocks for Ultralytics YOLOv8, as a plugin: importing this package registers them."""

from .checkpoints import fuse_checkpoint
from .fusion import FusionCheckError, fuse_model
from .integration import install as register  # the public name: importing the package has already called it
from .row_errors import UnknownModuleError, YAMLRowError
from .rows import ROWS, is_plugin_class

_ROW_CLASSES = {row.name: row.cls for row in ROWS if is_plugin_class(row.cls)}
globals().update(_ROW_CLASSES)  # every row class of the table, importable from the package by its row name

__version__ = "0.1.0"
__all__ = (*_ROW_CLASSES, "FusionCheckError", "UnknownModuleError", "YAMLRowError", "fuse_checkpoint", "fuse_model",
           "register")

register()
