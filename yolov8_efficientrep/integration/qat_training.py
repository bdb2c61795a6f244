"""Make Ultralytics' quantization-aware training (``quantize=8``) train plugin models in their fused form.

Three seams (``fused_qat.py`` holds the work): the trainer's ``prepare_qat``, where ModelOpt inserts its quantizers,
fuses the Rep blocks first; ``BaseModel.load``, where Ultralytics copies a checkpoint's weights into a freshly built
(unfused) model when it resumes or fine-tunes, fuses that model first when the checkpoint holds a fused QAT model, so
every tensor finds its place and ModelOpt's saved state matches; the ``on_pretrain_routine_start`` callback
``choose_fused_qat_optimizer`` (registered in ``events.py``) sets fused QAT's optimizer when the user left it to
Ultralytics. Stock models go through all three untouched.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from pathlib import Path

from ultralytics.utils import LOGGER

from ..fused_qat import fuse_for_qat, fused_qat_optimizer, trains_fused
from ..fusion import fused_rep_blocks, is_qat
from .notice import cannot_apply
from .wrapping import wrap_once


def _fusing_first(prepare_qat):
    """Wrap ``prepare_qat``: a model with plugin Rep blocks is fused before ModelOpt quantizes it."""

    def prepare_fused_qat(model, *args, **kwargs):
        if trains_fused(model):
            fused = fuse_for_qat(model)
            LOGGER.info(f"yolov8-efficientrep: {fused} Rep blocks fused into single 3x3 convolutions before "
                        f"quantization-aware training: QAT trains the network that deploys")
        return prepare_qat(model, *args, **kwargs)

    return functools.wraps(prepare_qat)(prepare_fused_qat)


def _fusing_to_match(load):
    """Wrap ``BaseModel.load``: weights of a fused QAT model go into this model's fused form."""

    def load_fusing_to_match(self, weights, *args, **kwargs):
        source = weights.get("model") if isinstance(weights, dict) else weights  # as Ultralytics' load reads it
        if (trains_fused(self) and fused_rep_blocks(self)[0] == 0 and source is not None and is_qat(source)
                and fused_rep_blocks(source)[0]):
            fuse_for_qat(self)
        return load(self, weights, *args, **kwargs)

    return functools.wraps(load)(load_fusing_to_match)


def choose_fused_qat_optimizer(trainer) -> None:
    """``on_pretrain_routine_start``: fused QAT of a plugin checkpoint left at ``optimizer=auto`` trains with
    ``fused_qat.FUSED_QAT_OPTIMIZER`` instead, written into the run's arguments (and its args.yaml), and says so."""
    settings = fused_qat_optimizer(trainer.args)
    if settings is None:
        return
    for key, value in settings.items():
        setattr(trainer.args, key, value)
    saved = Path(getattr(trainer, "save_dir", "")) / "args.yaml"
    if saved.is_file():  # the run's record of its arguments, written before this callback: keep it true
        from ultralytics.utils import YAML

        YAML.save(saved, vars(trainer.args))
    chosen = " ".join(f"{key}={value}" for key, value in settings.items())
    LOGGER.info(f"yolov8-efficientrep: fused QAT trains with {chosen} (optimizer=auto would pick AdamW, whose steps "
                f"wreck convolutions without a BatchNorm after them); pass optimizer=... to choose yourself")


def install_qat() -> None:
    """Wrap the trainer's ``prepare_qat`` and ``BaseModel.load``; idempotent.

    Releases without quantization-aware training (before its 8.4 release) have nothing to wrap.
    """
    trainer = importlib.import_module("ultralytics.engine.trainer")
    if getattr(trainer, "prepare_qat", None) is None:
        return
    tasks = importlib.import_module("ultralytics.nn.tasks")
    load = vars(tasks.BaseModel).get("load")
    if load is None or "weights" not in inspect.signature(load).parameters:
        cannot_apply("fused quantization-aware training (BaseModel.load(weights))",
                     "quantize=8 of plugin models trains their Rep blocks unfused, as Ultralytics does")
        return
    wrap_once(trainer, "prepare_qat", _fusing_first)
    wrap_once(tasks.BaseModel, "load", _fusing_to_match)
