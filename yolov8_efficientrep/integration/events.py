"""The plugin's Ultralytics callbacks, by event: one table, registered in one place, as Ultralytics' own
``callbacks/base.py`` lists its default callbacks.

Every model Ultralytics creates after registration gets them (``default_callbacks``); each one steps aside for
models without plugin layers.
"""

from __future__ import annotations

from ..callbacks import refuse_fused_checkpoint
from .exporter import on_export_start
from .qat_training import choose_fused_qat_optimizer

CALLBACKS = {
    "on_pretrain_routine_start": (refuse_fused_checkpoint, choose_fused_qat_optimizer),
    "on_export_start": (on_export_start,),
}


def install_callbacks() -> None:
    """Add every callback of ``CALLBACKS`` to Ultralytics' default callbacks of its event; idempotent."""
    from ultralytics.utils.callbacks.base import default_callbacks

    for event, callbacks in CALLBACKS.items():
        registered = default_callbacks.setdefault(event, [])
        registered.extend(callback for callback in callbacks if callback not in registered)
