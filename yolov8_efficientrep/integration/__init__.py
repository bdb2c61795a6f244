"""Every assignment the plugin makes into Ultralytics, wired by one ``install()``.

One module per seam, each with a small ``install_*`` function that checks what it needs, is idempotent, and logs one
warning naming the release and what the user loses when it cannot apply (``notice.cannot_apply``):

- ``parser``: the rows in ``parse_model`` and its namespace, failing rows named (``row_errors``);
- ``lookups``: shipped model and data YAMLs by bare name;
- ``scaled_paths``: a scaled model path (``yolov8s-...yaml``) finds its unified YAML by file name, whatever its folders;
- ``task_guess``: models ending in ``EffiDeHead`` are detection models;
- ``exporter``: the model an export was called with, for the export checks of ``callbacks.py``; the ONNX INT8 route
  of ``quantize.py``;
- ``events``: the one table of the plugin's callbacks by event (export checks, fused-checkpoint refusal, fused QAT's
  optimizer);
- ``restricted_loading``: the plugin's classes on torch's allow-list while Ultralytics' restricted loader runs;
- ``qat_training``: quantization-aware training (``quantize=8``) trains plugin models fused (``fused_qat.py``);
- ``training``: training from a fused checkpoint refused before the run's folder exists;
- ``command_line``: the ``yolo`` command reports the plugin's errors in one line.

Every wrapper is installed through ``wrapping.wrap_once`` (one mark, rebinding where Ultralytics bound a function by
name).

A fork patched by ``patches/make_fork_patch.py`` (``YOLOV8_EFFICIENTREP_NATIVE`` in its ``tasks.py``) skips only the
parser patch (``parser.py``): its own ``parse_model`` knows the rows. The start-up hook (``yolov8_efficientrep_hook.py``) holds
the one assignment outside this package: when the plugin cannot be imported at all, it makes the parser's unknown-row
error say why.
"""

from __future__ import annotations

from .command_line import install_command_line
from .events import install_callbacks
from .exporter import install_export_source, install_int8_route
from .lookups import install_yaml_lookups
from .parser import install_parser
from .qat_training import install_qat
from .restricted_loading import install_restricted_loading
from .scaled_paths import install_scaled_paths
from .task_guess import install_task_guess
from .training import install_training_check

PATCHES = (install_parser, install_yaml_lookups, install_scaled_paths, install_task_guess, install_callbacks,
           install_export_source, install_int8_route, install_restricted_loading, install_qat, install_training_check,
           install_command_line)


def install() -> None:
    """Apply every patch to the running Ultralytics; idempotent.

    Raises:
        ImportError: The installed Ultralytics is outside the supported range, or its parser has an unknown shape.
    """
    for patch in PATCHES:
        patch()
