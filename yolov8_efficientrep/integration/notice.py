"""How a patch says that it cannot apply on the running Ultralytics: one warning, naming the release and the loss."""

from __future__ import annotations

from ..messages import warn_once


def cannot_apply(patch: str, loses: str) -> None:
    """Log once per process: ``patch`` cannot apply on this Ultralytics release, and what the user loses."""
    from ultralytics import __version__

    warn_once(f"yolov8-efficientrep: {patch} cannot apply on Ultralytics {__version__}, so {loses}")
