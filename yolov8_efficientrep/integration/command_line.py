"""The plain ``yolo`` command reports the plugin's errors in one line, as the plugin's own command does.

Ultralytics' console script (``ultralytics.cfg.entrypoint``) lets every exception end in a traceback. An error of
this plugin (``errors.EfficientRepError``: a YAML row it cannot build, a fused checkpoint given to training, ...)
already names the file or row and what to do, so it is printed as one line with exit status 1; every other error is
Ultralytics' to report, unchanged.
"""

from __future__ import annotations

import functools
import importlib
import sys

from ..errors import EfficientRepError
from ..messages import describe
from .notice import cannot_apply
from .wrapping import wrap_once


def _one_line_plugin_errors(entrypoint):
    """Wrap ``entrypoint``: an ``EfficientRepError`` ends the command in one line on stderr and exit status 1."""

    @functools.wraps(entrypoint)
    def entrypoint_reporting_plugin_errors(*args, **kwargs):
        try:
            return entrypoint(*args, **kwargs)
        except EfficientRepError as error:
            print(describe(error, "(yolo)"), file=sys.stderr)
            raise SystemExit(1) from None

    return entrypoint_reporting_plugin_errors


def install_command_line() -> None:
    """Wrap ``ultralytics.cfg.entrypoint``, which the ``yolo`` console script calls; idempotent."""
    cfg = importlib.import_module("ultralytics.cfg")
    if not callable(getattr(cfg, "entrypoint", None)):
        cannot_apply("one-line plugin errors in the yolo command (ultralytics.cfg.entrypoint)",
                     "the plugin's errors in yolo commands end in a traceback")
        return
    wrap_once(cfg, "entrypoint", _one_line_plugin_errors)
