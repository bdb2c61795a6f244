"""Read a foreign ``torch.save`` file as inert data: no code it names runs, no size it states is allocated unchecked.

``torch.load`` runs whatever the file names (``weights_only=False``), or calls allow-listed classes with the file's
arguments (``weights_only=True``), so neither reads a file downloaded from the internet. This reader takes the
archive apart itself:

1. The zip archive: every record stored uncompressed, as ``torch.save`` writes it, so no record unpacks to more
   bytes than the file holds, and all records together no larger than the file.
2. The pickle (``data.pkl``): first walked opcode by opcode without running it (``pickletools``), which lists the
   globals it names and proves that every length it states fits the bytes that follow and every memo index is small,
   so the unpickler never sizes an allocation from the file; then unpickled by an unpickler whose only globals are
   ``allow_list``'s exact names.
3. Tensors: read from their storage records (bounded by the archive), viewed within those records' bounds.
4. Module objects: ``inert.Record`` data, built after unpickling from the state the file gave.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Callable

import torch

from .allow_list import RECORD_CLASSES, REBUILDERS, STORAGE_DTYPES
from .inert import PickledObject, Record, UntrustedFileError, ValueWrapper

MAX_NESTING = 200  # levels of containers and modules below the checkpoint dict; YOLOv6's module tree has about 10


class StorageType:
    """A storage class the file names (``torch.HalfStorage``): only its element type, usable in a storage reference."""

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name, self.dtype = name, dtype


class _Archive:
    """The records of a ``torch.save`` zip archive, checked to be stored, not compressed, and within the file."""

    def __init__(self, path: Path) -> None:
        if not zipfile.is_zipfile(path):
            raise UntrustedFileError("it is not the zip archive torch.save writes (an older torch format, another "
                                     "kind of file, or cut short)")
        self.zip = zipfile.ZipFile(path)
        infos = self.zip.infolist()
        if any(info.compress_type != zipfile.ZIP_STORED for info in infos):
            raise UntrustedFileError("its archive holds compressed records, which torch.save never writes")
        if sum(info.file_size for info in infos) > os.path.getsize(path):
            raise UntrustedFileError("its archive's records add up to more bytes than the file holds")
        pickles = [info.filename for info in infos if info.filename.count("/") == 1
                   and info.filename.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise UntrustedFileError(f"its archive holds {len(pickles)} data.pkl records, not the one torch.save "
                                     f"writes")
        self.prefix = pickles[0].rpartition("/")[0]
        self.infos = {info.filename: info for info in infos}
        order = self.infos.get(f"{self.prefix}/byteorder")
        if order is not None and self.read(order.filename) != b"little":
            raise UntrustedFileError("its tensors are stored big-endian")

    def read(self, name: str, size: int | None = None) -> bytearray:
        """Return a record's bytes; ``size`` (bytes) must match the record's length when given."""
        info = self.infos.get(name)
        if info is None or (size is not None and info.file_size != size):
            found = "missing" if info is None else f"{info.file_size} bytes"
            raise UntrustedFileError(f"its record {name} is {found} where the pickle expects {size} bytes")
        data = bytearray(info.file_size)
        with self.zip.open(info) as record:
            record.readinto(data)
        return data


STRING_OPCODES = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}


def scan_globals(data: bytes) -> list[str]:
    """Walk the pickle without running it; return the globals it names, in order.

    ``pickletools.genops`` reads each opcode's argument from the data, so it fails on a length the data does not hold
    (where the unpickler would allocate that length first). The unpickler grows its memo table to the largest index
    a ``PUT`` names; indexes are numbered from 0, so none can exceed the number of opcodes. A ``STACK_GLOBAL``'s name
    is read from the two strings pushed before it (directly or from the memo); one built otherwise is listed as
    ``?``, and the unpickler's own check refuses it.
    """
    names: list[str] = []
    memo: dict[int, object] = {}
    pushed: list[object] = [None, None]  # the last two values pushed, where they are strings
    try:
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                index = len(memo) if opcode.name == "MEMOIZE" else argument
                if not (isinstance(index, int) and 0 <= index <= len(data)):
                    raise UntrustedFileError(f"its pickle names memo slot {index!r}, beyond any real pickle's")
                memo[index] = pushed[-1]
                continue
            if opcode.name == "PROTO" and argument > pickle.HIGHEST_PROTOCOL:
                raise UntrustedFileError(f"its pickle has protocol {argument}")
            if opcode.name in ("GLOBAL", "INST"):
                names.append(argument.replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL":
                module, name = pushed
                names.append(f"{module}.{name}" if isinstance(module, str) and isinstance(name, str) else "?")
            value = argument if opcode.name in STRING_OPCODES else memo.get(argument) \
                if opcode.name in ("GET", "BINGET", "LONG_BINGET") else None
            pushed = [pushed[-1], value]
    except UntrustedFileError:
        raise
    except Exception as error:
        raise UntrustedFileError(f"its pickle is malformed ({type(error).__name__}: {error})") from error
    return names


class _InertUnpickler(pickle.Unpickler):
    """An unpickler whose globals are exactly ``allow_list``'s, and whose storages come from the checked archive."""

    def __init__(self, data: bytes, archive: _Archive) -> None:
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.classes: set[str] = set()  # record classes the file named
        self._record_types: dict[str, type[PickledObject]] = {}
        self._storages: dict[str, ValueWrapper] = {}

    def find_class(self, module: str, name: str) -> object:
        """Return what an allow-listed name becomes; refuse every other name."""
        path = f"{module}.{name}"
        if path in REBUILDERS:
            return REBUILDERS[path]
        if path in STORAGE_DTYPES:
            return StorageType(path, STORAGE_DTYPES[path])
        if path in RECORD_CLASSES:
            self.classes.add(path)
            if path not in self._record_types:
                self._record_types[path] = type(name, (PickledObject,), {"class_path": path})
            return self._record_types[path]
        raise UntrustedFileError(f"it pickles {path}, which is not on the reader's allow-list of the classes and "
                                 f"functions a YOLOv6 checkpoint holds")

    def persistent_load(self, pid: object) -> ValueWrapper:
        """Return a storage record as a flat tensor: ``('storage', <storage class>, key, location, elements)``."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], StorageType)
                and isinstance(pid[2], str) and isinstance(pid[4], int) and not isinstance(pid[4], bool)
                and pid[4] >= 0):
            raise UntrustedFileError(f"it references a storage as {pid!r}, not as torch.save does")
        _, storage, key, _, elements = pid
        if key not in self._storages:
            size = elements * storage.dtype.itemsize
            data = self.archive.read(f"{self.archive.prefix}/data/{key}", size)
            flat = torch.frombuffer(data, dtype=storage.dtype) if size else torch.empty(0, dtype=storage.dtype)
            self._storages[key] = ValueWrapper(flat)
        stored = self._storages[key]
        if stored.value.dtype != storage.dtype:
            raise UntrustedFileError(f"its storage {key} is read as two element types")
        return stored


class _Inert:
    """Turn what the unpickler built into plain data: records for module objects, tensors, containers."""

    def __init__(self) -> None:
        self.done: dict[int, object] = {}

    def convert(self, value: object, depth: int = 0) -> object:
        if depth > MAX_NESTING:
            raise UntrustedFileError(f"it nests objects more than {MAX_NESTING} levels deep")
        if isinstance(value, ValueWrapper):
            return value.value
        if id(value) in self.done:
            return self.done[id(value)]
        if isinstance(value, PickledObject):
            return self._record(value, depth)
        if isinstance(value, dict):
            converted: dict = {}
            self.done[id(value)] = converted
            converted.update((key, self.convert(item, depth + 1)) for key, item in value.items())
            return converted
        if isinstance(value, list):  # the one container a pickle can make contain itself
            items: list = []
            self.done[id(value)] = items
            items.extend(self.convert(item, depth + 1) for item in value)
            return items
        if isinstance(value, (tuple, set, frozenset)):
            converted = type(value)(self.convert(item, depth + 1) for item in value)
            self.done[id(value)] = converted
            return converted
        return value  # str, bytes, numbers, None, and the allow-list's own plain results

    def _record(self, pickled: PickledObject, depth: int) -> Record:
        path = pickled.class_path
        state = vars(pickled).get("state", {})
        if not (isinstance(state, dict) and all(isinstance(key, str) for key in state)):
            raise UntrustedFileError(f"its {path} object has a state that is not a dict of attributes")
        record = Record(path, {}, {}, {})
        self.done[id(pickled)] = record
        children = self.convert(state.get("_modules", {}), depth + 1)
        tensors = {**self.convert(state.get("_parameters", {}), depth + 1),
                   **self.convert(state.get("_buffers", {}), depth + 1)}
        if not (isinstance(children, dict) and all(isinstance(c, (Record, type(None))) for c in children.values())
                and all(isinstance(t, (torch.Tensor, type(None))) for t in tensors.values())):
            raise UntrustedFileError(f"its {path} object holds other things than modules and tensors in their places")
        unsaved = state.get("_non_persistent_buffers_set", set())
        record.children, record.tensors = children, tensors
        record._unsaved = frozenset(name for name in unsaved if isinstance(name, str)) \
            if isinstance(unsaved, set) else frozenset()
        record.attributes = {key: self.convert(item, depth + 1) for key, item in state.items()
                             if not key.startswith("_")}  # nn.Module's own bookkeeping (hooks, ...) is dropped
        return record


def load_inert(path: Path, screen: Callable[[list[str]], None] | None = None) -> tuple[object, frozenset[str]]:
    """Read a ``torch.save`` file as inert data.

    Args:
        path (Path): The file.
        screen (Callable, optional): Called with the globals the pickle names (``scan_globals``) before anything is
            unpickled; it may raise to refuse the file with a message of the caller's.

    Returns:
        (tuple[object, frozenset[str]]): The unpickled object, with module objects as ``Record``s and tensors as
        tensors; and the allow-listed class paths the file named.

    Raises:
        UntrustedFileError: The file is not a ``torch.save`` archive, names anything outside the allow-list, or
            states a size or layout its own bytes do not back; the message says which (without the path).
    """
    archive = _Archive(path)
    data = bytes(archive.read(f"{archive.prefix}/data.pkl"))
    names = scan_globals(data)
    if screen is not None:
        screen(names)
    unpickler = _InertUnpickler(data, archive)
    try:
        loaded = unpickler.load()
        return _Inert().convert(loaded), frozenset(unpickler.classes)
    except UntrustedFileError:
        raise
    except RecursionError as error:
        raise UntrustedFileError("it nests objects deeper than Python can follow") from error
    except Exception as error:  # anything the allow-list's functions or pickle refuse: the file is malformed
        raise UntrustedFileError(f"its pickle cannot be rebuilt ({type(error).__name__}: {error})") from error
