"""Keep Ultralytics' plotting from downloading fonts: the one download that offline settings do not stop."""

from __future__ import annotations

import shutil
from pathlib import Path


def seed_fonts() -> list[Path]:
    """Put a local font where Ultralytics' ``check_font`` looks first, so plotting never downloads Arial.

    Copies matplotlib's bundled DejaVu Sans as ``Arial.ttf`` / ``Arial.Unicode.ttf`` into Ultralytics' user config
    directory (``YOLO_CONFIG_DIR``) unless a file of that name is already there. Returns the files written.
    """
    from matplotlib import font_manager
    from ultralytics.utils import USER_CONFIG_DIR

    source = Path(font_manager.findfont("DejaVu Sans", fallback_to_default=True))
    written = []
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = Path(USER_CONFIG_DIR) / name
        if not target.exists():
            shutil.copyfile(source, target)
            written.append(target)
    return written
