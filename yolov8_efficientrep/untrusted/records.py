"""What an untrusted checkpoint's module objects become in this process: inert records, never the classes named.

A checkpoint pickles its whole network: module objects by class path (``yolov6.layers.common.RepVGGBlock``,
``torch.nn.modules.conv.Conv2d``), their attributes, child modules and tensors. The jailed reader hands back that
content as data, and ``decode`` makes a ``Record`` of each module object: the class path, the attributes, the child
records and the tensors, with the few read-only helpers (``named_modules``, ``state_dict``) that the YOLOv6
importer and ``fuse`` use. No object of a class the file names is ever created.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import torch

from ..messages import printable


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
        counts = [_shown(self.attributes[key]) for key in ("num_features", "in_channels", "out_channels")
                  if key in self.attributes]
        settings = [f"{key}={_shown(self.attributes[key])}" for key in ("kernel_size", "stride", "padding", "eps",
                                                                        "momentum") if key in self.attributes]
        return f"{printable(self.class_name, 60)}({', '.join(counts + settings)})"

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


def _shown(value: object) -> str:
    """A layer setting as torch prints it, if it is the numbers or tuple of numbers a setting is, else its type."""
    plain = isinstance(value, (int, float)) or (isinstance(value, tuple) and len(value) <= 4
                                                and all(isinstance(item, (int, float)) for item in value))
    return repr(value) if plain else printable(value, 20)
