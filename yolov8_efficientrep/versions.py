"""The Ultralytics releases the plugin supports, and reading release numbers."""

from __future__ import annotations

import re

SUPPORTED_ULTRALYTICS = ">=8.1.0,<8.5"
MIN_VERSION, MAX_VERSION = (8, 1, 0), (8, 5, 0)  # inclusive, exclusive; keep in step with setup.cfg


def version_tuple(text: str) -> tuple[int, ...]:
    """Return the numeric release of a version string: ``8.3.0`` -> (8, 3, 0)."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def ultralytics_version() -> tuple[int, ...]:
    """Return the installed Ultralytics version as an integer tuple, e.g. ``(8, 4, 190)``."""
    import ultralytics

    return version_tuple(ultralytics.__version__)


def unsupported(reason: str) -> ImportError:
    """Return the import error for an Ultralytics the plugin cannot register with: the release, why, the range."""
    import ultralytics

    return ImportError(
        f"yolov8-efficientrep cannot register its blocks with ultralytics {ultralytics.__version__}: {reason}. "
        f"Supported: ultralytics{SUPPORTED_ULTRALYTICS}; install one with: pip install 'ultralytics{SUPPORTED_ULTRALYTICS}'"
    )
