"""Name the model YAML row that failed to build, and say in plain words what is wrong with it.

Ultralytics' ``parse_model`` stops on a bad row with whatever Python raised on the way: ``KeyError: 'RepVGGBlok'``,
``list index out of range``, ``not enough values to unpack``, naming neither the file nor the row. When a row fails,
``explain`` (which ``integration/parser.py`` wraps the parser with) reads the failing row's index from the
``parse_model`` frame the error came through and explains three kinds of failure:

- a row that is not ``[from, repeats, module, args]`` (any row; such a row fails in Ultralytics too);
- a module name that nothing defines (any row), with the closest names from the plugin, Ultralytics and ``torch.nn``,
  or, when the YAML's header says ``# Needs Ultralytics >= X`` and an older release is installed, the upgrade;
- any failure while building a plugin block, with the block's arguments.

Errors of Ultralytics' own modules in well-formed rows stay Ultralytics' own, and a YAML that builds never reaches this
code, so Ultralytics' models are unaffected.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from types import CodeType, TracebackType
from typing import Any, Callable, Iterable

from torch import nn

from .errors import EfficientRepError
from .limits import whole_number
from .messages import one_line, printable
from .rows import Row
from .versions import ultralytics_version, version_tuple

ROW_FORMAT = "rows read [from, repeats, module, args], e.g. [-1, 1, Conv, [64, 3, 2]]"


class YAMLRowError(EfficientRepError, ValueError):
    """A model YAML row could not be built; the message names the file, the row and what to change."""


class UnknownModuleError(EfficientRepError, KeyError, AttributeError):
    """A model YAML row names a module that neither Ultralytics, torch nor the plugin defines.

    A ``KeyError`` like the one Ultralytics raises for an unknown bare name, and an ``AttributeError`` like its error
    for an unknown ``nn.`` name, so code that caught either keeps working.
    """

    def __str__(self) -> str:
        return str(self.args[0])  # KeyError would print the message as a quoted repr


def explain(error: Exception, d: dict, parse_model: Callable, rows: Iterable[Row]) -> Exception | None:
    """Return the error that names the failing row of ``d`` and says what is wrong with it, or None for Ultralytics'.

    Args:
        error (Exception): What ``parse_model`` raised.
        d (dict): The model YAML it was parsing.
        parse_model (Callable): The parser that raised (its frame holds the failing row's index).
        rows (Iterable[Row]): The plugin's rows (``rows.ROWS``): their classes and args as a YAML writes them.

    Returns:
        (Exception | None): A ``YAMLRowError`` or ``UnknownModuleError`` to raise from ``error``; None where the
        failure is outside the row loop or in a well-formed row of Ultralytics' own (its own message stands).
    """
    local = _frame_locals(error.__traceback__, parse_model.__code__)
    if local is None or "i" not in local:  # outside the row loop (e.g. no 'head:'): Ultralytics' message
        return None
    yaml_rows = d["backbone"] + d["head"]
    index, row = local["i"], yaml_rows[local["i"]]
    section = "backbone" if index < len(d["backbone"]) else "head"
    where = f"{d.get('yaml_file', 'model YAML')}, {section} row {index} {row}"
    if malformed := _malformed(row):
        return YAMLRowError(f"{where}: {malformed}; {ROW_FORMAT}")
    unknown = isinstance(local.get("m"), str)  # the name lookup itself failed: m becomes a class right after
    if needed := _newer_ultralytics_needed(d.get("yaml_file")):  # a row this release lacks or builds otherwise
        problem = f"unknown module {row[2]!r}" if unknown else f"{type(error).__name__}: {error}"
        return (UnknownModuleError if unknown else YAMLRowError)(
            f"{where}: {problem} in Ultralytics {_installed()}; this model YAML needs Ultralytics >= {needed}: "
            f"pip install -U 'ultralytics>={needed}'")
    rows = list(rows)
    if unknown:
        known = _known_modules(parse_model.__globals__)
        return UnknownModuleError(f"{where}: unknown module {row[2]!r}; {_suggest(row[2], known)} Module names are "
                                  f"case-sensitive (torch's are written nn.Name)")
    plugin_row = next((plugin_row for plugin_row in rows if plugin_row.cls is local.get("m")), None)
    if plugin_row is None:
        return None
    return YAMLRowError(f"{where}: {_cause(error, row)}. Plugin {ROW_FORMAT}; {plugin_row.name} args are "
                        f"{plugin_row.args}.")


def newer_task_error(d: dict) -> YAMLRowError | None:
    """Return the error for a model YAML whose task this release cannot tell (its last row is a head the release
    lacks) when the YAML's header says ``# Needs Ultralytics >= X`` and an older release is installed; else None."""
    needed = _newer_ultralytics_needed(d.get("yaml_file"))
    if needed is None or not isinstance(d.get("head"), list) or not d["head"]:
        return None
    row = d["head"][-1]
    head = printable(row[2] if isinstance(row, list) and len(row) > 2 else row, 40)
    return YAMLRowError(f"{printable(d.get('yaml_file', 'model YAML'), 120)}: Ultralytics {_installed()} has no task "
                        f"for its {head} head; this model YAML needs Ultralytics >= {needed}: pip install -U "
                        f"'ultralytics>={needed}'")


def _frame_locals(traceback: TracebackType | None, code: CodeType) -> dict | None:
    """Return the local variables of the ``parse_model`` frame an exception passed through, if any."""
    while traceback is not None:
        if traceback.tb_frame.f_code is code:
            return traceback.tb_frame.f_locals
        traceback = traceback.tb_next
    return None


def _malformed(row: Any) -> str:
    """Say what is wrong with a row's shape or field types; empty if it has the shape of a row."""
    if not isinstance(row, list):
        return f"the row is {type(row).__name__} {row!r}, not a list"
    if len(row) != 4:
        missing = " (no args list: write [] for a module without arguments)" if len(row) == 3 else ""
        return f"the row has {len(row)} items, not 4{missing}"
    source, repeats, module, args = row
    if not (whole_number(source) is not None or (isinstance(source, list) and source and all(whole_number(item) is not None for item in source))):
        return f"from is {source!r}: use a layer index (-1: the previous layer) or a list of indices"
    if not (whole_number(repeats) is not None):
        return f"repeats is {repeats!r}: use a whole number"
    if not isinstance(module, str):
        return f"module is {module!r}: use a module name such as Conv or RepVGGBlock"
    if not isinstance(args, list):
        return f"args is {args!r}: use a list, e.g. [{args!r}] (or [] for none)"
    return ""


def _installed() -> str:
    """Return the installed Ultralytics version."""
    from ultralytics import __version__

    return __version__


def _newer_ultralytics_needed(yaml_file: str | None) -> str | None:
    """Return X when the model YAML's header says ``# Needs Ultralytics >= X`` and an older Ultralytics is installed.

    The shipped YOLO11 / YOLO26 configs say so: their rows (C3k2, C2PSA, YOLO26's head) do not exist before then.
    """
    from .configs import bundled_yaml

    if not yaml_file:
        return None
    path = Path(yaml_file)
    unified = path.with_name(re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", path.stem) + path.suffix)  # as Ultralytics reads
    for candidate in (path, unified):
        found = candidate if candidate.is_file() else bundled_yaml(candidate)
        if found:
            needs = re.search(r"^# Needs Ultralytics >= ([\d.]+)", found.read_text(encoding="utf-8"), re.M)
            if needs and version_tuple(needs[1]) > ultralytics_version():
                return needs[1]
            return None
    return None


def _known_modules(namespace: dict) -> list[str]:
    """Return every module name a row may use: classes in the parser's namespace, and ``nn.`` names of ``torch.nn``."""
    names = [name for name, obj in namespace.items() if isinstance(obj, type) and issubclass(obj, nn.Module)]
    torch_names = [name for name, obj in vars(nn).items() if isinstance(obj, type) and issubclass(obj, nn.Module)]
    return names + [f"nn.{name}" for name in torch_names]


def _suggest(name: str, known: list[str]) -> str:
    """Return "did you mean X, Y or Z?" with the known names closest to ``name``, ignoring case."""
    lowered = {candidate.lower(): candidate for candidate in known}
    close = [lowered[match] for match in difflib.get_close_matches(name.lower(), lowered, n=3, cutoff=0.7)]
    if not close:
        return "no known module has a similar name."
    return f"did you mean {', '.join(close[:-1])} or {close[-1]}?" if len(close) > 1 else f"did you mean {close[0]}?"


def _cause(error: Exception, row: list) -> str:
    """Say why a plugin row failed, in plain words where the error is a Python internal rather than the block's own."""
    args = row[3]
    if isinstance(error, IndexError) and not args:
        return f"args is empty; {row[2]} needs at least c2, its number of output channels"
    if isinstance(error, TypeError) and args and not isinstance(args[0], (int, float)):
        return f"c2 (the first arg, output channels) is {args[0]!r}; use a number such as 64"
    if row[2] == "RepConv" and isinstance(error, AssertionError):  # Ultralytics' RepConv asserts k == 3 and p == 1
        if len(args) > 3:
            return (f"RepConv takes [c2, k, s], and a 4th arg is its padding p, which must be 1, not {args[3]!r}: a "
                    f"row cannot set RepConv's activation (it uses the YAML's activation:); for an activation of its "
                    f"own, use a RepVGGBlock row, whose args are [c2, k, s, act]")
        return f"RepConv's kernel k must be 3, not {args[1]!r}; RepConv takes [c2, k=3, s]"
    message = one_line(str(error))
    return message or (f"{row[2]} refused these args ({type(error).__name__}, with no message); check them against "
                       f"its args, named at the end of this message")

