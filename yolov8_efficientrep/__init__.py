"""YOLOv6's EfficientRep blocks for Ultralytics YOLOv8, as a plugin: importing this package registers them."""

from .blocks import BottleRep, QARepVGGBlock, RepBlock, RepVGGBlock
from .checkpoints import scope_restricted_loading
from .csp_blocks import BepC3, CSPSPPF, SimCSPSPPF, SimSPPF
from .export import register_callbacks
from .fusion import FusionCheckError, fuse_checkpoint, fuse_model
from .registration import register
from .row_errors import UnknownModuleError, YAMLRowError

__version__ = "0.1.0"
__all__ = ("BepC3", "BottleRep", "CSPSPPF", "FusionCheckError", "QARepVGGBlock", "RepBlock", "RepVGGBlock",
           "SimCSPSPPF", "SimSPPF", "UnknownModuleError", "YAMLRowError", "fuse_checkpoint", "fuse_model", "register")

register()
scope_restricted_loading()  # ULTRALYTICS_SAFE_LOAD=1 may then load checkpoints with plugin blocks
register_callbacks()
