"""Import YOLOv6's trained weights: ``import_yolov6()`` and the ``import-yolov6`` command.

Modules, in the order a checkpoint goes through them: ``reader`` (read as data by the jailed reader of ``untrusted/``,
no YOLOv6 needed, with ``allow_list``'s exact class names; module objects become inert records), ``architecture``
(what the network is), ``forms`` (which shipped config reproduces it), ``remap`` (YOLOv6 tensors into that config, by
structure), ``convert`` (build, check, write).
"""

from .architecture import Architecture, HeadLayout, detect_architecture
from .convert import ImportResult, import_yolov6
from .reader import YOLOv6Checkpoint, YOLOv6ImportError, read_checkpoint

__all__ = ("Architecture", "HeadLayout", "ImportResult", "YOLOv6Checkpoint", "YOLOv6ImportError",
           "detect_architecture", "import_yolov6", "read_checkpoint")
