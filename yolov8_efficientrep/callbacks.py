"""What the plugin checks when Ultralytics exports or trains a model with plugin layers (the callbacks' work).

At export every Rep block is fused in float32 before any half / int8 step and the fused model is compared with the
unfused one on a real image; the export logs "fused N blocks, max |diff| = ..." or stops with ``FusionCheckError``.

Ultralytics >=8.4 runs ``on_export_start`` after it has deep-copied, fused and (for FP16 on GPU) halved its model,
so the unfused network is gone by then: the model the export was called with (the caller's own, which the exporter
never modifies, recorded by the export seam, ``integration/exporter.py``) is compared against, as a float32 copy. Ultralytics
8.1-8.3 run ``on_export_start`` before the exporter has any model; there the callback fuses and checks a float32 copy
of that same source, the algebra the exporter's ``model.fuse()`` then applies to its own copy in float32 (its
``half()`` comes after), and stops the export if Ultralytics' ``fuse()`` would leave a Rep block unfused.

INT8: fusion and its check run in ``on_export_start``, before either quantizer calibrates; after an INT8 ONNX or
OpenVINO export of a plugin model the quantized graph is checked and logged (``check_int8_export``). Training from a
fused deploy checkpoint is refused (``refuse_fused_checkpoint``). ``integration/events.py`` registers these.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Mapping

from torch import nn
from ultralytics.utils import LOGGER, colorstr

from .checkpoints import checkpoint_file, load_checkpoint
from .errors import EfficientRepError
from .fusion import check_fusion, check_image, fuse_rep_blocks, fused_rep_blocks, is_fused, rep_blocks
from .graphs import onnx_int8_graph, openvino_int8_graph, qat_onnx_graph
from .limits import non_finite_tensor, non_finite_weights
from .quantize import ORT_INT8_ROUTE_VARIABLE, ort_int8_route
from .rows import uses_plugin

PREFIX = colorstr("EfficientRep:")


class FusedCheckpointError(EfficientRepError, ValueError):
    """Training was asked to start from a checkpoint whose Rep blocks are fused."""


def _export_model(exporter) -> nn.Module | None:
    """Return the Ultralytics model inside the exporter's (some formats wrap it), or None where it has none yet."""
    model = getattr(exporter, "model", None)
    if model is None or hasattr(model, "yaml"):
        return model
    return next((m for m in model.modules() if hasattr(m, "yaml")), model)


def verify_export_fusion(exporter, source: nn.Module | None) -> None:
    """At ``on_export_start``: fuse every Rep block in float32 (idempotently) and check fused against ``source``, the
    unfused model the export was called with.

    Raises:
        NonFiniteWeightsError: The model's weights are not finite (NaN or infinite values), named in the message.
        FusionCheckError: The fused model's outputs differ from the unfused model's beyond tolerance.
        RuntimeError: Ultralytics <8.4 would export a Rep block unfused.
    """
    if not isinstance(source, nn.Module) or not uses_plugin(source) or not rep_blocks(source):
        return
    if getattr(exporter, "qat", False):
        fused, blocks = fused_rep_blocks(source)
        if fused == blocks:
            LOGGER.info(f"{PREFIX} quantization-aware model trained fused: its {blocks} Rep blocks are single 3x3 "
                        f"convolutions in the INT8 graph")
        else:
            LOGGER.warning(f"{PREFIX} quantization-aware model trained with {blocks - fused} Rep blocks unfused (a "
                           f"QAT run without this plugin's fused QAT): the INT8 graph keeps their branches; train QAT "
                           f"again with yolov8-efficientrep installed to deploy single convolutions")
        return
    if all(is_fused(b) for b in rep_blocks(source)):
        LOGGER.info(f"{PREFIX} all {len(rep_blocks(source))} Rep blocks were fused before export (a fused "
                    f"checkpoint?); no unfused model to compare with")
        return
    bad = non_finite_tensor(source.state_dict().items())  # NaN would fail the comparison as if fusion were wrong
    if bad is not None:
        weights = getattr(exporter.args, "model", None)
        raise non_finite_weights(str(weights) if isinstance(weights, (str, Path)) else "the exported model", bad,
                                 "export")
    reference = copy.deepcopy(source).to(getattr(exporter, "device", None)).float().eval()
    model = _export_model(exporter)
    if model is None:  # Ultralytics <8.4: its exporter fuses its own copy of the same source right after this
        model = copy.deepcopy(reference).fuse(verbose=False)
        if fuse_rep_blocks(model):
            raise RuntimeError(f"{PREFIX} this Ultralytics version's exporter would leave some Rep blocks unfused; "
                               f"write a fused checkpoint with 'python -m yolov8_efficientrep fuse' and export that")
    else:
        fuse_rep_blocks(model)  # Rep blocks that Ultralytics' fuse() left; float32 algebra even if already halved
    image = check_image(reference, getattr(exporter, "imgsz", None) or exporter.args.imgsz, "the exported model")
    height, width = image.shape[-2:]
    result = check_fusion(model, reference, image, what="export model")
    precision = f", in full FP32 ({' and '.join(result.switched)} off for the check)" if result.switched else ""
    LOGGER.info(f"{PREFIX} fused {result.blocks} blocks, max |diff| = {result.max_abs:.2e} "
                f"({result.max_rel:.2e} relative, within the relative tolerance {result.tolerance:.0e}) on a "
                f"{height}x{width} image{precision}")


def refuse_fused_training(arguments: Mapping[str, object], loaded: tuple[nn.Module, dict] | None = None) -> None:
    """Stop training that would start from a checkpoint with fused Rep blocks (``model=`` or ``pretrained=``).

    Ultralytics would build the training-form model and copy over only the tensors whose names still match, silently
    re-initializing every fused block and BatchNorm.

    Args:
        arguments (Mapping): The training arguments (``model``, ``pretrained``, ``quantize``).
        loaded (tuple, optional): The model and checkpoint dict ``model=`` was loaded into already, if it was.

    Raises:
        FusedCheckpointError: ``model=`` or ``pretrained=`` names a checkpoint whose Rep blocks are fused.
    """
    for key in ("model", "pretrained"):
        weights = checkpoint_file(arguments.get(key))
        if weights is None:
            continue
        model, ckpt = loaded if key == "model" and loaded is not None else load_checkpoint(weights)
        fused = fused_rep_blocks(model)[0]
        if fused and uses_plugin(model) and ckpt.get("modelopt"):  # QAT trained fused: QAT may go on from it
            if arguments.get("quantize") == 8:
                continue
            raise FusedCheckpointError(
                f"{key}={weights} was quantization-aware trained with its Rep blocks fused ({fused} single "
                f"convolutions, no branches or BatchNorm statistics left): continue with quantize=8, which trains "
                f"that fused network, or train float from the checkpoint QAT started from")
        if fused and uses_plugin(model):
            origin = ckpt.get("efficientrep", {}).get("fused_from")
            raise FusedCheckpointError(
                f"{key}={weights} is a deploy checkpoint ({fused} Rep blocks fused, their branches and BatchNorm "
                f"statistics gone): training would re-initialize them. Use it for predict, val and export; train from "
                f"a model YAML or the checkpoint it was fused from{f' ({origin})' if origin else ''}")


def refuse_fused_checkpoint(trainer) -> None:
    """``on_pretrain_routine_start``: ``refuse_fused_training`` for a trainer built without ``Model.train`` (whose
    own check, ``integration/training.py``, refuses before the run's folder exists)."""
    refuse_fused_training(vars(trainer.args))


def check_int8_export(exporter, source: nn.Module | None, exported: str | list[str] | None) -> None:
    """After an INT8 ONNX or OpenVINO export of ``source``, a plugin model: check the quantized graph and log it.

    Logs the number of convs, how many are quantized in the file and run in INT8 by the runtime, and warns if the
    graph has another number of convs than the fused model, a BatchNorm or a Rep branch left, or quantized convs that
    the runtime runs in float between quantize and dequantize nodes.
    """
    args = exporter.args
    int8 = getattr(args, "quantize", None) == 8 or getattr(args, "int8", False)  # 8.4.x; 8.1-8.4.0 say int8=True
    if not (int8 and exported and args.format in {"onnx", "openvino"} and isinstance(source, nn.Module)
            and uses_plugin(source)):
        return
    path = Path(exported[-1] if isinstance(exported, (list, tuple)) else exported)  # 8.1 returns a list
    qat = getattr(exporter, "qat", False)
    if qat:  # ModelOpt's QDQ graph: OpenVINO runs it in INT8, ONNX Runtime in float
        try:
            graph = qat_onnx_graph(path)
        except ImportError:
            LOGGER.info(f"{PREFIX} INT8 {path.name} (quantization-aware): install openvino to check how it runs")
            return
    else:
        graph = onnx_int8_graph(path) if args.format == "onnx" else openvino_int8_graph(next(path.glob("*.xml")))
    expected = sum(isinstance(m, nn.Conv2d) for m in _export_model(exporter).modules())
    runtime = "OpenVINO's CPU plugin" if qat or args.format == "openvino" else "ONNX Runtime"
    LOGGER.info(f"{PREFIX} INT8 {path.name} in {runtime}: {graph.summary()} (the fused model has {expected} convs)"
                + ("; ONNX Runtime runs ModelOpt's quantize/dequantize pairs in float" if qat else ""))
    problems = [f"{graph.convs} convs where the fused model has {expected}"] if graph.convs != expected else []
    problems += [f"unfused layers {graph.leftovers}"] if graph.leftovers else []
    if graph.runtime_quantized < graph.quantized and not qat:
        problems.append(f"{graph.quantized - graph.runtime_quantized} quantized convs run in float32 between quantize "
                        f"and dequantize nodes, paying for the conversions without the INT8 speed "
                        f"({ORT_INT8_ROUTE_VARIABLE}={ort_int8_route(True)})")
    if problems:
        LOGGER.warning(f"{PREFIX} INT8 export {path}: {'; '.join(problems)}")
