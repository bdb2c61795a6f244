"""Every global a foreign checkpoint may name, by exact name, and what each one becomes. Review changes here.

Pickle names a global (``module.name``) and then calls it or creates an object of it. A checkpoint file may name:

- ``REBUILDERS``: the functions torch and numpy need to rebuild tensors, dicts, sets, bytes and numpy scalars. Each
  name maps to a small function of this module that rebuilds exactly that data, checks its arguments, and never
  calls anything the file chose (torch's and numpy's own functions are not called: a numpy scalar, for example, is
  decoded here with ``struct`` from a dtype name this module knows).
- ``STORAGE_DTYPES``: torch's storage classes, which a file names to say a tensor's element type; they become the
  dtype, and are only read inside the reference to a storage record of the archive.
- ``RECORD_CLASSES``: the module classes of YOLOv6 releases 0.1.0-0.4.1 and the torch layers those releases build.
  An object of such a class is never created: it becomes an inert ``Record`` (see ``inert.py``).

Nothing else: any other name, however harmless it looks, is refused before the file is unpickled. There are no
prefixes: ``numpy.testing`` and ``numpy.f2py`` hold functions that run strings, and a torch layer class, called
with arguments of the file's choosing, allocates as much memory as the file asks for.
"""

from __future__ import annotations

import struct
from typing import Callable

import torch

from .inert import UntrustedFileError, ValueWrapper

MAX_DIMENSIONS = 8  # of one tensor: convolution weights have 4


def _count(value: object) -> bool:
    """Whether ``value`` is a non-negative integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rebuild_tensor(storage: object, offset: object, size: object, stride: object, requires_grad: object = False,
                    hooks: object = None, metadata: object = None) -> ValueWrapper:
    """``torch._utils._rebuild_tensor_v2``: a tensor viewing a storage record, inside that record's bounds.

    The view may not hold more elements than its storage: a file cannot turn a one-element record into a huge
    tensor through zero strides, which any later ``float()`` or comparison would materialize.
    """
    if not (isinstance(storage, ValueWrapper) and isinstance(storage.value, torch.Tensor) and storage.value.dim() == 1):
        raise UntrustedFileError("a tensor is built from something other than a storage record of the archive")
    flat: torch.Tensor = storage.value
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) <= MAX_DIMENSIONS
            and _count(offset) and all(map(_count, size + stride))):
        raise UntrustedFileError(f"a tensor has an invalid layout: size {size!r}, stride {stride!r}, offset {offset!r}")
    elements = 1
    for side in size:
        elements *= side
    last = offset + sum((side - 1) * step for side, step in zip(size, stride)) if elements else offset - 1
    if elements > flat.numel() or last >= flat.numel():
        raise UntrustedFileError(f"a tensor of size {size} reaches beyond its storage record of {flat.numel()} elements")
    if hooks:
        raise UntrustedFileError("a tensor carries backward hooks")
    return ValueWrapper(flat.as_strided(size, stride, offset))


def _rebuild_parameter(data: object, requires_grad: object = False, hooks: object = None,
                       state: object = None) -> ValueWrapper:
    """``torch._utils._rebuild_parameter`` (and ``_with_state``): a parameter is its tensor here."""
    if not (isinstance(data, ValueWrapper) and isinstance(data.value, torch.Tensor)) or hooks:
        raise UntrustedFileError("a parameter is built from something other than a tensor, or carries hooks")
    return data


def _ordered_dict(items: object = ()) -> dict:
    """``collections.OrderedDict``: a plain dict (insertion-ordered), filled from pairs or later by ``SETITEMS``."""
    return dict(items) if isinstance(items, (list, tuple)) else {}


def _set(items: object = ()) -> set:
    """``builtins.set``: a set of the items the file lists."""
    if not isinstance(items, (list, tuple)):
        raise UntrustedFileError("a set is built from something other than a list")
    return set(items)


def _latin1_bytes(text: object, encoding: object = "latin1") -> bytes:
    """``_codecs.encode``: how pickle protocol 2 stores bytes (a latin-1 string); no other codec is looked up."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UntrustedFileError(f"bytes are encoded with {encoding!r}, not latin-1 as pickle writes them")
    return text.encode("latin-1")


def _bound_method(owner: object, name: object) -> str:
    """``builtins.getattr``: how pickle stores a bound method (YOLOv6's ``fuse_model`` sets ``forward_fuse``).

    Only the method's name is kept, marking the module as fused; nothing is looked up on ``owner``.
    """
    return f"bound method {name}"


# numpy dtype names (as numpy pickles them) -> struct formats, for the scalars YOLOv6 0.4 stores in ``results``
NUMPY_SCALARS = {"f2": "e", "f4": "f", "f8": "d", "i1": "b", "i2": "h", "i4": "i", "i8": "q", "u1": "B", "u2": "H",
                 "u4": "I", "u8": "Q", "b1": "?"}


class NumpyDtype:
    """``numpy.dtype``: a dtype name and byte order as data; only names in ``NUMPY_SCALARS`` may be decoded."""

    def __init__(self, name: object, align: object = False, copy: object = False) -> None:
        if name not in NUMPY_SCALARS:
            raise UntrustedFileError(f"a numpy dtype {name!r}, not a plain number type")
        self.name, self.order = name, "<"

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "=")):
            raise UntrustedFileError("a numpy dtype with an unknown state")
        self.order = "<" if state[1] in ("|", "=") else state[1]


def _numpy_scalar(dtype: object, data: object) -> int | float | bool:
    """``numpy.core.multiarray.scalar``: a plain Python number decoded from its bytes."""
    if not (isinstance(dtype, NumpyDtype) and isinstance(data, bytes)):
        raise UntrustedFileError("a numpy scalar that is not a plain number")
    layout = dtype.order + NUMPY_SCALARS[dtype.name]
    if len(data) != struct.calcsize(layout):
        raise UntrustedFileError("a numpy scalar with the wrong number of bytes")
    return struct.unpack(layout, data)[0]


REBUILDERS: dict[str, Callable] = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "collections.OrderedDict": _ordered_dict,
    "builtins.set": _set,
    "__builtin__.set": _set,  # protocol 2's name of the builtins module
    "_codecs.encode": _latin1_bytes,
    "builtins.getattr": _bound_method,
    "__builtin__.getattr": _bound_method,
    "numpy.dtype": NumpyDtype,
    "numpy.core.multiarray.scalar": _numpy_scalar,  # numpy 1.x
    "numpy._core.multiarray.scalar": _numpy_scalar,  # numpy 2.x
}

STORAGE_DTYPES: dict[str, torch.dtype] = {
    "torch.HalfStorage": torch.float16, "torch.FloatStorage": torch.float32, "torch.DoubleStorage": torch.float64,
    "torch.BFloat16Storage": torch.bfloat16, "torch.LongStorage": torch.int64, "torch.IntStorage": torch.int32,
    "torch.ShortStorage": torch.int16, "torch.CharStorage": torch.int8, "torch.ByteStorage": torch.uint8,
    "torch.BoolStorage": torch.bool,
}

# The torch layers YOLOv6 0.1.0-0.4.1 build (every nn.<Layer> in yolov6/layers and yolov6/models of each tag).
TORCH_LAYERS = frozenset(f"torch.nn.modules.{name}" for name in (
    "conv.Conv2d", "conv.ConvTranspose2d", "batchnorm.BatchNorm2d", "container.Sequential", "container.ModuleList",
    "activation.ReLU", "activation.SiLU", "activation.Hardswish", "activation.Hardsigmoid", "linear.Identity",
    "pooling.MaxPool2d", "pooling.AvgPool2d", "pooling.AdaptiveAvgPool2d", "upsampling.Upsample",
))

# YOLOv6's module classes of tags 0.1.0-0.4.1 (every class of yolov6/layers/common.py and of the model modules),
# detection, Lite, segmentation and P6 alike: architecture.py names the families it does not import.
YOLOV6_CLASSES = frozenset(
    [f"yolov6.layers.common.{name}" for name in (
        "BepC3", "BiFusion", "BottleRep", "BottleRep3", "CSPBlock", "CSPSPPF", "CSPSPPFModule", "Concat", "Conv",
        "ConvBN", "ConvBNHS", "ConvBNReLU", "ConvBNSiLU", "ConvModule", "ConvWrapper", "Conv_C3", "DPBlock",
        "DarknetBlock", "LinearAddBlock", "Lite_EffiBlockS1", "Lite_EffiBlockS2", "MBLABlock", "QARepVGGBlock",
        "QARepVGGBlockV2", "RealVGGBlock", "RepBlock", "RepVGGBlock", "SEBlock", "SPPF", "SPPFModule", "ScaleLayer",
        "SiLU", "SimCSPSPPF", "SimConv", "SimConvWrapper", "SimSPPF", "Transpose")]
    + [f"yolov6.models.efficientrep.{name}" for name in (
        "CSPBepBackbone", "CSPBepBackbone_P6", "EfficientRep", "EfficientRep6", "Lite_EffiBackbone")]
    + [f"yolov6.models.reppan.{name}" for name in (
        "CSPRepBiFPANNeck", "CSPRepBiFPANNeck_P6", "CSPRepPANNeck", "CSPRepPANNeck_P6", "Lite_EffiNeck",
        "RepBiFPANNeck", "RepBiFPANNeck6", "RepPANNeck", "RepPANNeck6")]
    + ["yolov6.models.yolo.Model", "yolov6.models.yolo_lite.Model", "yolov6.models.effidehead.Detect",
       "yolov6.models.effidehead_seg.Detect", "yolov6.models.heads.effidehead_distill_ns.Detect",
       "yolov6.models.heads.effidehead_fuseab.Detect", "yolov6.models.heads.effidehead_lite.Detect"]
    + [f"yolov6.models.heads.{head}.{name}" for head in ("effidehead_fuseab_seg", "effidehead_fuseab_seg_solo")
       for name in ("Conv", "Detect", "Proto")]
)

RECORD_CLASSES = TORCH_LAYERS | YOLOV6_CLASSES
