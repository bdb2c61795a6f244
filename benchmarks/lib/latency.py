"""Inference latency of one model in ONNX Runtime (CPU) and PyTorch eager, and the peak of a single large 3x3 conv.

Every model is exported with ``torch.onnx.export`` itself (Ultralytics' exporter always fuses, and the unfused
training form is part of the comparison), one static-shape ONNX file per input shape.
"""

from __future__ import annotations

import collections
import copy
import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from ultralytics.utils.torch_utils import get_flops

from yolov8_efficientrep import RepVGGBlock

from .lineup import Entry, build
from .timing import Timing

ORT, EAGER = "ONNX Runtime", "PyTorch eager"
PEAK_CHANNELS, PEAK_SIZE = 256, 80  # the single large 3x3 conv whose speed stands for the hardware limit


@dataclass
class ModelResult:
    """Everything measured for one line-up entry.

    Attributes:
        entry (Entry): The model.
        params (int): Parameter count of the form that runs.
        gflops (dict): GFLOPs of one image per image size, as Ultralytics counts them (2 x multiply-adds).
        latency (dict): ``(runtime, batch, imgsz) -> Timing`` of one forward pass.
        onnx_files (dict): ``(batch, imgsz) -> exported ONNX file``.
        output (np.ndarray | None): ONNX Runtime output of the reference input (batch 1, first image size).
    """

    entry: Entry
    params: int
    gflops: dict[int, float] = field(default_factory=dict)
    latency: dict[tuple[str, int, int], Timing] = field(default_factory=dict)
    onnx_files: dict[tuple[int, int], Path] = field(default_factory=dict)
    output: np.ndarray | None = None


def set_export_mode(model: nn.Module) -> nn.Module:
    """Make the Detect head return only its decoded predictions, as an exported model does."""
    for module in model.modules():
        if hasattr(module, "export") and hasattr(module, "format"):
            module.export, module.format = True, "onnx"
    return model


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Export ``model`` exactly as it is (fused or not) for the example's static shape; return the file."""
    model = set_export_mode(copy.deepcopy(model))
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated and Ultralytics' head warns on tracing
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17, input_names=["images"],
                          output_names=["output0"], do_constant_folding=True)
    return path


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    """Open an ONNX file in ONNX Runtime's CPU provider with all graph optimizations and ``threads`` threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.set_denormal_as_zero", "1")  # as torch.set_flush_denormal in eager
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def reference_input(batch: int, imgsz: int) -> torch.Tensor:
    """Return the same random image batch for every model."""
    return torch.rand(batch, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))


def count_gflops(model: nn.Module, imgsz: int, entry: Entry) -> float:
    """Return Ultralytics' GFLOPs count of one ``imgsz`` image, refusing the 0 it reports when it cannot count."""
    count = get_flops(model, imgsz)
    if not count:
        raise RuntimeError(f"{entry.cfg}: Ultralytics' get_flops returned 0 at imgsz={imgsz}; it needs the "
                           f"ultralytics-thop package (pip install ultralytics-thop)")
    return count


Cell = Tuple[str, int, int]  # (runtime, batch, imgsz)


def prepare_model(entry: Entry, shapes: list[tuple[int, int]], threads: int,
                  workdir: Path) -> tuple[ModelResult, dict[Cell, Callable[[], object]]]:
    """Build one entry, export it for every ``(batch, imgsz)`` shape and count its parameters and GFLOPs.

    Returns the result (its latencies still empty) and, per cell, the call to time: an ONNX Runtime session run or a
    PyTorch eager forward pass on the same input.
    """
    model = build(entry)
    result = ModelResult(entry, sum(p.numel() for p in model.parameters()))
    calls = {}
    for batch, imgsz in shapes:
        if imgsz not in result.gflops:
            result.gflops[imgsz] = count_gflops(model, imgsz, entry)
        x = reference_input(batch, imgsz)
        path = export_onnx(model, x, workdir / f"{entry.name.replace(' ', '_')}-b{batch}-{imgsz}.onnx")
        result.onnx_files[batch, imgsz] = path
        session = ort_session(path, threads)
        feed = {"images": x.numpy()}
        if result.output is None:
            result.output = session.run(None, feed)[0]
        calls[ORT, batch, imgsz] = functools.partial(session.run, None, feed)
        calls[EAGER, batch, imgsz] = functools.partial(eager_forward, model, x)
    return result, calls


def eager_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One PyTorch eager inference pass."""
    with torch.inference_mode():
        return model(x)


def peak_conv(batch: int = 1) -> tuple[nn.Conv2d, torch.Tensor, float]:
    """Return the peak-reference conv, an input batch for it, and its GFLOPs per call.

    The conv is ``PEAK_CHANNELS`` -> ``PEAK_CHANNELS``, 3x3, on a ``PEAK_SIZE`` map; GFLOPs are counted like
    Ultralytics' (2 x multiply-adds).
    """
    conv = nn.Conv2d(PEAK_CHANNELS, PEAK_CHANNELS, 3, 1, 1, bias=True).eval().requires_grad_(False)
    x = torch.rand(batch, PEAK_CHANNELS, PEAK_SIZE, PEAK_SIZE, generator=torch.Generator().manual_seed(0))
    return conv, x, 2 * PEAK_CHANNELS * PEAK_CHANNELS * 9 * PEAK_SIZE * PEAK_SIZE * batch / 1e9


def peak_label(batch: int = 1) -> str:
    """The peak-reference conv's row name in the reports."""
    return f"3x3 conv {PEAK_CHANNELS}->{PEAK_CHANNELS} @{PEAK_SIZE}x{PEAK_SIZE}, batch {batch} (the peak)"


def conv_peak_calls(threads: int, workdir: Path) -> tuple[float, dict[str, Callable[[], object]]]:
    """Return the peak-reference conv's GFLOPs per call and, per runtime, the call to time (batch 1)."""
    conv, x, work = peak_conv()
    path = workdir / "conv_peak.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(conv, (x,), str(path), dynamo=False, opset_version=17, input_names=["images"])
    session = ort_session(path, threads)
    return work, {ORT: functools.partial(session.run, None, {"images": x.numpy()}),
                  EAGER: functools.partial(eager_forward, conv, x)}


def op_counts(path: Path) -> collections.Counter:
    """Count the node types of an ONNX graph."""
    return collections.Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)


def check_branches_kept(unfused: ModelResult, fused: ModelResult) -> str:
    """Check that the unfused ONNX graph still has every RepVGG branch (else fused vs unfused compares nothing).

    Each block contributes one extra 1x1 Conv, and one Add per extra branch (two with an identity branch). Also
    checks that both graphs compute the same thing. Returns a one-line account for the report.
    """
    blocks = [m for m in build(unfused.entry).modules() if isinstance(m, RepVGGBlock)]
    expected_convs, expected_adds = len(blocks), sum(2 if b.bn is not None else 1 for b in blocks)
    shape = next(iter(unfused.onnx_files))
    ops_unfused, ops_fused = op_counts(unfused.onnx_files[shape]), op_counts(fused.onnx_files[shape])
    extra_convs, extra_adds = ops_unfused["Conv"] - ops_fused["Conv"], ops_unfused["Add"] - ops_fused["Add"]
    name = unfused.entry.cfg
    if (extra_convs, extra_adds) != (expected_convs, expected_adds):
        raise RuntimeError(f"{name}: the unfused ONNX graph has {extra_convs} extra Conv and {extra_adds} extra Add "
                           f"nodes over the fused one, expected {expected_convs} and {expected_adds} (one 1x1 branch "
                           f"per RepVGG block, one Add per extra branch): the exporter merged branches, so the "
                           f"unfused timing would not be of the training form")
    # boxes (rows 0-3, in pixels) and class scores (0-1) separately, so that neither hides the other
    pairs = {"boxes": (unfused.output[:, :4], fused.output[:, :4]),
             "scores": (unfused.output[:, 4:], fused.output[:, 4:])}
    absolute = {k: float(np.abs(a - b).max()) for k, (a, b) in pairs.items()}
    largest = {k: float(np.abs(a).max()) for k, (a, _) in pairs.items()}
    difference = max(absolute[k] / largest[k] for k in pairs)
    if difference > 1e-3:
        raise RuntimeError(f"{name}: fused and unfused ONNX outputs differ by {difference:.1e} (relative), so they are "
                           f"not the same network; check the fusion before timing it")
    # with random weights every class score is tiny, so a float32 rounding in ONNX Runtime is a visible fraction of it
    return (f"{name}: unfused ONNX keeps all {expected_convs} 1x1 branch convs and {expected_adds} branch Adds of its "
            f"{len(blocks)} RepVGG blocks; fused vs unfused ONNX Runtime outputs differ by {absolute['boxes']:.1e} px "
            f"in the boxes (largest {largest['boxes']:.0f} px) and {absolute['scores']:.1e} in the class scores "
            f"(largest {largest['scores']:.1e}: random weights)")
