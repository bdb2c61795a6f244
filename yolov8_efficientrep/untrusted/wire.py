"""What the child hands back: the checkpoint as JSON-ready data, never a pickled object (child side).

The format (one JSON object), with every count bounded by ``budgets``:

- ``globals``: every global the pickle names, in order;
- ``root``: ``[entry key, record index]`` of the network (the first of the requested entries that holds a module);
- ``entries``: ``[[key, value], ...]``, the checkpoint's other entries that are plain data; ``unread``: the keys of
  those that are not (optimizer state, ...), which no caller reads;
- ``records``: per module object ``{"c": class path, "m": [[name, record index or null]], "p": [[name, tensor index
  or null]] (parameters, then buffers), "u": [buffer names left out of a state dict], "a": [[name, value]]}``;
- ``tensors``: ``{"s": storage index, "o": offset, "z": size, "d": stride}`` (in elements);
- ``storages``: ``{"k": record key, "t": element type, "n": elements, "at": offset of its bytes in the file}``.

A value is a JSON null, bool, number or string, a list ``[...]``, or an object with one key: ``t`` (a tuple), ``d``
(a dict as ``[[key, value], ...]``), ``s`` (a set), ``b`` (bytes, hex), ``r`` (a record), ``x`` (a tensor), ``m``
(a bound method's name). Shared parts of a value are written out each time they appear, within ``MAX_VALUE_NODES``.
"""

from __future__ import annotations

from typing import Callable

from .budgets import MAX_NESTING, MAX_RECORDS, MAX_TENSORS, MAX_TOTAL_VALUE_NODES, MAX_VALUE_NODES
from .rebuilders import BoundMethod, Instance, OrderedDictData, Storage, Tensor
from .refused import Refused, shown

MODULE_STATE = ("_modules", "_parameters", "_buffers", "_non_persistent_buffers_set")


class NotPlain(Exception):
    """A checkpoint entry holds more than plain data (or too much of it): it is listed as unread."""


class Encoder:
    """Turn what ``Machine`` built into the wire format.

    Args:
        locate (Callable): Called with a ``Storage``; returns (offset of its bytes in the file, size), verified.
    """

    def __init__(self, locate: Callable[[Storage], tuple[int, int]]) -> None:
        self.locate = locate
        self.records: list[dict] = []
        self.tensors: list[dict] = []
        self.storages: list[dict] = []
        self._record_index: dict[int, int] = {}
        self._tensor_index: dict[int, int] = {}
        self._storage_index: dict[str, int] = {}
        self._pending: list[Instance] = []
        self._nodes = 0

    def checkpoint(self, checkpoint: object, roots: tuple[str, ...], globals_: list[str]) -> dict:
        """Return the wire-format dict of a checkpoint, its network taken from the first of ``roots`` that holds one."""
        if not isinstance(checkpoint, dict) or not all(type(key) is str for key in checkpoint):
            raise Refused("content", f"it holds {shown(checkpoint)}, not a checkpoint dict of named entries")
        root_key = next((key for key in roots if type(checkpoint.get(key)) is Instance), None)
        entries, unread = [], []
        for key, value in checkpoint.items():
            if key == root_key:
                continue
            try:
                entries.append([key, self.value(value, refs=False)])
            except NotPlain:
                unread.append(key)
        root = None
        if root_key is not None:
            root = [root_key, self._record(checkpoint[root_key])]
            while self._pending:
                self._fill(self._pending.pop())
        return {"globals": globals_, "root": root, "entries": entries, "unread": unread, "records": self.records,
                "tensors": self.tensors, "storages": self.storages}

    # --- module records ---------------------------------------------------------------------------------------------

    def _record(self, instance: Instance) -> int:
        index = self._record_index.get(id(instance))
        if index is None:
            if len(self.records) >= MAX_RECORDS:
                raise Refused("budget", f"it holds more than {MAX_RECORDS:,} module objects")
            index = self._record_index[id(instance)] = len(self.records)
            self.records.append({"c": instance.class_path})
            self._pending.append(instance)
        return index

    def _fill(self, instance: Instance) -> None:
        """Write a module object's children, tensors and attributes into its record."""
        record, path = self.records[self._record_index[id(instance)]], shown(instance.class_path, 120)
        state = instance.state
        if state is None:
            raise Refused("content", f"it holds a {path} object that was given no state")
        modules, parameters, buffers, unsaved = (state.get(key, empty) for key, empty in zip(
            MODULE_STATE, ({}, {}, {}, set())))
        if not (isinstance(modules, dict) and all(type(child) is Instance or child is None for child in modules.values())
                and all(isinstance(t, dict) and all(type(v) is Tensor or v is None for v in t.values())
                        for t in (parameters, buffers))
                and type(unsaved) is set and all(type(name) is str for name in unsaved)):
            raise Refused("content", f"its {path} object holds other things than modules and tensors in their places")
        record["m"] = [[name, None if child is None else self._record(child)] for name, child in modules.items()]
        record["p"] = [[name, None if tensor is None else self._tensor(tensor)]
                       for table in (parameters, buffers) for name, tensor in table.items()]
        record["u"] = sorted(unsaved)
        try:
            record["a"] = [[key, self.value(value, refs=True)] for key, value in state.items()
                           if not key.startswith("_")]  # nn.Module's other bookkeeping (hooks, ...) is not read
        except NotPlain as error:
            raise Refused("content", f"its {path} object has an attribute holding {error}") from None

    def _tensor(self, tensor: Tensor) -> int:
        index = self._tensor_index.get(id(tensor))
        if index is None:
            if len(self.tensors) >= MAX_TENSORS:
                raise Refused("budget", f"it holds more than {MAX_TENSORS:,} tensors")
            index = self._tensor_index[id(tensor)] = len(self.tensors)
            self.tensors.append({"s": self._storage(tensor.storage), "o": tensor.offset, "z": list(tensor.size),
                                 "d": list(tensor.stride)})
        return index

    def _storage(self, storage: Storage) -> int:
        index = self._storage_index.get(storage.key)
        if index is None:
            offset, _ = self.locate(storage)
            index = self._storage_index[storage.key] = len(self.storages)
            self.storages.append({"k": storage.key, "t": storage.dtype, "n": storage.elements, "at": offset})
        return index

    # --- plain values -------------------------------------------------------------------------------------------------

    def value(self, value: object, refs: bool) -> object:
        """Encode one value; with ``refs``, module objects and tensors inside it become references."""
        budget = [MAX_VALUE_NODES]
        encoded = self._value(value, refs, 0, budget)
        self._nodes += MAX_VALUE_NODES - budget[0]
        if self._nodes > MAX_TOTAL_VALUE_NODES:
            raise Refused("budget", f"its attributes and entries hold more than {MAX_TOTAL_VALUE_NODES:,} values")
        return encoded

    def _value(self, value: object, refs: bool, depth: int, budget: list[int]) -> object:
        budget[0] -= 1
        if budget[0] < 0:
            raise NotPlain(f"more than {MAX_VALUE_NODES:,} values") if not refs else \
                Refused("budget", f"a value holds more than {MAX_VALUE_NODES:,} values (shared parts counted each "
                                  f"time they appear)")
        if depth > MAX_NESTING:
            raise NotPlain(f"values nested over {MAX_NESTING} deep") if not refs else \
                Refused("budget", f"a value nests more than {MAX_NESTING} levels deep")
        kind = type(value)
        if value is None or kind in (bool, int, float, str):
            return value
        if kind is bytes:
            return {"b": value.hex()}
        if kind in (list, tuple, set, frozenset):
            items = [self._value(item, refs, depth + 1, budget) for item in value]
            return items if kind is list else {"t": items} if kind is tuple else {"s": items}
        if kind in (dict, OrderedDictData):
            return {"d": [[self._value(key, refs, depth + 1, budget), self._value(item, refs, depth + 1, budget)]
                          for key, item in value.items()]}
        if kind is BoundMethod:
            return {"m": value.name}
        if refs and kind is Instance:
            return {"r": self._record(value)}
        if refs and kind is Tensor:
            return {"x": self._tensor(value)}
        raise NotPlain(f"a {kind.__name__}" if kind in (Instance, Tensor) else f"a {kind.__name__} object")
