"""Make Ultralytics' quantization-aware training (``quantize=8``) train plugin models in their fused form.

Three seams (``qat.py`` holds the work): the trainer's ``prepare_qat``, where ModelOpt inserts its quantizers, fuses the
Rep blocks first; ``BaseModel.load``, where Ultralytics copies a checkpoint's weights into a freshly built (unfused)
model when it resumes or fine-tunes, fuses that model first when the checkpoint holds a fused QAT model, so every
tensor finds its place and ModelOpt's saved state matches; an ``on_pretrain_routine_start`` callback picks fused QAT's
optimizer when the user left it to Ultralytics. Stock models go through all three untouched.
"""

from __future__ import annotations

import functools
import importlib
import inspect

from ultralytics.utils import LOGGER

from ..fusion import fused_rep_blocks, is_qat
from ..qat import choose_fused_qat_optimizer, fuse_for_qat, trains_fused
from .notice import cannot_apply

MARK = "yolov8_efficientrep"  # set on the wrappers, making install_qat() idempotent


def _fusing_first(prepare_qat):
    """Wrap ``prepare_qat``: a model with plugin Rep blocks is fused before ModelOpt quantizes it."""

    @functools.wraps(prepare_qat)
    def prepare_fused_qat(model, *args, **kwargs):
        if trains_fused(model):
            fused = fuse_for_qat(model)
            LOGGER.info(f"yolov8-efficientrep: {fused} Rep blocks fused into single 3x3 convolutions before "
                        f"quantization-aware training: QAT trains the network that deploys")
        return prepare_qat(model, *args, **kwargs)

    setattr(prepare_fused_qat, MARK, True)
    return prepare_fused_qat


def _fusing_to_match(load):
    """Wrap ``BaseModel.load``: weights of a fused QAT model go into this model's fused form."""

    @functools.wraps(load)
    def load_fusing_to_match(self, weights, *args, **kwargs):
        source = weights.get("model") if isinstance(weights, dict) else weights  # as Ultralytics' load reads it
        if (trains_fused(self) and fused_rep_blocks(self)[0] == 0 and source is not None and is_qat(source)
                and fused_rep_blocks(source)[0]):
            fuse_for_qat(self)
        return load(self, weights, *args, **kwargs)

    setattr(load_fusing_to_match, MARK, True)
    return load_fusing_to_match


def install_qat() -> None:
    """Wrap the trainer's ``prepare_qat`` and ``BaseModel.load``; idempotent.

    Releases without quantization-aware training (before its 8.4 release) have nothing to wrap.
    """
    trainer = importlib.import_module("ultralytics.engine.trainer")
    prepare_qat = getattr(trainer, "prepare_qat", None)
    if prepare_qat is None:
        return
    tasks = importlib.import_module("ultralytics.nn.tasks")
    load = vars(tasks.BaseModel).get("load")
    if load is None or "weights" not in inspect.signature(load).parameters:
        cannot_apply("fused quantization-aware training (BaseModel.load(weights))",
                     "quantize=8 of plugin models trains their Rep blocks unfused, as Ultralytics does")
        return
    from ultralytics.utils.callbacks.base import default_callbacks

    if choose_fused_qat_optimizer not in default_callbacks.setdefault("on_pretrain_routine_start", []):
        default_callbacks["on_pretrain_routine_start"].append(choose_fused_qat_optimizer)
    if not getattr(prepare_qat, MARK, False):
        trainer.prepare_qat = _fusing_first(prepare_qat)
    if not getattr(load, MARK, False):
        tasks.BaseModel.load = _fusing_to_match(load)
