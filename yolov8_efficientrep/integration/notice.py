"""How a patch says that it cannot apply on the running Ultralytics: one warning, naming the release and the loss."""

from __future__ import annotations

_said: set[str] = set()


def cannot_apply(patch: str, loses: str) -> None:
    """Log once per process: ``patch`` cannot apply on this Ultralytics release, and what the user loses."""
    from ultralytics import __version__
    from ultralytics.utils import LOGGER

    message = f"yolov8-efficientrep: {patch} cannot apply on Ultralytics {__version__}, so {loses}"
    if message not in _said:
        _said.add(message)
        LOGGER.warning(message)
