"""Read a YOLOv6 checkpoint as data: without YOLOv6 installed and without running anything the file names.

YOLOv6's ``strip_optimizer`` saves ``{"model": <the whole training-form nn.Module, float16>, "ema": None, "epoch": ..}``
(0.4.x adds ``scheduler`` and ``results``): the network is pickled by class path, ``yolov6.layers.common.RepVGGBlock``
and so on. ``unpickler.load_inert`` reads such a file with an allow-list of exact names (``allow_list.py``): module
objects become inert records of their class path, attributes and tensors, and no class or function the file names
is ever called. This module adds what is YOLOv6's: which file is a YOLOv6 checkpoint, where its network is, and that
its weights are finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import EfficientRepError
from ..limits import non_finite_tensor
from .allow_list import RECORD_CLASSES, REBUILDERS, STORAGE_DTYPES
from .inert import Record, UntrustedFileError
from .unpickler import load_inert


class YOLOv6ImportError(EfficientRepError, ValueError):
    """A YOLOv6 checkpoint that cannot be imported; the message names the file, what was found and what to do."""


@dataclass(frozen=True)
class YOLOv6Checkpoint:
    """A YOLOv6 checkpoint as read: the network's module tree with its tensors as stored (float16), and its metadata.

    Attributes:
        path (Path): The file.
        model (Record): The network as inert records (YOLOv6's ``Model``: backbone, neck, detect).
        entry (str): The checkpoint key it came from: ``ema`` when the file has one (as YOLOv6 loads it), else
            ``model``.
        epoch (int | None): The epoch the checkpoint records.
        classes (frozenset[str]): Every ``yolov6.*`` class path the file pickles.
    """

    path: Path
    model: Record
    entry: str
    epoch: int | None
    classes: frozenset[str]


def _screen_globals(path: Path, names: list[str], screen: Callable[[Path, frozenset[str]], None] | None) -> None:
    """Refuse a file by the globals it names, before anything is unpickled: not YOLOv6's, or naming other things."""
    yolov6 = frozenset(name for name in names if name.startswith("yolov6."))
    if not yolov6 and any(name.startswith("ultralytics.") for name in names):
        raise YOLOv6ImportError(f"{path} is an Ultralytics checkpoint, not a YOLOv6 one: use it directly, e.g. "
                                f"yolo train model={path} data=...")
    for name in names:
        if name in RECORD_CLASSES or name in REBUILDERS or name in STORAGE_DTYPES:
            continue
        what = "a class no YOLOv6 release (0.1-0.4) defines" if name.startswith("yolov6.") else \
            "which a YOLOv6 training checkpoint does not hold"
        raise YOLOv6ImportError(f"{path} pickles {name}, {what}; nothing in the file was run. Pass the .pt that "
                                f"YOLOv6's training wrote (best_ckpt.pt, or a release file)")
    if not yolov6:
        raise YOLOv6ImportError(f"{path} is not a YOLOv6 checkpoint (it pickles no yolov6.* class); pass a .pt that "
                                f"YOLOv6's training wrote, e.g. yolov6s.pt from github.com/meituan/YOLOv6/releases")
    if screen is not None:
        screen(path, yolov6)


def read_checkpoint(path: str | Path, screen: Callable[[Path, frozenset[str]], None] | None = None
                    ) -> YOLOv6Checkpoint:
    """Read a YOLOv6 checkpoint as inert data: the module tree as records with the stored tensors.

    Args:
        path (str | Path): A ``.pt`` written by YOLOv6's training (a release file such as ``yolov6s.pt``, or a run's
            ``best_ckpt.pt``), of any YOLOv6 release.
        screen (Callable, optional): Called with the path and the ``yolov6.*`` class paths the file pickles, before
            anything is unpickled; it may raise to refuse the file early (``architecture.refuse_model_families``).

    Returns:
        (YOLOv6Checkpoint): The network's module tree (records) with its stored tensors.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        YOLOv6ImportError: The file is not a readable checkpoint, not YOLOv6's, names anything outside the reader's
            allow-list, holds no network, or holds weights that are not finite.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        checkpoint, names = load_inert(path, lambda globals_: _screen_globals(path, globals_, screen))
    except UntrustedFileError as error:
        raise YOLOv6ImportError(f"{path} cannot be read as a PyTorch checkpoint: {error}; nothing in the file was "
                                f"run. If it is a YOLOv6 .pt, it is truncated or damaged: download or copy it again"
                                ) from error
    entry = next((key for key in ("ema", "model") if isinstance(checkpoint, dict)
                  and isinstance(checkpoint.get(key), Record)), None)
    if entry is None:
        raise YOLOv6ImportError(f"{path} holds no YOLOv6 network under 'model' or 'ema' (a state dict or another "
                                f"layout); pass the .pt that YOLOv6's training wrote, which pickles the whole model")
    model = checkpoint[entry]
    bad = non_finite_tensor(model.state_dict().items())
    if bad is not None:
        raise YOLOv6ImportError(f"{path}: its {entry} tensor {bad} holds NaN or infinite values (a run that diverged, "
                                f"or a damaged file); import a checkpoint whose weights are finite")
    epoch = checkpoint.get("epoch")
    classes = frozenset(name for name in names if name.startswith("yolov6."))
    return YOLOv6Checkpoint(path, model, entry, epoch if isinstance(epoch, int) and not isinstance(epoch, bool)
                            else None, classes)
