"""The package's one exception tree: every error the plugin raises on purpose derives from ``EfficientRepError``.

Each concrete error also derives from the built-in type users caught before the tree existed (``ValueError``,
``FileExistsError``, ...), so ``except ValueError`` keeps working. The command line reports an ``EfficientRepError``
as its message, one line that names the file or YAML row and the fix; anything else it calls a bug.
"""

from __future__ import annotations


class EfficientRepError(Exception):
    """An error of this package: its message is one line naming the file, flag or YAML row, and what to do."""
