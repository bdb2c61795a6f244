"""Turn the child's answer into records and tensors, trusting it no more than the file (parent side).

``read_untrusted`` runs the jailed child (``jail.py``) and validates everything it hands back before anything is
built from it: every count against ``budgets``, every class path against the caller's allow-list, every reference
in range, the module graph free of cycles, every plain value within its node and nesting budgets, every storage's
byte range inside the file and apart from the others, every tensor view inside its storage. Tensor bytes are read
from the file itself, at the ranges the child located; every tensor the result holds is checked for finiteness.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from ..errors import UntrustedFileError
from ..limits import whole_number
from ..messages import printable
from .budgets import (MAX_DIMENSIONS, MAX_FILE_BYTES, MAX_KEY, MAX_MODULE_DEPTH, MAX_NESTING, MAX_RECORDS,
                      MAX_TENSORS, MAX_TOTAL_VALUE_NODES, MAX_VALUE_NODES)
from .archive import has_hole
from .jail import DEFAULT_LIMITS, Limits, open_file, run_child
from .records import Record

DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
          "bool": torch.bool}


@dataclass(frozen=True)
class UntrustedCheckpoint:
    """A checkpoint read by the jailed reader, as data.

    Attributes:
        path (Path): The file.
        globals (tuple[str, ...]): Every global its pickle names, in order (all on the allow-list).
        root_key (str | None): The entry the network came from (the first of the requested ones holding a module).
        root (Record | None): The network, as records.
        entries (dict[str, object]): The checkpoint's other entries that are plain data.
        unread (tuple[str, ...]): Entries that are not plain data (optimizer state, ...), not read.
        non_finite (str | None): The first tensor (dotted name below the network) holding NaN or an infinity.
    """

    path: Path
    globals: tuple[str, ...]
    root_key: str | None
    root: Record | None
    entries: dict[str, object]
    unread: tuple[str, ...]
    non_finite: str | None


def scan_untrusted(path: Path, limits: Limits = DEFAULT_LIMITS) -> tuple[str, ...]:
    """Return the globals a checkpoint's pickle names, listed by the jailed child without running the pickle."""
    descriptor = open_file(Path(path))
    try:
        answer = run_child(descriptor, {"scan_only": True}, limits)
    finally:
        os.close(descriptor)
    names = answer.get("globals")
    if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
        raise UntrustedFileError("the reader answered malformed data", "crash")
    return tuple(names)


def read_untrusted(path: str | Path, classes: Iterable[str], roots: tuple[str, ...] = ("ema", "model"),
                   limits: Limits = DEFAULT_LIMITS) -> UntrustedCheckpoint:
    """Read a ``torch.save`` checkpoint in the jailed child; return its network as records and its plain entries.

    Args:
        path (str | Path): The file.
        classes (Iterable[str]): Exact class paths of the module objects it may hold.
        roots (tuple[str, ...]): Entries that may hold the network, in order of preference.
        limits (Limits): The child's limits.

    Raises:
        FileNotFoundError / PermissionError: The file is missing or cannot be read.
        UntrustedFileError: The file, or the child's answer, is refused; the message says why (without the path).
    """
    path = Path(path)
    allowed = frozenset(classes)
    descriptor = open_file(path)
    try:
        answer = run_child(descriptor, {"classes": sorted(allowed), "roots": list(roots)}, limits)
        return _Decoder(path, descriptor, allowed, roots).decode(answer)
    finally:
        os.close(descriptor)


def _malformed(what: str) -> UntrustedFileError:
    return UntrustedFileError(f"the reader answered malformed data ({what})", "crash")


def _is_count(value: object) -> bool:
    return whole_number(value) is not None and value >= 0


def _pairs(value: object, what: str) -> list[tuple[str, object]]:
    """Validate a list of ``[name, item]`` pairs with distinct string names."""
    if not (isinstance(value, list) and all(isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                                            for pair in value)):
        raise _malformed(what)
    if len({pair[0] for pair in value}) != len(value):
        raise _malformed(f"{what}: a name twice")
    return [(name, item) for name, item in value]


class _Decoder:
    """One answer's validation and decoding."""

    def __init__(self, path: Path, descriptor: int, classes: frozenset[str], roots: tuple[str, ...]) -> None:
        self.path, self.descriptor, self.classes, self.roots = path, descriptor, classes, roots
        self.nodes = 0
        self.storages: list[tuple[torch.dtype, int, int]] = []  # dtype, elements, offset in the file
        self.tensors: list[dict] = []
        self.records: list[dict] = []
        self.built_records: dict[int, Record] = {}
        self.built_tensors: dict[int, torch.Tensor] = {}
        self.flat: dict[int, torch.Tensor] = {}

    def decode(self, answer: dict) -> UntrustedCheckpoint:
        names = answer.get("globals")
        if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
            raise _malformed("globals")
        for name in ("records", "tensors", "storages", "entries", "unread"):
            if not isinstance(answer.get(name), list):
                raise _malformed(name)
        if len(answer["records"]) > MAX_RECORDS or len(answer["tensors"]) > MAX_TENSORS:
            raise _malformed("more records or tensors than the budgets allow")
        if len(answer["storages"]) > MAX_TENSORS:
            raise _malformed("more storages than the budgets allow")
        self.records, self.tensors = answer["records"], answer["tensors"]
        self._check_storages(answer["storages"])
        entries = {key: self._value(value, 0, [MAX_VALUE_NODES], refs=False)
                   for key, value in _pairs(answer["entries"], "entries")}
        unread = answer["unread"]
        if not all(isinstance(key, str) for key in unread):
            raise _malformed("unread")
        root_key, root = None, None
        if answer.get("root") is not None:
            pair = answer["root"]
            if not (isinstance(pair, list) and len(pair) == 2 and pair[0] in self.roots and _is_count(pair[1])):
                raise _malformed("root")
            root_key = pair[0]
            self._check_acyclic(pair[1])
            root = self._record(pair[1])
        non_finite = _first_non_finite(root) if root is not None else None
        return UntrustedCheckpoint(self.path, tuple(names), root_key, root, entries, tuple(unread), non_finite)

    # --- storages and tensors ----------------------------------------------------------------------------------------

    def _check_storages(self, storages: list) -> None:
        """Validate every storage: its element type, and a byte range inside the file, apart from every other one."""
        size = os.fstat(self.descriptor).st_size
        ranges = []
        for entry in storages:
            if not (isinstance(entry, dict) and entry.get("t") in DTYPES and _is_count(entry.get("n"))
                    and _is_count(entry.get("at"))):
                raise _malformed("a storage")
            dtype = DTYPES[entry["t"]]
            nbytes = entry["n"] * dtype.itemsize
            if entry["at"] + nbytes > min(size, MAX_FILE_BYTES):
                raise _malformed("a storage beyond the end of the file")
            ranges.append((entry["at"], entry["at"] + nbytes))
            self.storages.append((dtype, entry["n"], entry["at"]))
        ranges.sort()
        if any(end > start for (_, end), (start, _) in zip(ranges, ranges[1:])):
            raise _malformed("storages that overlap")

    def _flat(self, index: int) -> torch.Tensor:
        """Return storage ``index`` as a flat tensor, read from the file once."""
        if index not in self.flat:
            dtype, elements, offset = self.storages[index]
            if has_hole(self.descriptor, offset, offset + elements * dtype.itemsize):
                raise UntrustedFileError("its tensor data is a hole of a sparse file: no bytes are stored for it",
                                         "content")
            data = bytearray(elements * dtype.itemsize)
            view, done = memoryview(data), 0
            while done < len(data):
                chunk = os.pread(self.descriptor, min(len(data) - done, 1 << 24), offset + done) \
                    if hasattr(os, "pread") else _read_at(self.descriptor, min(len(data) - done, 1 << 24),
                                                          offset + done)
                if not chunk:
                    raise UntrustedFileError("the file changed while it was read", "damaged")
                view[done:done + len(chunk)] = chunk
                done += len(chunk)
            self.flat[index] = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
        return self.flat[index]

    def _tensor(self, index: object) -> torch.Tensor:
        if not (_is_count(index) and index < len(self.tensors)):
            raise _malformed("a tensor reference")
        if index not in self.built_tensors:
            entry = self.tensors[index]
            if not (isinstance(entry, dict) and _is_count(entry.get("s")) and entry["s"] < len(self.storages)
                    and _is_count(entry.get("o")) and isinstance(entry.get("z"), list)
                    and isinstance(entry.get("d"), list) and len(entry["z"]) == len(entry["d"]) <= MAX_DIMENSIONS
                    and all(map(_is_count, entry["z"] + entry["d"]))):
                raise _malformed("a tensor")
            _, elements, _ = self.storages[entry["s"]]
            size, stride, offset = entry["z"], entry["d"], entry["o"]
            count = 1
            for side in size:
                count *= side
            last = offset + sum((side - 1) * step for side, step in zip(size, stride)) if count else offset - 1
            if count > elements or last >= elements:
                raise _malformed("a tensor beyond its storage")
            self.built_tensors[index] = self._flat(entry["s"]).as_strided(size, stride, offset)
        return self.built_tensors[index]

    # --- records ---------------------------------------------------------------------------------------------------

    def _references(self, index: int) -> list[int]:
        """Return the records that record ``index`` refers to (children, and records inside its attributes)."""
        if not (_is_count(index) and index < len(self.records) and isinstance(self.records[index], dict)):
            raise _malformed("a record reference")
        record = self.records[index]
        children = [child for _, child in _pairs(record.get("m"), "a record's modules") if child is not None]
        stack, found = [value for _, value in _pairs(record.get("a"), "a record's attributes")], []
        while stack:  # record references inside attribute values (depth is checked when they are decoded)
            value = stack.pop()
            if isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, dict) and len(value) == 1:
                (tag, item), = value.items()
                if tag == "r":
                    found.append(item)
                elif isinstance(item, list):
                    stack.extend(item)
            if len(stack) > MAX_TOTAL_VALUE_NODES:
                raise _malformed("attributes beyond the budgets")
        return children + found

    def _check_acyclic(self, root: int) -> None:
        """Refuse a module graph in which a module contains itself (no network does; walks over it would not end)."""
        state: dict[int, bool] = {}  # False: on the current path; True: done
        stack = [(root, iter(self._references(root)))]
        state[root] = False
        while stack:
            index, references = stack[-1]
            child = next(references, None)
            if child is None:
                state[index] = True
                stack.pop()
            elif state.get(child) is False:
                raise UntrustedFileError("a module of its network contains itself", "content")
            elif child not in state:
                if len(stack) >= MAX_MODULE_DEPTH:
                    raise UntrustedFileError(f"its network nests modules more than {MAX_MODULE_DEPTH} deep",
                                             "budget")
                state[child] = False
                stack.append((child, iter(self._references(child))))

    def _record(self, index: int) -> Record:
        if index in self.built_records:
            return self.built_records[index]
        entry = self.records[index]
        path = entry.get("c")
        if path not in self.classes:
            raise _malformed("a record of a class outside the allow-list")
        record = self.built_records[index] = Record(path, {}, {}, {})
        record.children = {name: None if child is None else self._record(child)
                            for name, child in _pairs(entry.get("m"), "a record's modules")}
        record.tensors = {name: None if tensor is None else self._tensor(tensor)
                          for name, tensor in _pairs(entry.get("p"), "a record's tensors")}
        unsaved = entry.get("u")
        if not (isinstance(unsaved, list) and all(isinstance(name, str) for name in unsaved)):
            raise _malformed("a record's unsaved buffers")
        record._unsaved = frozenset(unsaved)
        record.attributes = {name: self._value(value, 0, [MAX_VALUE_NODES], refs=True)
                             for name, value in _pairs(entry.get("a"), "a record's attributes")}
        return record

    # --- plain values ----------------------------------------------------------------------------------------------

    def _value(self, value: object, depth: int, budget: list[int], refs: bool) -> object:
        budget[0] -= 1
        self.nodes += 1
        if budget[0] < 0 or self.nodes > MAX_TOTAL_VALUE_NODES or depth > MAX_NESTING + 1:
            raise _malformed("values beyond the budgets")
        if value is None or isinstance(value, (bool, int, float, str)):
            if whole_number(value) is not None and value.bit_length() > 64:
                raise _malformed("an integer beyond 64 bits")
            return value
        if isinstance(value, list):
            return [self._value(item, depth + 1, budget, refs) for item in value]
        if not (isinstance(value, dict) and len(value) == 1):
            raise _malformed("a value")
        (tag, item), = value.items()
        if tag in ("t", "s") and isinstance(item, list):
            items = [self._value(element, depth + 1, budget, refs) for element in item]
            return tuple(items) if tag == "t" else {_key(element) for element in items}
        if tag == "d" and isinstance(item, list) and all(isinstance(pair, list) and len(pair) == 2 for pair in item):
            return {_key(self._value(key, depth + 1, budget, refs)): self._value(element, depth + 1, budget, refs)
                    for key, element in item}
        if tag == "b" and isinstance(item, str):
            try:
                return bytes.fromhex(item)
            except ValueError:
                raise _malformed("bytes") from None
        if tag == "m" and isinstance(item, str) and item.isidentifier():
            return f"bound method {item}"
        if refs and tag == "r" and _is_count(item) and item < len(self.records):
            return self._record(item)
        if refs and tag == "x":
            return self._tensor(item)
        raise _malformed("a value")


def _key(value: object) -> object:
    """A decoded dict key or set item: a string, bytes, a bool, None or a bounded integer, as the child allows."""
    if isinstance(value, (str, bytes, bool)) or value is None or (isinstance(value, int) and -MAX_KEY <= value <= MAX_KEY):
        return value
    raise _malformed("a key that is not a name or a number")


def _first_non_finite(root: Record) -> str | None:
    """Return the dotted name of the first floating-point tensor below ``root`` holding NaN or an infinity: every
    tensor a record holds, buffers a state dict leaves out and tensors among the attributes included."""
    for name, record in root.named_modules():
        prefix = f"{name}." if name else ""
        tensors = [*record.tensors.items(), *((key, value) for key, value in record.attributes.items()
                                              if isinstance(value, torch.Tensor))]
        for key, tensor in tensors:
            if tensor is not None and tensor.is_floating_point() and not torch.isfinite(tensor).all():
                return printable(f"{prefix}{key}", 200)
    return None


def _read_at(descriptor: int, size: int, offset: int) -> bytes:
    """``os.pread`` where the platform has none (Windows)."""
    os.lseek(descriptor, offset, os.SEEK_SET)
    return os.read(descriptor, size)
