"""YOLOv6's EfficientRep blocks for Ultralytics YOLOv8, as a plugin: importing this package registers them."""

from .blocks import RepBlock, RepVGGBlock
from .registration import YAMLRowError, register

__version__ = "0.1.0"
__all__ = ("RepBlock", "RepVGGBlock", "YAMLRowError", "register")

register()
