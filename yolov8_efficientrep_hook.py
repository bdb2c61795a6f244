"""Start-up hook: register yolov8-efficientrep whenever Ultralytics is imported, so the plain ``yolo`` CLI works.

``yolov8_efficientrep_hook.pth`` (installed at the root of site-packages) imports this module when an interpreter
starts. It imports nothing heavy (no torch, no Ultralytics): it puts a finder at the front of ``sys.meta_path`` that
waits for the ``ultralytics`` package and imports ``yolov8_efficientrep`` (whose ``integration.install()`` patches
Ultralytics) as soon as the package has finished initializing. Every entry point therefore sees the blocks before it
can build a model or load a checkpoint: the ``yolo`` console script, Ultralytics' ``ul`` command (which looks the
package up with ``find_spec`` first), Python, DDP workers.

Why the package and not ``ultralytics.nn.tasks``: the parser module is imported half-way through other Ultralytics
imports (``ultralytics.data``, ``ultralytics.engine``), and the plugin, which needs some of those, would then meet
partially initialized modules. Once the package is initialized no Ultralytics import is in flight.

It never breaks an interpreter. A failure to register is remembered, not raised; only when a model YAML then names a
module Ultralytics does not know does the error say why registration failed and what to do. That explanation is the
one assignment into Ultralytics made outside ``yolov8_efficientrep/integration/``: it is needed exactly when the
package cannot be imported.

Set ``YOLOV8_EFFICIENTREP_HOOK=0`` to switch the hook off (``import yolov8_efficientrep`` still registers).
"""

from __future__ import annotations

import os
import sys

ENV_VAR = "YOLOV8_EFFICIENTREP_HOOK"
TRIGGER = "ultralytics"
PLUGIN = "yolov8_efficientrep"
failure: str | None = None  # why registration failed inside the hook, if it did


def enabled() -> bool:
    """Return whether the hook is switched on (``YOLOV8_EFFICIENTREP_HOOK`` unset, or not one of 0/false/off/no)."""
    return os.environ.get(ENV_VAR, "").strip().lower() not in {"0", "false", "off", "no"}


class PluginNotRegisteredError(KeyError):
    """A model YAML names an unknown module after the plugin failed to register (a KeyError, like Ultralytics')."""

    def __str__(self) -> str:
        return str(self.args[0])  # KeyError would print the message as a quoted repr


class _RegisterAfterExec:
    """Loader wrapper: run the real loader, then register the plugin."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        module.__loader__ = module.__spec__.loader = self.loader  # leave the module as if it had not been hooked
        uninstall()  # Ultralytics is imported: nothing left to wait for
        _register()

    def __getattr__(self, name: str):  # get_source, get_filename, ... stay the real loader's
        return getattr(self.loader, name)


class UltralyticsImportFinder:
    """``sys.meta_path`` finder that answers only for the ``ultralytics`` package, with a wrapped loader.

    It stays installed until the package has actually been executed: a look-up that only finds the package
    (``importlib.util.find_spec("ultralytics")``, as Ultralytics' own ``ul`` command does first) leaves it in place for
    the import that follows.
    """

    def find_spec(self, fullname: str, path=None, target=None):
        """Find the package with the other finders and wrap its loader; ignore every other module."""
        if fullname != TRIGGER:
            return None
        for finder in sys.meta_path:
            if isinstance(finder, UltralyticsImportFinder):
                continue
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisterAfterExec(spec.loader)
                return spec
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path``, or register now if Ultralytics is already imported."""
    if TRIGGER in sys.modules:
        _register()
    elif not any(isinstance(finder, UltralyticsImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, UltralyticsImportFinder())


def uninstall() -> None:
    """Remove the finder from ``sys.meta_path``."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, UltralyticsImportFinder)]


def _importing_plugin() -> bool:
    """Return whether a module of the plugin is being imported right now: that import registers (or its command
    does), and registering in the middle of it would meet its half-initialized modules."""
    return any(getattr(getattr(module, "__spec__", None), "_initializing", False)
               for name, module in list(sys.modules.items())
               if name == PLUGIN or name.startswith(f"{PLUGIN}."))


def _register() -> None:
    """Register the plugin (importing it registers it; its own command registers when a sub-command runs); on
    failure remember why and explain it on first use."""
    global failure
    if _importing_plugin():
        return
    try:
        import yolov8_efficientrep

        yolov8_efficientrep.register()
    except Exception as error:  # a broken plugin must not break Ultralytics or the interpreter
        failure = f"{type(error).__name__}: {error}"
        try:
            _explain_unknown_modules()
        except Exception:  # Ultralytics itself does not import: its own error will say so when it is used
            pass


def _explain_unknown_modules() -> None:
    """Make an unknown-module error from ``parse_model`` say that the plugin failed to register, and why."""
    import functools
    import importlib

    tasks = importlib.import_module("ultralytics.nn.tasks")
    parse_model = tasks.parse_model

    @functools.wraps(parse_model)
    def parse_model_explaining_plugin_failure(*args, **kwargs):
        try:
            return parse_model(*args, **kwargs)
        except (KeyError, NameError) as error:  # globals()[name] (8.1+) or eval(name) (8.0) of an unknown module
            name = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
            raise PluginNotRegisteredError(
                f"model YAML module {name!r} is unknown to Ultralytics. If it is a yolov8-efficientrep block: the "
                f"plugin is installed but could not register itself ({failure}). Run python -c \"import "
                f"yolov8_efficientrep\" to see the full error, and fix the installation."
            ) from error

    tasks.parse_model = parse_model_explaining_plugin_failure


if enabled():
    install()
