"""NCNN's precision options, one at a time: which of its defaults costs a model how much against PyTorch.

NCNN's ``Option`` defaults to half-precision storage and arithmetic (``use_fp16_packed``, ``use_fp16_storage``,
``use_fp16_arithmetic``) wherever the CPU has the instructions (F16C for storage; AVX512-FP16 or ARMv8.2 for
arithmetic), and to Winograd 3x3 convolutions. Ultralytics' NCNN backend keeps every default. Each variant here loads
the same ``.param``/``.bin`` with some of them switched off and runs the validation images; the raw outputs are
compared with the fused PyTorch model's as ``format_checks.raw_difference`` does. Also here: the fused model's weight
and activation ranges, which decide how much a 10-bit mantissa loses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .format_checks import RawDifference, first_output, raw_difference

FP16 = ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic")
WINOGRAD = ("use_winograd_convolution", "use_winograd23_convolution", "use_winograd43_convolution",
            "use_winograd63_convolution")
VARIANTS: dict[str, dict[str, bool]] = {
    "defaults (as Ultralytics runs it)": {},
    "fp16 arithmetic off": {"use_fp16_arithmetic": False},
    "fp16 storage and arithmetic off": dict.fromkeys(FP16, False),
    "Winograd off": dict.fromkeys(WINOGRAD, False),
    "fp16 and Winograd off": {**dict.fromkeys(FP16, False), **dict.fromkeys(WINOGRAD, False)},
    "bf16 storage on, fp16 off": {**dict.fromkeys(FP16, False), "use_bf16_storage": True, "use_bf16_packed": True},
}


def ncnn_runner(folder: Path, options: dict[str, bool], threads: int) -> Callable[[torch.Tensor], np.ndarray]:
    """Load an NCNN model folder with ``options`` set on its ``Option``; return a call: image batch -> output0."""
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    for name, value in options.items():
        setattr(net.opt, name, value)
    param = next(Path(folder).glob("*.ncnn.param"))
    net.load_param(str(param))
    net.load_model(str(param.with_suffix(".bin")))
    output = sorted(net.output_names())[0]

    def run(batch: torch.Tensor) -> np.ndarray:
        outs = []
        for sample in batch.numpy():
            with net.create_extractor() as ex:
                ex.input(net.input_names()[0], ncnn.Mat(np.ascontiguousarray(sample)))
                outs.append(np.array(ex.extract(output)[1]))
        return np.stack(outs)

    return run


def variant_differences(folder: Path, model: nn.Module, images: torch.Tensor,
                        threads: int) -> dict[str, RawDifference]:
    """Raw difference from the fused PyTorch ``model`` of every ``VARIANTS`` entry, one image at a time."""
    with torch.inference_mode():
        reference = [first_output(model(images[i:i + 1])) for i in range(len(images))]
    results = {}
    for name, options in VARIANTS.items():
        run = ncnn_runner(folder, options, threads)
        results[name] = raw_difference(reference, [run(images[i:i + 1]) for i in range(len(images))])
    return results


def ranges(model: nn.Module, images: torch.Tensor) -> dict[str, float]:
    """Largest |weight| and |bias| over the fused model's convs, and the largest |activation| entering any conv on
    ``images`` (half precision keeps about 3 significant digits of each, whatever its size below 65504)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    largest_input = [0.0]

    def hook(_module, args, _output):
        largest_input[0] = max(largest_input[0], float(args[0].abs().max()))

    handles = [conv.register_forward_hook(hook) for conv in convs]
    try:
        with torch.inference_mode():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    weights = torch.cat([c.weight.detach().flatten() for c in convs]).abs()
    biases = torch.cat([c.bias.detach().flatten() for c in convs if c.bias is not None]).abs()
    return {"max |weight|": float(weights.max()), "99.9th pct |weight|": float(weights.quantile(0.999)),
            "max |bias|": float(biases.max()), "max |conv input|": largest_input[0]}


def half_precision_differences(model: nn.Module, images: torch.Tensor) -> dict[str, RawDifference]:
    """Raw difference from float32 of the same fused model run wholly in float16 and in bfloat16 in PyTorch: what
    half-precision storage and arithmetic (NCNN's defaults on ARMv8.2 CPUs, the Pi 5's) cost each model, emulated on
    a CPU where NCNN's own half-precision paths do not engage."""
    import copy

    with torch.inference_mode():
        reference = [first_output(model(images[i:i + 1])) for i in range(len(images))]
        results = {}
        for dtype in (torch.float16, torch.bfloat16):
            half = copy.deepcopy(model).to(dtype)
            outs = [first_output(_float(half(images[i:i + 1].to(dtype)))) for i in range(len(images))]
            results[f"PyTorch {str(dtype).split('.')[-1]} (emulated)"] = raw_difference(reference, outs)
    return results


def _float(y):
    """The first tensor of a model output, as float32."""
    while isinstance(y, (list, tuple)):
        y = y[0]
    return y.float()
