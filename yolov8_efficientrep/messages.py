"""The one line that reports a failure of the plugin's commands: the file or option, the cause, what to do."""

from __future__ import annotations

import errno

# What to do about an error the operating system reported on a path, by errno: reading it or writing it.
OS_FIXES = {
    errno.ENOENT: "check the path",
    errno.EACCES: "check its permissions, or choose another path",
    errno.EPERM: "check its permissions, or choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.ENOSPC: "free space on that disk, or choose another path",
    errno.EDQUOT: "free space within your disk quota, or choose another path",
    errno.EFBIG: "the file is larger than this process may write (see ulimit -f); raise that limit, or choose another "
                 "path",
    errno.EISDIR: "it is a folder: give a file path",
    errno.ENOTDIR: "a part of it is a file, not a folder; choose another path",
}
_warned: set[str] = set()


def os_fix(number: int | None) -> str:
    """Return what to do about an operating-system error on a path (``OS_FIXES``), or a general fix."""
    return OS_FIXES.get(number, "check the path and the disk, or choose another path")


def warn_once(message: str) -> None:
    """Log ``message`` as a warning the first time this process sees it (models are rebuilt often: the trainer, its
    EMA, every reload; a patch is installed once per import)."""
    if message not in _warned:
        from ultralytics.utils import LOGGER

        _warned.add(message)
        LOGGER.warning(message)


def call(name: str, **arguments: object) -> str:
    """Return ``name(key=value, ...)`` for a message naming a layer, each value as ``printable`` shows it: a file or a
    YAML row may have chosen it (a huge integer, a string with escape codes)."""
    return f"{name}({', '.join(f'{key}={printable(value, 24)}' for key, value in arguments.items())})"


def quoted(value: object, limit: int = 40) -> str:
    """Return ``value`` as ``printable`` shows it, quoted if it is a string (as ``repr`` would, escaped and bounded)."""
    return f"'{printable(value, limit)}'" if isinstance(value, str) else printable(value, limit)


def _shown(value: object, limit: int, depth: int = 0) -> str:
    """Return ``value`` as text, whatever its size: numbers, None and short tuples or lists of them as Python writes
    them; a string's first ``limit + 1`` characters; anything else as its type in angle brackets."""
    if isinstance(value, str):
        return value[:limit + 1] if depth == 0 else repr(value[:limit + 1])
    if isinstance(value, bool) or value is None:
        return repr(bool(value)) if value is not None else "None"
    if isinstance(value, int):  # int.__repr__: a subclass's own repr never runs; huge ints are not converted at all
        return int.__repr__(value) if value.bit_length() <= 64 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, float):
        return float.__repr__(value)
    if isinstance(value, (tuple, list)) and len(value) <= 8 and depth < 2:
        items = ", ".join(_shown(item, limit, depth + 1) for item in value)
        return f"({items}{',' * (len(value) == 1)})" if isinstance(value, tuple) else f"[{items}]"
    return f"<{type(value).__name__}>"


def printable(value: object, limit: int = 80) -> str:
    """Return ``value`` as text safe to show: control characters escaped, at most ``limit`` characters.

    For anything a file or a user wrote (class names, keys, paths, stored sizes): a terminal must never receive escape
    codes or line breaks from a file, and no message may grow with the file. Strings are shown as they are, numbers and
    short tuples or lists of them as Python writes them, anything else by its type.
    """
    text = _shown(value, limit)
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[:limit + 1])
    return shown if len(shown) <= limit else f"{shown[:limit - 3]}..."


# Longest message a command prints after "<program> <command>: error: "; longer ones lose their middle, so the file
# named first and the fix said last both stay. Every message the plugin writes fits with paths of ~100 characters.
MAX_MESSAGE = 300


def one_line(text: str, join: bool = True) -> str:
    """Return ``text`` on one line with control characters escaped; ``join`` first joins its lines with spaces (a
    library's multi-line message), else a line break is escaped like any control character (it came from a file)."""
    text = " ".join(line.strip() for line in text.splitlines() if line.strip()) if join else text.strip()
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _bounded(message: str, limit: int = MAX_MESSAGE, join: bool = True) -> str:
    """Return ``message`` on one line, escaped, at most ``limit`` characters: a longer one keeps its start and end."""
    line = one_line(message, join)
    if len(line) <= limit:
        return line
    head = limit // 2
    return f"{line[:head]} ... {line[len(line) - (limit - head - 5):]}"


def _text(error: BaseException) -> str:
    """Return ``str(error)``, or an empty string if the error cannot be shown."""
    try:
        return str(error)
    except Exception:  # an exception whose __str__ fails still gets reported, by its type
        return ""


def _os_error(error: OSError) -> str:
    """Say which path the operating system refused, why, and what to do."""
    paths = f"{error.filename} -> {error.filename2}" if error.filename2 is not None else f"{error.filename}"
    return f"{paths}: {error.strerror or error}; {os_fix(error.errno)}"


def _plugin_error(error: BaseException) -> str:
    """The message of one of the plugin's own errors; one raised without a message is named by its class."""
    message = _text(error).strip()
    if message:
        return message
    summary = ((type(error).__doc__ or "").strip().splitlines() or [""])[0]
    return f"{type(error).__name__}{f' ({summary})' if summary else ''}"


def describe(error: BaseException, command: str) -> str:
    """Return the one line that reports ``error`` of ``command``, prefixed with the program and the command.

    The plugin's own errors (``errors.EfficientRepError``) already name the file or option and what to do: they are
    always reported as their message, never as a bug. ``OSError``s from the system get their path, cause and fix.
    Anything else is a bug, reported as unexpected with how to see where it happened. Whatever a file or a user wrote
    into a message is shown with control characters escaped, and the line is bounded (``MAX_MESSAGE``).
    """
    from .errors import EfficientRepError
    from .output_files import OutputExistsError

    prefix = f"yolov8-efficientrep {command}:"
    if isinstance(error, OutputExistsError):  # the library says overwrite=True / force=True; this is the CLI
        message = f"{error.output} exists; add --force to replace it, or write elsewhere with -o PATH.pt"
    elif isinstance(error, EfficientRepError):  # one line by design: a line break in it came from a file
        return f"{prefix} error: {_bounded(_plugin_error(error), join=False)}"
    elif isinstance(error, OSError) and error.filename is not None:
        message = _os_error(error)
    elif isinstance(error, ModuleNotFoundError) and error.name and _text(error) == f"No module named '{error.name}'" \
            and error.name.replace(".", "_").isidentifier():
        message = f"the Python package {error.name.partition('.')[0]} is not installed: pip install " \
                  f"{error.name.partition('.')[0]}"
    elif _text(error).strip() and isinstance(error, (OSError, ValueError, ImportError)):
        message = _text(error)
    else:
        shown = _bounded(_text(error), 120)
        cause = f"{type(error).__name__}: {shown}" if shown else f"{type(error).__name__} with no message"
        return (f"{prefix} unexpected error ({cause}); this is a bug: run the same command with --traceback to see "
                f"where it happened, and report it")
    return f"{prefix} error: {_bounded(message)}"
