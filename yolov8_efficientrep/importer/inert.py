"""What a foreign checkpoint's objects become when read: inert records, never the classes the file names.

A YOLOv6 checkpoint pickles its whole network: module objects by class path (``yolov6.layers.common.RepVGGBlock``,
``torch.nn.modules.conv.Conv2d``), their attributes, child modules and tensors. The reader never creates an object of
such a class. While unpickling, each module object is a ``PickledObject`` that only stores the state the file gives
it; afterwards ``Record`` holds the same content as plain data: the class path, the attributes, the child records and
the tensors, with the few read-only helpers (``named_modules``, ``state_dict``) that the importer's architecture and
remapping steps use.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import torch

from ..errors import EfficientRepError


class UntrustedFileError(EfficientRepError, ValueError):
    """A foreign checkpoint holds something the inert reader refuses; the message says what."""


class PickledObject:
    """A module object while the file is unpickled: its class path and the state the file gave it, nothing else.

    Pickle creates such an object without arguments (``NEWOBJ``) and hands it its state (``BUILD``); a file that
    tries to call the class with arguments, or to give the object more than one state, is refused.
    """

    class_path = ""  # set on the per-path subclass that the unpickler creates

    def __new__(cls, *args: object, **kwargs: object):
        if args or kwargs:
            raise UntrustedFileError(f"the file constructs {cls.class_path} with arguments; a checkpoint stores module "
                                     f"objects, it does not call their classes")
        return super().__new__(cls)

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise UntrustedFileError(f"the file calls {self.class_path}; a checkpoint stores module objects, it does not "
                                 f"call their classes")

    def __setstate__(self, state: object) -> None:
        if "state" in vars(self):
            raise UntrustedFileError(f"the file gives a {self.class_path} object its state twice")
        vars(self)["state"] = state


class ValueWrapper:
    """A value the allow-listed rebuild functions returned (a tensor, a storage), wrapped so pickle cannot modify it.

    Pickle's ``BUILD`` would otherwise call the value's own ``__setstate__`` (a tensor's) with data from the file.
    """

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __setstate__(self, state: object) -> None:
        raise UntrustedFileError(f"the file modifies a rebuilt {type(self.value).__name__} after building it")


def class_path(cls: type) -> str:
    """Return the import path pickle records for a class: ``torch.nn.modules.conv.Conv2d``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class Record:
    """A module object from a foreign checkpoint, as data: class path, attributes, child records and tensors.

    Attribute access reads the child records, then the tensors (parameters and buffers, None where the module had
    none, such as a bias-free convolution's ``bias``), then the plain attributes, as ``nn.Module`` resolves them.

    Attributes:
        class_path (str): The pickled class, e.g. ``yolov6.layers.common.RepVGGBlock``.
        attributes (dict[str, object]): Plain attributes (strides, BN ``eps``, flags, ``nc``...).
        children (dict[str, Record | None]): Child modules, in the order the module registered them.
        tensors (dict[str, torch.Tensor | None]): Parameters, then buffers, in registration order.
    """

    __slots__ = ("class_path", "attributes", "children", "tensors", "_unsaved")

    def __init__(self, path: str, attributes: dict[str, object], children: dict[str, Record | None],
                 tensors: dict[str, torch.Tensor | None], unsaved: frozenset[str] = frozenset()) -> None:
        self.class_path = path
        self.attributes = attributes
        self.children = children
        self.tensors = tensors
        self._unsaved = unsaved  # buffers a state dict leaves out (nn.Module's non-persistent buffers)

    @property
    def class_name(self) -> str:
        """The class name without its module: ``RepVGGBlock``."""
        return self.class_path.rpartition(".")[2]

    def is_instance_of(self, cls: type) -> bool:
        """Return whether the pickled class is exactly ``cls`` (by import path; subclasses do not count)."""
        return self.class_path == class_path(cls)

    def __getattr__(self, name: str) -> object:
        for table in ("children", "tensors", "attributes"):
            values = object.__getattribute__(self, table)
            if name in values:
                return values[name]
        raise AttributeError(f"{self.class_path} record has no attribute {name!r}")

    def __repr__(self) -> str:
        """Torch's way of printing a layer, for error messages: ``BatchNorm2d(16, eps=0.001, momentum=0.03)``."""
        counts = [repr(self.attributes[key]) for key in ("num_features", "in_channels", "out_channels")
                  if key in self.attributes]
        settings = [f"{key}={self.attributes[key]!r}" for key in ("kernel_size", "stride", "padding", "eps", "momentum")
                    if key in self.attributes]
        return f"{self.class_name}({', '.join(counts + settings)})"

    # containers (Sequential, ModuleList) -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Record | None]:
        return iter(self.children.values())

    def __len__(self) -> int:
        return len(self.children)

    def __getitem__(self, index: int) -> Record | None:
        return list(self.children.values())[index]

    # the read-only part of nn.Module's interface ---------------------------------------------------------------------

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Record]]:
        """Yield ``(dotted name, record)`` for this record and every record below it, each once, parents first."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, record = stack.pop()
            if id(record) in seen:
                continue
            seen.add(id(record))
            yield name, record
            children = [(f"{name}.{key}" if name else key, child) for key, child in record.children.items()
                        if child is not None]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Record]:
        """Yield this record and every record below it."""
        return (record for _, record in self.named_modules())

    def state_dict(self) -> OrderedDict[str, torch.Tensor]:
        """Return the tensors of this record and every record below it under dotted names, as ``nn.Module`` does."""
        state: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name, record in self.named_modules():
            for key, tensor in record.tensors.items():
                if tensor is not None and key not in record._unsaved:
                    state[f"{name}.{key}" if name else key] = tensor
        return state

    def get_parameter(self, target: str) -> torch.Tensor:
        """Return the tensor at a dotted path below this record (``proj_conv.weight``)."""
        *path, name = target.split(".")
        record = self
        for part in path:
            record = record.children[part]
        tensor = record.tensors.get(name)
        if tensor is None:
            raise AttributeError(f"{self.class_path} record has no tensor {target!r}")
        return tensor
