"""Callbacks the plugin adds to every Ultralytics model: verified fusion at export, no training from a fused file.

At export every Rep block is fused in float32 before any half / int8 step and the fused model is compared with the
unfused one on a real image; the export logs "fused N blocks, max |diff| = ..." or stops with ``FusionCheckError``.

Ultralytics >=8.4 runs ``on_export_start`` after it has deep-copied, fused and (for FP16 on GPU) halved its model,
so the unfused network is gone by then. ``Exporter.__call__`` is therefore wrapped to keep a reference to the model
it was called with (the caller's own model, which the exporter never modifies); the callback compares against a
float32 copy of it. Ultralytics 8.1-8.3 run ``on_export_start`` before the exporter has any model; there the
callback fuses and checks a float32 copy of that same source, the algebra the exporter's ``model.fuse()`` then
applies to its own copy in float32 (its ``half()`` comes after), and stops the export if Ultralytics' ``fuse()``
would leave a Rep block unfused.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

from torch import nn
from ultralytics.utils import LOGGER, colorstr

from .fusion import check_fusion, fuse_rep_blocks, image_size, is_fused, load_checkpoint, rep_blocks, sample_image

PREFIX = colorstr("EfficientRep:")
_SOURCE = "efficientrep_source_model"  # Exporter attribute holding the model the export was called with


class FusedCheckpointError(ValueError):
    """Training was asked to start from a checkpoint whose Rep blocks are fused."""


def _uses_plugin(model: nn.Module) -> bool:
    """Return True if ``model`` holds a layer of this package: Ultralytics' own models are left exactly as they are."""
    return any(type(m).__module__.startswith(f"{__package__}.") for m in model.modules())


def _export_model(exporter) -> nn.Module | None:
    """Return the Ultralytics model inside the exporter's (some formats wrap it), or None where it has none yet."""
    model = getattr(exporter, "model", None)
    if model is None or hasattr(model, "yaml"):
        return model
    return next((m for m in model.modules() if hasattr(m, "yaml")), model)


def verify_export_fusion(exporter) -> None:
    """``on_export_start``: fuse every Rep block in float32 (idempotently) and check fused against unfused.

    Raises:
        FusionCheckError: The fused model's outputs differ from the unfused model's beyond tolerance.
        RuntimeError: Ultralytics <8.4 would export a Rep block unfused.
    """
    source = getattr(exporter, _SOURCE, None)
    if not isinstance(source, nn.Module) or not _uses_plugin(source) or not rep_blocks(source):
        return
    if getattr(exporter, "qat", False):
        LOGGER.info(f"{PREFIX} quantization-aware model: Rep blocks stay unfused, as Ultralytics keeps them")
        return
    if all(is_fused(b) for b in rep_blocks(source)):
        LOGGER.info(f"{PREFIX} all {len(rep_blocks(source))} Rep blocks were fused before export (a fused "
                    f"checkpoint?); no unfused model to compare with")
        return
    reference = copy.deepcopy(source).to(getattr(exporter, "device", None)).float().eval()
    model = _export_model(exporter)
    if model is None:  # Ultralytics <8.4: its exporter fuses its own copy of the same source right after this
        model = copy.deepcopy(reference).fuse(verbose=False)
        if fuse_rep_blocks(model):
            raise RuntimeError(f"{PREFIX} this Ultralytics version's exporter would leave some Rep blocks unfused; "
                               f"write a fused checkpoint with 'python -m yolov8_efficientrep fuse' and export that")
    else:
        fuse_rep_blocks(model)  # Rep blocks that Ultralytics' fuse() left; float32 algebra even if already halved
    height, width = image_size(getattr(exporter, "imgsz", None) or exporter.args.imgsz, reference)
    image = sample_image(height, width, reference.yaml.get("channels", 3))
    result = check_fusion(model, reference, image, what="export model")
    LOGGER.info(f"{PREFIX} fused {result.blocks} blocks, max |diff| = {result.max_abs:.2e} "
                f"({result.max_rel:.2e} relative, tolerance {result.tolerance:.0e}) on a {height}x{width} image")


def refuse_fused_checkpoint(trainer) -> None:
    """``on_pretrain_routine_start``: stop training that would start from a checkpoint with fused Rep blocks.

    Ultralytics would build the training-form model and copy over only the tensors whose names still match, silently
    re-initializing every fused block and BatchNorm.
    """
    for key in ("model", "pretrained"):
        weights = getattr(trainer.args, key, None)
        if not isinstance(weights, (str, Path)) or not str(weights).endswith(".pt") or not Path(weights).is_file():
            continue
        model, ckpt = load_checkpoint(weights)
        fused = sum(is_fused(b) for b in rep_blocks(model))
        if fused and _uses_plugin(model):
            origin = ckpt.get("efficientrep", {}).get("fused_from")
            raise FusedCheckpointError(
                f"{key}={weights} is a deploy checkpoint: {fused} of its Rep blocks are fused into single convolutions "
                f"and their branches and BatchNorm statistics are gone, so training would silently re-initialize "
                f"them. Train from the checkpoint it was fused from{f' ({origin})' if origin else ''} or from a "
                f"model YAML; use the fused file for predict, val and export"
            )


def _record_source(call):
    """Wrap ``Exporter.__call__`` so the exporter keeps a reference to the model it was called with."""

    @functools.wraps(call)
    def __call__(self, model=None, *args, **kwargs):
        setattr(self, _SOURCE, model)
        return call(self, model, *args, **kwargs)

    __call__.records_source = True
    return __call__


def register_callbacks() -> None:
    """Add the callbacks to every model created from now on and let exporters keep their source model; idempotent."""
    from ultralytics.engine.exporter import Exporter
    from ultralytics.utils.callbacks.base import default_callbacks

    for event, callback in (("on_export_start", verify_export_fusion),
                            ("on_pretrain_routine_start", refuse_fused_checkpoint)):
        if callback not in default_callbacks.setdefault(event, []):
            default_callbacks[event].append(callback)
    if not getattr(Exporter.__call__, "records_source", False):
        Exporter.__call__ = _record_source(Exporter.__call__)
