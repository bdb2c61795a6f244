"""What the globals a checkpoint may name become in the child: inert values, never the functions or classes named.

A ``torch.save`` pickle names a few functions to rebuild tensors and containers (``torch._utils._rebuild_tensor_v2``,
``collections.OrderedDict``, ...), storage classes to give a tensor's element type, and module classes. Here each
allowed function is a small function of this module that checks its arguments and builds plain data; storage classes
are element types; module classes (the allow-list the parent passes) become ``Instance``s that only hold the state
the file gives them. Nothing the file names is ever imported or called.
"""

from __future__ import annotations

import struct
from typing import Callable

from .budgets import MAX_DIMENSIONS
from .refused import Refused, shown


class Instance:
    """An object of an allowed module class: its class path and the state the file gave it (once), nothing else."""

    __slots__ = ("class_path", "state")

    def __init__(self, class_path: str) -> None:
        self.class_path, self.state = class_path, None


class ModuleClass:
    """An allowed module class as named by the file: it can only make ``Instance``s without arguments."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class StorageType:
    """A storage class (``torch.HalfStorage``): only the element type it stands for."""

    __slots__ = ("dtype", "itemsize")

    def __init__(self, dtype: str, itemsize: int) -> None:
        self.dtype, self.itemsize = dtype, itemsize


class Storage:
    """A tensor storage record of the archive: its key, element type, element count and where its bytes are."""

    __slots__ = ("key", "dtype", "itemsize", "elements", "location")

    def __init__(self, key: str, kind: StorageType, elements: int) -> None:
        self.key, self.dtype, self.itemsize, self.elements = key, kind.dtype, kind.itemsize, elements
        self.location: tuple[int, int] | None = None  # (offset in the file, bytes), set once the archive checked it


class Tensor:
    """A tensor as a view of a storage: offset, size and stride in elements, checked to stay inside the storage."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class BoundMethod:
    """``getattr(module, name)`` as pickle stores a bound method (YOLOv6's fused blocks): only the name is kept."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class NumpyDtype:
    """``numpy.dtype`` of a plain number type, as data: its name and byte order."""

    __slots__ = ("name", "order")

    def __init__(self, name: str) -> None:
        self.name, self.order = name, "<"

    def build(self, state: object) -> None:
        """Take the byte order from the state numpy pickles after the dtype (``BUILD``)."""
        if not (isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "=")):
            raise Refused("content", "it holds a numpy dtype with an unknown state")
        self.order = "<" if state[1] in ("|", "=") else state[1]


def _count(value: object) -> bool:
    """Whether ``value`` is a non-negative integer (not a bool)."""
    return type(value) is int and value >= 0


def _no_hooks(hooks: object) -> bool:
    """Whether a tensor's pickled backward hooks are absent (None or an empty ``OrderedDict``)."""
    return hooks is None or (isinstance(hooks, dict) and not hooks)


def rebuild_tensor(storage: object, offset: object, size: object, stride: object, requires_grad: object = False,
                   hooks: object = None, metadata: object = None) -> Tensor:
    """``torch._utils._rebuild_tensor_v2``: a view of a storage, inside its bounds (no zero-stride giant views)."""
    if type(storage) is not Storage:
        raise Refused("content", "a tensor is built from something other than a storage record of the archive")
    if not (type(size) is tuple and type(stride) is tuple and len(size) == len(stride) <= MAX_DIMENSIONS
            and _count(offset) and all(map(_count, size + stride))):
        raise Refused("content", f"a tensor has an invalid layout (size {shown(size)}, stride {shown(stride)})")
    elements = 1
    for side in size:
        elements *= side
    last = offset + sum((side - 1) * step for side, step in zip(size, stride)) if elements else offset - 1
    if elements > storage.elements or last >= storage.elements:
        raise Refused("content", f"a tensor of {elements} elements reaches beyond its storage record of "
                                 f"{storage.elements} elements")
    if type(requires_grad) is not bool or not _no_hooks(hooks) or not (metadata is None or _no_hooks(metadata)):
        raise Refused("content", "a tensor carries hooks or extra state")
    return Tensor(storage, offset, size, stride)


def rebuild_parameter(data: object, requires_grad: object = False, hooks: object = None,
                      state: object = None) -> Tensor:
    """``torch._utils._rebuild_parameter`` (and ``_with_state``): a parameter is its tensor here."""
    if type(data) is not Tensor or not _no_hooks(hooks) or not (state is None or _no_hooks(state)):
        raise Refused("content", "a parameter is built from something other than a plain tensor")
    return data


class OrderedDictData(dict):
    """What ``collections.OrderedDict()`` makes: a dict (ordered), which ``SETITEMS`` fills and whose pickled
    attributes (a state dict's ``_metadata``) ``BUILD`` may give; they are not kept."""


def ordered_dict(*args: object) -> OrderedDictData:
    """``collections.OrderedDict()``: an empty dict, as torch pickles one."""
    if args:
        raise Refused("content", "an OrderedDict is built with arguments, which pickle never writes")
    return OrderedDictData()


def latin1_bytes(text: object, encoding: object = "latin1") -> bytes:
    """``_codecs.encode``: how pickle protocol 2 stores bytes (a latin-1 string); no other codec is looked up."""
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise Refused("content", f"bytes are encoded with {shown(encoding)}, not latin-1 as pickle writes them")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise Refused("content", "bytes are stored as text outside latin-1") from None


def bound_method(owner: object, name: object) -> BoundMethod:
    """``builtins.getattr``: a bound method of a module object, kept as its name; nothing is looked up."""
    if type(owner) is not Instance or type(name) is not str or not name.isidentifier() or len(name) > 64:
        raise Refused("content", "it looks up an attribute of something other than a module object")
    return BoundMethod(name)


def torch_size(sides: object = ()) -> tuple:
    """``torch.Size``: a tuple of non-negative integers."""
    if type(sides) is not tuple or len(sides) > MAX_DIMENSIONS or not all(map(_count, sides)):
        raise Refused("content", "a torch.Size that is not a short tuple of sizes")
    return sides


# numpy dtype names (as numpy pickles them) -> struct formats, for the scalars YOLOv6 0.4 stores in ``results``
NUMPY_SCALARS = {"f2": "e", "f4": "f", "f8": "d", "i1": "b", "i2": "h", "i4": "i", "i8": "q", "u1": "B", "u2": "H",
                 "u4": "I", "u8": "Q", "b1": "?"}


def numpy_dtype(name: object, align: object = False, copy: object = False) -> NumpyDtype:
    """``numpy.dtype``: a plain number type, by name."""
    if type(name) is not str or name not in NUMPY_SCALARS:
        raise Refused("content", f"it holds a numpy dtype {shown(name)}, not a plain number type")
    return NumpyDtype(name)


def numpy_scalar(dtype: object, data: object) -> int | float | bool:
    """``numpy.core.multiarray.scalar``: a plain Python number decoded from its bytes."""
    if type(dtype) is not NumpyDtype or type(data) is not bytes:
        raise Refused("content", "it holds a numpy scalar that is not a plain number")
    layout = dtype.order + NUMPY_SCALARS[dtype.name]
    if len(data) != struct.calcsize(layout):
        raise Refused("content", "it holds a numpy scalar with the wrong number of bytes")
    return struct.unpack(layout, data)[0]


def _set(items: object = ()) -> list:
    """``builtins.set``: the items, checked by the machine like a set's (``Machine`` makes the set)."""
    if type(items) is not list:
        raise Refused("content", "a set is built from something other than a list")
    return items


FUNCTIONS: dict[str, Callable] = {
    "torch._utils._rebuild_tensor_v2": rebuild_tensor,
    "torch._utils._rebuild_parameter": rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": rebuild_parameter,
    "collections.OrderedDict": ordered_dict,
    "builtins.set": _set,
    "__builtin__.set": _set,  # protocol 2's name of the builtins module
    "_codecs.encode": latin1_bytes,
    "builtins.getattr": bound_method,
    "__builtin__.getattr": bound_method,
    "torch.Size": torch_size,
    "numpy.dtype": numpy_dtype,
    "numpy.core.multiarray.scalar": numpy_scalar,  # numpy 1.x
    "numpy._core.multiarray.scalar": numpy_scalar,  # numpy 2.x
}
SET_FUNCTIONS = frozenset({"builtins.set", "__builtin__.set"})

# torch's storage classes -> (element type as torch names it, bytes per element)
STORAGE_TYPES: dict[str, StorageType] = {
    f"torch.{name}Storage": StorageType(dtype, size) for name, dtype, size in (
        ("Half", "float16", 2), ("Float", "float32", 4), ("Double", "float64", 8), ("BFloat16", "bfloat16", 2),
        ("Long", "int64", 8), ("Int", "int32", 4), ("Short", "int16", 2), ("Char", "int8", 1), ("Byte", "uint8", 1),
        ("Bool", "bool", 1))}
