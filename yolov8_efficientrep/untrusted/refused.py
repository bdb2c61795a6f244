"""The child's one error: the file is refused, with a reason class and a message that never quotes the file at length."""

from __future__ import annotations

REASONS = ("format", "damaged", "budget", "global", "content")


class Refused(Exception):
    """The child refuses the file.

    Attributes:
        reason (str): One of ``REASONS``: not a torch archive (format), a damaged archive, a budget exceeded, a global
            outside the allow-list, or content the reader does not take.
        message (str): What was found, without the path (the parent adds it).
        name (str | None): The refused global's name, for ``global``.
        names (list[str]): Every global the pickle names, for ``global``.
    """

    def __init__(self, reason: str, message: str, name: str | None = None, names: list[str] | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.name, self.names = reason, message, name, names or []


def shown(value: object, limit: int = 60) -> str:
    """``value`` as a short printable text for a message: strings escaped and cut, anything else by its type."""
    if isinstance(value, (bool, type(None))) or (isinstance(value, int) and value.bit_length() <= 64):
        return repr(value)
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in value[:limit + 1])
    return repr(text if len(text) <= limit else f"{text[:limit - 3]}...")
