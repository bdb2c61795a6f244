"""The package's one exception tree: every error the plugin raises on purpose derives from ``EfficientRepError``.

Each concrete error also derives from the built-in type users caught before the tree existed (``ValueError``,
``FileExistsError``, ...), so ``except ValueError`` keeps working. The command line reports an ``EfficientRepError``
as its message, one line that names the file or YAML row and the fix; anything else it calls a bug.
"""

from __future__ import annotations


class EfficientRepError(Exception):
    """An error of this package: its message is one line naming the file, flag or YAML row, and what to do."""


class UntrustedFileError(EfficientRepError, ValueError):
    """A file the plugin did not write was refused by the jailed reader (``untrusted/``).

    The message says what was found, without the path (the caller names the file and what to do).

    Attributes:
        reason (str): ``format`` (not a torch archive), ``damaged``, ``budget``, ``global`` (a name outside the
            allow-list), ``content``, ``file`` (not a regular file), ``limit`` (the child overran a limit), ``crash``
            (the child died or answered nonsense) or ``jail`` (no child could start).
        name (str | None): The global the file names, for ``global``.
        names (tuple[str, ...]): Every global the file names, for ``global``.
    """

    def __init__(self, message: str, reason: str = "content", name: str | None = None,
                 names: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reason, self.name, self.names = reason, name, names
