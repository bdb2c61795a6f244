"""A pickle interpreter for untrusted checkpoints: every opcode handled here, with budgets (child side).

Python's own unpickler runs in C: a crafted pickle can make it hash structures without end (shared tuples as dict
keys), overflow the C stack, build millions of objects from a few bytes, or call ``setattr`` on whatever a ``BUILD``
targets. This machine walks the opcodes (``pickletools.genops`` reads each opcode and its argument, refusing lengths
the data does not hold) and gives each one a meaning of its own:

- globals resolve only through the caller's exact allow-list, to ``rebuilders``' inert functions, storage types and
  module classes; ``REDUCE`` calls only those functions, ``NEWOBJ`` makes only an empty ``Instance`` of a module
  class, ``BUILD`` applies only to an ``Instance`` (once, a dict of attributes) or a numpy dtype;
- dict keys and set items are strings, bytes or integers below 2**61 (whose hashes cannot be made to collide), so
  nothing the file builds is ever hashed or compared at length;
- objects, container items, text bytes and integer sizes are counted against ``budgets``; memo indexes live in a
  dict, so no index sizes an allocation;
- no message formats file data except through ``refused.shown`` (short, escaped).
"""

from __future__ import annotations

import pickletools
import struct
from typing import Callable

from .budgets import MAX_ELEMENTS, MAX_INT_BITS, MAX_KEY, MAX_OBJECTS, MAX_OPCODES, MAX_TEXT_BYTES
from .rebuilders import (FUNCTIONS, SET_FUNCTIONS, STORAGE_TYPES, Instance, ModuleClass, NumpyDtype, OrderedDictData,
                         Storage, StorageType)
from .refused import Refused, shown

TEXT_OPCODES = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
                "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}
INT_OPCODES = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
FLOAT_OPCODES = {"FLOAT", "BINFLOAT"}
PUT_OPCODES = {"PUT", "BINPUT", "LONG_BINPUT"}
GET_OPCODES = {"GET", "BINGET", "LONG_BINGET"}
MAX_PROTOCOL = 5


class Function:
    """An allow-listed function as named by the file; ``REDUCE`` calls its inert implementation."""

    __slots__ = ("path", "implementation")

    def __init__(self, path: str, implementation: Callable) -> None:
        self.path, self.implementation = path, implementation


class _Mark:
    """The marker ``MARK`` pushes."""


MARK = _Mark()


def _key(value: object, what: str) -> object:
    """Return ``value`` if it may be a dict key or set item: a bounded integer, a string, bytes, a bool or None."""
    kind = type(value)
    if kind in (str, bytes, bool) or value is None or (kind is int and -MAX_KEY <= value <= MAX_KEY):
        return value
    raise Refused("content", f"it uses {shown(value)} as a {what}; a checkpoint's keys are names and numbers")


class Machine:
    """Run one pickle with an allow-list of globals and budgets; ``run()`` returns what it built.

    Args:
        data (bytes): The pickle (a ``torch.save`` archive's ``data.pkl``).
        module_classes (frozenset[str]): Class paths whose objects become ``Instance``s.
        storage (Callable): Called with (key, storage type, elements) for each storage reference; returns a ``Storage``.
    """

    def __init__(self, data: bytes, module_classes: frozenset[str],
                 storage: Callable[[str, StorageType, int], Storage]) -> None:
        self.data, self.module_classes, self.storage = data, module_classes, storage
        self.stack: list = []
        self.marks: list[int] = []
        self.memo: dict[int, object] = {}
        self.objects = self.elements = self.text = 0
        self.globals: dict[str, None] = {}  # every global named, in order, once
        self._dispatch = {name[3:]: method for name in dir(self) if name.startswith("op_")
                          for method in (getattr(self, name),)}

    # --- budgets -------------------------------------------------------------------------------------------------

    def _new(self, value: object, items: int = 0, objects: int = 1) -> object:
        """Count a new object (and ``items`` container items) against the budgets; return it."""
        self.objects += objects
        self.elements += items
        if self.objects > MAX_OBJECTS:
            raise Refused("budget", f"its pickle builds more than {MAX_OBJECTS:,} objects")
        if self.elements > MAX_ELEMENTS:
            raise Refused("budget", f"its pickle puts more than {MAX_ELEMENTS:,} items into containers")
        return value

    def _text(self, value: str | bytes) -> str | bytes:
        self.text += len(value)
        if self.text > MAX_TEXT_BYTES:
            raise Refused("budget", f"its pickle builds more than {MAX_TEXT_BYTES:,} bytes of text")
        return self._new(value)

    # --- the stack -----------------------------------------------------------------------------------------------

    def _pop_mark(self) -> list:
        if not self.marks:
            raise Refused("content", "its pickle is malformed (a container without its mark)")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def _top(self, count: int = 1) -> list:
        if len(self.stack) - (self.marks[-1] if self.marks else 0) < count:
            raise Refused("content", "its pickle is malformed (an opcode without its operands)")
        return self.stack[-count:]

    def _pop(self) -> object:
        self._top()
        return self.stack.pop()

    # --- running -------------------------------------------------------------------------------------------------

    def run(self) -> object:
        """Run the pickle to its ``STOP``; return the object it built."""
        try:
            for count, (opcode, argument, _) in enumerate(pickletools.genops(self.data)):
                if count >= MAX_OPCODES:
                    raise Refused("budget", f"its pickle runs more than {MAX_OPCODES:,} opcodes")
                handler = self._dispatch.get(opcode.name)
                if handler is None:
                    raise Refused("content", f"its pickle uses the opcode {opcode.name}, which torch.save never writes")
                if opcode.name == "STOP":
                    if len(self.stack) != 1 or self.marks:
                        raise Refused("content", "its pickle is malformed (it stops with a partial result)")
                    return self.stack[0]
                handler(argument)
        except Refused:
            raise
        except (ValueError, OverflowError, IndexError, struct.error) as error:  # genops: a malformed argument
            raise Refused("damaged", f"its pickle is malformed ({type(error).__name__})") from None
        raise Refused("damaged", "its pickle is cut short (no STOP)")

    # --- values ---------------------------------------------------------------------------------------------------

    def op_PROTO(self, protocol: int) -> None:
        if protocol > MAX_PROTOCOL:
            raise Refused("content", f"its pickle has protocol {shown(protocol)}")

    def op_FRAME(self, _: int) -> None:
        """Framing only groups opcodes (genops reads through it)."""

    def op_STOP(self, _: None) -> None:
        """Handled by ``run``."""

    def op_MARK(self, _: None) -> None:
        self.marks.append(len(self.stack))

    def op_POP(self, _: None) -> None:
        if self.stack and (not self.marks or len(self.stack) > self.marks[-1]):
            self.stack.pop()
        else:
            self._pop_mark()

    def op_POP_MARK(self, _: None) -> None:
        self._pop_mark()

    def op_DUP(self, _: None) -> None:
        self.stack.append(self._top()[0])

    def op_NONE(self, _: None) -> None:
        self.stack.append(None)

    def op_NEWTRUE(self, _: None) -> None:
        self.stack.append(True)

    def op_NEWFALSE(self, _: None) -> None:
        self.stack.append(False)

    def _int(self, value: int | bool) -> None:
        if type(value) is int and value.bit_length() > MAX_INT_BITS:
            raise Refused("content", f"its pickle holds an integer of {value.bit_length()} bits")
        self.stack.append(self._new(value))

    op_INT = op_BININT = op_BININT1 = op_BININT2 = op_LONG = op_LONG1 = op_LONG4 = _int

    def _float(self, value: float) -> None:
        self.stack.append(self._new(value))

    op_FLOAT = op_BINFLOAT = _float

    def _string(self, value: str | bytes) -> None:
        self.stack.append(self._text(value))

    op_UNICODE = op_BINUNICODE = op_SHORT_BINUNICODE = op_BINUNICODE8 = _string
    op_BINBYTES = op_SHORT_BINBYTES = op_BINBYTES8 = _string

    def _py2_string(self, value: bytes | str) -> None:
        self.stack.append(self._text(value.decode("latin-1") if isinstance(value, bytes) else value))

    op_STRING = op_BINSTRING = op_SHORT_BINSTRING = _py2_string

    # --- containers -----------------------------------------------------------------------------------------------

    def op_EMPTY_LIST(self, _: None) -> None:
        self.stack.append(self._new([]))

    def op_EMPTY_TUPLE(self, _: None) -> None:
        self.stack.append(self._new(()))

    def op_EMPTY_DICT(self, _: None) -> None:
        self.stack.append(self._new({}))

    def op_EMPTY_SET(self, _: None) -> None:
        self.stack.append(self._new(set()))

    def op_LIST(self, _: None) -> None:
        items = self._pop_mark()
        self.stack.append(self._new(items, len(items)))

    def op_TUPLE(self, _: None) -> None:
        items = self._pop_mark()
        self.stack.append(self._new(tuple(items), len(items)))

    def _tuple_of(self, count: int) -> None:
        items = tuple(self._top(count))
        del self.stack[-count:]
        self.stack.append(self._new(items, count))

    def op_TUPLE1(self, _: None) -> None:
        self._tuple_of(1)

    def op_TUPLE2(self, _: None) -> None:
        self._tuple_of(2)

    def op_TUPLE3(self, _: None) -> None:
        self._tuple_of(3)

    def _list_target(self, items: list) -> list:
        target = self._top()[0]
        if type(target) is not list:
            raise Refused("content", f"its pickle appends to {shown(target)}, not a list")
        self._new(None, len(items), objects=0)
        return target

    def op_APPEND(self, _: None) -> None:
        item = self._pop()
        self._list_target([item]).append(item)

    def op_APPENDS(self, _: None) -> None:
        items = self._pop_mark()
        self._list_target(items).extend(items)

    def _set_items(self, items: list) -> None:
        target = self._top()[0]
        if not isinstance(target, dict) or len(items) % 2:
            raise Refused("content", f"its pickle sets items of {shown(target)}, not of a dict")
        self._new(None, len(items) // 2, objects=0)
        for key, value in zip(items[::2], items[1::2]):
            target[_key(key, "dict key")] = value

    def op_SETITEM(self, _: None) -> None:
        items = self._top(3)[1:]
        del self.stack[-2:]
        self._set_items(items)

    def op_SETITEMS(self, _: None) -> None:
        self._set_items(self._pop_mark())

    def op_DICT(self, _: None) -> None:
        items = self._pop_mark()
        self.stack.append(self._new({}))
        self._set_items(items)

    def op_ADDITEMS(self, _: None) -> None:
        items = self._pop_mark()
        target = self._top()[0]
        if type(target) is not set:
            raise Refused("content", f"its pickle adds items to {shown(target)}, not to a set")
        self._new(None, len(items), objects=0)
        target.update(_key(item, "set item") for item in items)

    def op_FROZENSET(self, _: None) -> None:
        items = self._pop_mark()
        self.stack.append(self._new(frozenset(_key(item, "set item") for item in items), len(items)))

    # --- the memo -------------------------------------------------------------------------------------------------

    def _put(self, index: int) -> None:
        self.memo[index] = self._top()[0]

    op_PUT = op_BINPUT = op_LONG_BINPUT = _put

    def op_MEMOIZE(self, _: None) -> None:
        self._put(len(self.memo))

    def _get(self, index: int) -> None:
        if index not in self.memo:
            raise Refused("content", f"its pickle reads memo slot {shown(index)}, which it never filled")
        self.stack.append(self.memo[index])

    op_GET = op_BINGET = op_LONG_BINGET = _get

    # --- globals, calls, objects ----------------------------------------------------------------------------------

    def _global(self, path: str) -> object:
        self.globals[path] = None
        if path in FUNCTIONS:
            return Function(path, FUNCTIONS[path])
        if path in STORAGE_TYPES:
            return STORAGE_TYPES[path]
        if path in self.module_classes:
            return ModuleClass(path)
        raise Refused("global", f"it pickles {shown(path, 120)}, which is not on the reader's allow-list",
                      name=path)

    def op_GLOBAL(self, argument: str) -> None:
        self.stack.append(self._new(self._global(argument.replace(" ", "."))))

    def op_STACK_GLOBAL(self, _: None) -> None:
        module, name = self._top(2)
        del self.stack[-2:]
        if type(module) is not str or type(name) is not str:
            raise Refused("content", "its pickle names a global with something other than two strings")
        self.stack.append(self._new(self._global(f"{module}.{name}")))

    def op_REDUCE(self, _: None) -> None:
        function, arguments = self._top(2)
        del self.stack[-2:]
        if type(function) is ModuleClass:
            raise Refused("content", f"it calls {shown(function.path, 120)} with arguments; a checkpoint stores "
                                     f"module objects, it does not call their classes")
        if type(function) is not Function or type(arguments) is not tuple:
            raise Refused("content", f"its pickle calls {shown(function)}, which is not an allowed function")
        try:
            result = function.implementation(*arguments)
        except TypeError:  # the file passed the wrong number of arguments
            raise Refused("content", f"it calls {function.path} with arguments it does not take") from None
        if function.path in SET_FUNCTIONS:
            result = self._new({_key(item, "set item") for item in result}, len(result))
        elif isinstance(result, (str, bytes)):
            result = self._text(result)
        else:
            self._new(result)
        self.stack.append(result)

    def _new_object(self, cls: object, arguments: object, keywords: object = None) -> None:
        if type(cls) is not ModuleClass:
            raise Refused("content", f"its pickle creates an object of {shown(cls)}, which is not an allowed class")
        if arguments != () or keywords not in (None, {}):
            raise Refused("content", f"it constructs {shown(cls.path, 120)} with arguments; a checkpoint stores "
                                     f"module objects, it does not call their classes")
        self.stack.append(self._new(Instance(cls.path)))

    def op_NEWOBJ(self, _: None) -> None:
        cls, arguments = self._top(2)
        del self.stack[-2:]
        self._new_object(cls, arguments)

    def op_NEWOBJ_EX(self, _: None) -> None:
        cls, arguments, keywords = self._top(3)
        del self.stack[-3:]
        self._new_object(cls, arguments, keywords)

    def op_BUILD(self, _: None) -> None:
        state = self._pop()
        target = self._top()[0]
        if type(target) is NumpyDtype:
            target.build(state)
            return
        if type(target) is OrderedDictData:  # attributes of an OrderedDict (a state dict's metadata): not kept
            if not isinstance(state, dict) or not all(type(key) is str for key in state):
                raise Refused("content", "it gives an OrderedDict a state that is not a dict of attributes")
            return
        if type(target) is not Instance:
            raise Refused("content", f"its pickle sets the state of {shown(target)}; only module objects get one")
        if target.state is not None:
            raise Refused("content", f"it gives a {shown(target.class_path, 120)} object its state twice")
        if type(state) is tuple and len(state) == 2 and state[1] is None:  # (dict state, no slot state)
            state = state[0]
        if not isinstance(state, dict) or not all(type(key) is str for key in state):
            raise Refused("content", f"it gives a {shown(target.class_path, 120)} object a state that is not a dict "
                                     f"of attributes")
        target.state = state

    def op_BINPERSID(self, _: None) -> None:
        pid = self._pop()
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage" and type(pid[1]) is StorageType
                and type(pid[2]) is str and pid[2].isalnum() and len(pid[2]) <= 32 and type(pid[3]) is str
                and type(pid[4]) is int and pid[4] >= 0):
            raise Refused("content", "it references a storage otherwise than torch.save does")
        self.stack.append(self.storage(pid[2], pid[1], pid[4]))


def scan_globals(data: bytes) -> list[str]:
    """Return every global the pickle names, in order, without running it (``?`` for a name built otherwise than
    from two strings pushed, or read from the memo, right before ``STACK_GLOBAL``: no allow-list admits it)."""
    names: dict[str, None] = {}
    memo: dict[int, object] = {}
    pushed: list[object] = [None, None]  # the last two values pushed, where they are strings
    try:
        for count, (opcode, argument, _) in enumerate(pickletools.genops(data)):
            if count >= MAX_OPCODES:
                raise Refused("budget", f"its pickle runs more than {MAX_OPCODES:,} opcodes")
            name = opcode.name
            if name in PUT_OPCODES or name == "MEMOIZE":
                memo[len(memo) if name == "MEMOIZE" else argument] = pushed[-1]
                continue
            if name in ("GLOBAL", "INST"):
                names[argument.replace(" ", ".")] = None
            elif name == "STACK_GLOBAL":
                module, attribute = pushed
                names[f"{module}.{attribute}" if type(module) is str and type(attribute) is str else "?"] = None
            value = argument if name in TEXT_OPCODES else memo.get(argument) if name in GET_OPCODES else None
            pushed = [pushed[-1], value]
    except (ValueError, OverflowError, IndexError, struct.error):
        raise Refused("damaged", "its pickle is malformed") from None
    return list(names)
