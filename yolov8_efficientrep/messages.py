"""The one line that reports a failure of the plugin's commands: the file or option, the cause, what to do."""

from __future__ import annotations

import errno

# What to do about an error the operating system reported on a path, by errno.
_OS_FIXES = {
    errno.ENOENT: "check the path",
    errno.EACCES: "check its permissions, or choose another path",
    errno.EPERM: "check its permissions, or choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.ENOSPC: "free space on that disk, or choose another path",
    errno.EFBIG: "the file is larger than this process may write (see ulimit -f); raise that limit, or choose another "
                 "path",
    errno.EISDIR: "it is a folder: give a file path",
    errno.ENOTDIR: "a part of it is a file, not a folder; choose another path",
}


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


def _one_line(text: str) -> str:
    """Join a message's lines into one."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _os_error(error: OSError) -> str:
    """Say which path the operating system refused, why, and what to do."""
    paths = f"{error.filename} -> {error.filename2}" if error.filename2 is not None else f"{error.filename}"
    fix = _OS_FIXES.get(error.errno, "check the path and the disk, or choose another path")
    return f"{paths}: {error.strerror or error}; {fix}"


def describe(error: Exception, command: str) -> str:
    """Return the one line that reports ``error`` of ``command``, prefixed with the program and the command.

    The plugin's own errors (``errors.EfficientRepError``) already name the file or option and what to do, and
    ``OSError``s from the system get their path, cause and fix. Anything else is a bug, reported as unexpected with
    how to see where it happened.
    """
    from .errors import EfficientRepError
    from .output_files import OutputExistsError

    prefix = f"yolov8-efficientrep {command}:"
    if isinstance(error, OutputExistsError):  # the library says overwrite=True / force=True; this is the CLI
        return f"{prefix} error: {error.output} exists; add --force to replace it, or write elsewhere with -o PATH.pt"
    if isinstance(error, OSError) and error.filename is not None:
        return f"{prefix} error: {_os_error(error)}"
    if isinstance(error, ModuleNotFoundError) and error.name and str(error) == f"No module named '{error.name}'":
        return f"{prefix} error: the Python package {error.name} is not installed: pip install {error.name}"
    message = _one_line(str(error))
    if message and isinstance(error, (EfficientRepError, OSError, ValueError, ImportError)):
        return f"{prefix} error: {message}"
    cause = f"{type(error).__name__}: {message}" if message else f"{type(error).__name__} with no message"
    return (f"{prefix} unexpected error ({cause}); this is a bug: run the same command with --traceback to see where "
            f"it happened, and report it")
