"""Refuse training from a fused (deploy) checkpoint before Ultralytics creates the run's folder.

``Model.train`` builds the trainer, which makes ``runs/<task>/<name>`` and writes its ``args.yaml``, long before any
callback runs; a refusal from a callback would leave an empty run folder behind each time. The wrapper checks the
training arguments first (``callbacks.refuse_fused_training``), with the model ``YOLO(...)`` has loaded already.
"""

from __future__ import annotations

import functools
import importlib

from ..callbacks import refuse_fused_training
from .notice import cannot_apply
from .wrapping import wrap_once


def _refusing_fused_checkpoints(train):
    """Wrap ``Model.train``: a fused checkpoint as ``model=`` or ``pretrained=`` is refused before anything runs."""

    @functools.wraps(train)
    def train_from_unfused(self, *args, **kwargs):
        arguments = {**getattr(self, "overrides", {}), **kwargs}
        if not arguments.get("resume"):
            loaded = (self.model, self.ckpt) if getattr(self, "ckpt", None) else None
            refuse_fused_training(arguments, loaded)
        return train(self, *args, **kwargs)

    return train_from_unfused


def install_training_check() -> None:
    """Wrap ``ultralytics.engine.model.Model.train``; idempotent."""
    model = importlib.import_module("ultralytics.engine.model")
    if "train" not in vars(getattr(model, "Model", object)):
        cannot_apply("the early refusal of fused checkpoints (Model.train)",
                     "training from a fused checkpoint is refused once the run's folder exists")
        return
    wrap_once(model.Model, "train", _refusing_fused_checkpoints)
