"""Full float32 precision for the plugin's numerical checks, whatever the user chose for training and inference.

PyTorch runs float32 convolutions in TF32 (a 10-bit mantissa) on NVIDIA GPUs since Ampere by default, and users may
ask for TF32 or BF16 matmuls and oneDNN convolutions too. Two computations of the same network then differ by about
1e-4 relative from rounding alone (measured in docs/deployment.md, "`yolo export`"), which is what a
wrong fusion looks like to a 1e-4 check. ``full_fp32`` switches these modes off while a check runs and restores the
user's settings afterwards, also when the check raises.

PyTorch 2.9 added per-operator settings (``torch.backends.cudnn.conv.fp32_precision``, ...) beside the legacy flags
(``torch.backends.cudnn.allow_tf32``, ``torch.set_float32_matmul_precision``). Torch refuses to read a legacy flag
that disagrees with the per-operator setting it stands for, and some of its own code (cuBLAS handles, the profiler)
reads the legacy flags; so a legacy flag that the user's settings let torch read is switched together with its
per-operator setting, and one that torch already refuses to read is left alone.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterable, Iterator, NamedTuple

import torch

FULL = "ieee"  # the per-operator value of true float32
REDUCED = ("tf32", "bf16")  # per-operator values that round float32 operands


class Mode(NamedTuple):
    """A reduced-precision mode of one kind of float32 operation on one device type."""

    label: str  # how the log names it, after its precision: "TF32 cuDNN convolutions"
    device: str  # the device type it acts on
    operator: str  # its per-operator setting under torch.backends (torch >= 2.9)
    legacy: str | None  # the key in LEGACY of the legacy flag that stands for it, if any


class Flag(NamedTuple):
    """A legacy precision flag."""

    get: Callable[[], object]
    set: Callable[[object], None]
    full: object  # its full-precision value
    operators: tuple[str, ...]  # the per-operator settings torch >= 2.9 checks it against, and its setter writes


MODES = (
    Mode("cuDNN convolutions", "cuda", "cudnn.conv", "cudnn"),
    Mode("cuBLAS matmuls", "cuda", "cuda.matmul", "matmul"),
    Mode("oneDNN convolutions", "cpu", "mkldnn.conv", None),
    Mode("oneDNN matmuls", "cpu", "mkldnn.matmul", "matmul"),
)
LEGACY = {"cudnn": Flag(lambda: torch.backends.cudnn.allow_tf32,
                        lambda value: setattr(torch.backends.cudnn, "allow_tf32", value), False,
                        ("cudnn.conv", "cudnn.rnn"))}
if hasattr(torch, "set_float32_matmul_precision"):  # torch >= 1.12
    LEGACY["matmul"] = Flag(torch.get_float32_matmul_precision, torch.set_float32_matmul_precision, "highest",
                            ("cuda.matmul", "mkldnn.matmul"))


def _operator(path: str):
    """Return the ``torch.backends`` object that holds a per-operator setting, e.g. ``cudnn.conv``."""
    found = torch.backends
    for name in path.split("."):
        found = getattr(found, name)
    return found


def _has_per_operator_settings() -> bool:
    """Return True on torch >= 2.9, which has a per-operator ``fp32_precision`` for every mode."""
    try:
        return all(isinstance(_operator(mode.operator).fp32_precision, str) for mode in MODES)
    except AttributeError:
        return False


PER_OPERATOR = _has_per_operator_settings()


def _read(flag: str) -> object | None:
    """Return a legacy flag's value; None where this torch lacks it or refuses to read it (it disagrees with the
    per-operator settings the user made)."""
    if flag not in LEGACY:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch >= 2.9 warns that the legacy flags are deprecated
            return LEGACY[flag].get()
    except RuntimeError:
        return None


def _write(flag: str, value: object) -> None:
    """Set a legacy flag, without torch's deprecation warning (this is no use of the flag by the user)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LEGACY[flag].set(value)


@contextlib.contextmanager
def full_fp32(devices: Iterable[str | torch.device] = ("cuda", "cpu")) -> Iterator[tuple[str, ...]]:
    """Compute float32 convolutions and matmuls on ``devices`` in full float32 precision inside the ``with`` block.

    Every reduced-precision mode (TF32, BF16) of those devices' backends that is on is switched off; on leaving the
    block every setting it changed gets the user's value back, also when the block raises. Nothing is changed where
    nothing is on.

    Args:
        devices (Iterable[str | torch.device]): The device types (or devices) the block computes on: ``"cuda"``
            covers cuDNN convolutions and cuBLAS matmuls, ``"cpu"`` oneDNN's.

    Yields:
        (tuple[str, ...]): What it switched off, e.g. ``("TF32 cuDNN convolutions",)``; empty if nothing was on.
    """
    types = {torch.device(device).type for device in devices}
    modes = [mode for mode in MODES if mode.device in types]
    if PER_OPERATOR:
        paths = {mode.operator for mode in MODES} | {path for flag in LEGACY.values() for path in flag.operators}
        before = {path: _operator(path).fp32_precision for path in paths}
        reduced = [mode for mode in modes if before[mode.operator] in REDUCED]
        flags = {mode.legacy: _read(mode.legacy) for mode in reduced if mode.legacy}
        flags = {flag: value for flag, value in flags.items() if value is not None}
        # every setting a switched legacy flag is checked against, set explicitly: its setter writes "none" (inherit),
        # which a backend-wide "tf32" would turn back into TF32
        full = {mode.operator for mode in reduced} | {path for flag in flags for path in LEGACY[flag].operators}
        switched = tuple(f"{before[mode.operator].upper()} {mode.label}" for mode in reduced)
    else:  # only the legacy flags: TF32 is all they switch on CUDA
        before, full = {}, set()
        flags = {mode.legacy: _read(mode.legacy) for mode in modes if mode.legacy}
        flags = {flag: value for flag, value in flags.items() if value is not None and value != LEGACY[flag].full}
        switched = tuple(f"{'TF32' if mode.device == 'cuda' else 'reduced-precision'} {mode.label}" for mode in modes
                         if mode.legacy in flags)
    try:
        for flag in flags:
            _write(flag, LEGACY[flag].full)
        for path in full:
            _operator(path).fp32_precision = FULL
        yield switched
    finally:
        for flag, value in flags.items():
            _write(flag, value)
        for path, value in before.items():  # also what the legacy setters wrote, which need not be the user's value
            if _operator(path).fp32_precision != value:
                _operator(path).fp32_precision = value
