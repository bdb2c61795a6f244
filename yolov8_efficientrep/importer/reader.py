"""Read a YOLOv6 checkpoint safely: without YOLOv6 installed and without running anything the file pickles.

YOLOv6's ``strip_optimizer`` saves ``{"model": <the whole training-form nn.Module, float16>, "ema": None, "epoch": ..}``
(0.4.x adds ``scheduler`` and ``results``): the network is pickled by class path, ``yolov6.layers.common.RepVGGBlock``
and so on. ``torch.load(weights_only=True)`` refuses such globals unless they are allow-listed. This module lists the
globals a file names without unpickling it, gives every ``yolov6.*`` class an inert stand-in (an ``nn.Module``
subclass of the same name, with no code of its own) and allows torch's own layer classes, so the unpickler rebuilds
the module tree, its attributes (strides, BN ``eps``, flags) and its tensors, and nothing else.
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn


class YOLOv6ImportError(ValueError):
    """A YOLOv6 checkpoint that cannot be imported; the message names the file, what was found and what to do."""


class YOLOv6Module(nn.Module):
    """Inert stand-in for a class a YOLOv6 checkpoint pickles: the module tree and attributes, no forward.

    Attributes:
        yolov6_class (str): The pickled class path, e.g. ``yolov6.layers.common.RepVGGBlock``.
    """

    yolov6_class = ""


@dataclass(frozen=True)
class YOLOv6Checkpoint:
    """A YOLOv6 checkpoint as read: the network's module tree with its tensors as stored (float16), and its metadata.

    Attributes:
        path (Path): The file.
        model (nn.Module): The network of stand-ins and torch layers (YOLOv6's ``Model``: backbone, neck, detect).
        entry (str): The checkpoint key it came from: ``ema`` when the file has one (as YOLOv6 loads it), else
            ``model``.
        epoch (int | None): The epoch the checkpoint records.
        classes (frozenset[str]): Every ``yolov6.*`` class path the file pickles.
    """

    path: Path
    model: nn.Module
    entry: str
    epoch: int | None
    classes: frozenset[str]


def _bound_method(owner: object, name: str) -> str:
    """Stand in for the ``getattr`` that pickles a bound method (YOLOv6's ``fuse_model`` sets ``forward_fuse``).

    Only the method's name is kept, marking the module as fused; no attribute of the pickled object is looked up.
    """
    return f"bound method {name}"


def _numpy_globals(names: list[str]) -> list:
    """Return numpy's scalar reconstruction functions and dtype classes for the numpy globals a file names.

    YOLOv6 0.4.x stores its last evaluation (``results``) as numpy floats; rebuilding them is data, not code.
    """
    entries = []
    for name in names:
        module, _, attr = name.rpartition(".")
        obj = getattr(importlib.import_module(module), attr, None)
        if obj is not None:
            entries.append((obj, name))
    if "numpy.dtype" in names:  # the dtype's class is built dynamically and absent from the global scan
        entries.extend(type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_))
    return entries


def _allow_list(path: Path, names: list[str]) -> list:
    """Return the ``safe_globals`` entries for the globals ``names`` that ``path`` pickles; refuse anything else."""
    entries: list = []
    for name in names:
        module, _, attr = name.rpartition(".")
        if name.startswith("yolov6."):
            entries.append((type(attr, (YOLOv6Module,), {"yolov6_class": name, "__module__": __name__}), name))
        elif module.startswith("torch.nn.modules."):
            cls = getattr(importlib.import_module(module), attr, None)
            if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
                raise YOLOv6ImportError(f"{path} pickles {name}, which is not a torch layer class; pass a checkpoint "
                                        f"that YOLOv6's training wrote")
            entries.append(cls)
        elif name == "builtins.getattr":
            entries.append((_bound_method, name))
        elif not name.startswith("numpy."):
            raise YOLOv6ImportError(f"{path} pickles {name}, which a YOLOv6 training checkpoint does not hold; pass "
                                    f"the .pt that YOLOv6's training wrote (best_ckpt.pt, or a release file)")
    return entries + _numpy_globals([n for n in names if n.startswith("numpy.")])


def read_checkpoint(path: str | Path, screen: Callable[[Path, frozenset[str]], None] | None = None
                    ) -> YOLOv6Checkpoint:
    """Read a YOLOv6 checkpoint with ``torch.load(weights_only=True)`` and stand-ins for YOLOv6's classes.

    Args:
        path (str | Path): A ``.pt`` written by YOLOv6's training (a release file such as ``yolov6s.pt``, or a run's
            ``best_ckpt.pt``), of any YOLOv6 release.
        screen (Callable, optional): Called with the path and the ``yolov6.*`` class paths the file pickles, before
            anything is unpickled; it may raise to refuse the file early (``architecture.refuse_model_families``).

    Returns:
        (YOLOv6Checkpoint): The network's module tree (stand-ins and torch layers) with its stored tensors.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        YOLOv6ImportError: The file is not a readable checkpoint, not YOLOv6's, or holds no network.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    unreadable = f"{path} cannot be read as a PyTorch checkpoint"
    fix = "the file is truncated or not a .pt; download or copy it again"
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise YOLOv6ImportError(f"{unreadable} ({_first_line(error)}): {fix}") from error
    if not any(name.startswith("yolov6.") for name in names):
        if any(name.startswith("ultralytics.") for name in names):
            raise YOLOv6ImportError(f"{path} is an Ultralytics checkpoint, not a YOLOv6 one: use it directly, e.g. "
                                    f"yolo train model={path} data=...")
        raise YOLOv6ImportError(f"{path} is not a YOLOv6 checkpoint (it pickles no yolov6.* class); pass a .pt that "
                                f"YOLOv6's training wrote, e.g. yolov6s.pt from github.com/meituan/YOLOv6/releases")
    classes = frozenset(name for name in names if name.startswith("yolov6."))
    if screen is not None:
        screen(path, classes)
    with torch.serialization.safe_globals(_allow_list(path, names)):
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise YOLOv6ImportError(f"{unreadable} ({_first_line(error)}): {fix}") from error
    entry = next((key for key in ("ema", "model") if isinstance(checkpoint, dict)
                  and isinstance(checkpoint.get(key), YOLOv6Module)), None)
    if entry is None:
        raise YOLOv6ImportError(f"{path} holds no YOLOv6 network under 'model' or 'ema' (a state dict or another "
                                f"layout); pass the .pt that YOLOv6's training wrote, which pickles the whole model")
    epoch = checkpoint.get("epoch")
    return YOLOv6Checkpoint(path, checkpoint[entry], entry, epoch if isinstance(epoch, int) else None, classes)


def _first_line(error: BaseException) -> str:
    """Return the first sentence of an exception's message, prefixed with its type."""
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0].split('. ')[0]}"
