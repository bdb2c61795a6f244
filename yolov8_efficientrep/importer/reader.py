"""Read a YOLOv6 checkpoint as data: in the jailed reader, without YOLOv6 installed, running nothing the file names.

YOLOv6's ``strip_optimizer`` saves ``{"model": <the whole training-form nn.Module, float16>, "ema": None, "epoch": ..}``
(0.4.x adds ``scheduler`` and ``results``): the network is pickled by class path, ``yolov6.layers.common.RepVGGBlock``
and so on. ``untrusted.read_untrusted`` parses such a file in a child process with limits, allowing exactly the
module classes of ``allow_list.py``, and hands back the module tree as inert records with their tensors. This module
adds what is YOLOv6's: which file is a YOLOv6 checkpoint, where its network is, and that its weights are finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import EfficientRepError, UntrustedFileError
from ..limits import non_finite_weights, whole_number
from ..messages import printable
from ..untrusted.decode import read_untrusted
from ..untrusted.records import Record
from .allow_list import RECORD_CLASSES

NOT_RUN = "nothing in the file was run"
# What to do, by why the jailed reader refused the file (``UntrustedFileError.reason``).
_FIXES = {
    "format": "Pass the .pt that YOLOv6's training wrote (best_ckpt.pt, or a release file)",
    "damaged": "If it is a YOLOv6 .pt, it is truncated or damaged: download or copy it again",
    "budget": "YOLOv6 never writes such a file: use a release file or your own run's best_ckpt.pt",
    "content": "YOLOv6 never writes such a file: use a release file or your own run's best_ckpt.pt",
    "limit": "YOLOv6's checkpoints read in a fraction of that: use a release file or your own run's best_ckpt.pt",
    "crash": "If the file is an honest YOLOv6 checkpoint, please report it",
}


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


def _refusal(path: Path, error: UntrustedFileError) -> YOLOv6ImportError:
    """Say in one line why the jailed reader refused ``path`` and what to do."""
    if error.reason == "global":
        name = printable(error.name, 120)
        if not any(n.startswith("yolov6.") for n in error.names) and any(
                n.startswith(("ultralytics.", "yolov8_efficientrep.")) for n in error.names):
            return YOLOv6ImportError(f"{path} is an Ultralytics checkpoint, not a YOLOv6 one: use it directly, e.g. "
                                     f"yolo train model={path} data=...")
        what = "a class no YOLOv6 release (0.1-0.4) defines" if str(error.name).startswith("yolov6.") else \
            "which a YOLOv6 training checkpoint does not hold"
        return YOLOv6ImportError(f"{path} pickles {name}, {what}; {NOT_RUN}. Pass the .pt that YOLOv6's training "
                                 f"wrote (best_ckpt.pt, or a release file)")
    if error.reason == "file":
        return YOLOv6ImportError(f"{error}; pass a YOLOv6 .pt file")
    return YOLOv6ImportError(f"{path} cannot be read as a PyTorch checkpoint: {error}; {NOT_RUN}. "
                             f"{_FIXES.get(error.reason, _FIXES['crash'])}")


def read_checkpoint(path: str | Path, screen: Callable[[Path, frozenset[str]], None] | None = None
                    ) -> YOLOv6Checkpoint:
    """Read a YOLOv6 checkpoint as inert data, in the jailed reader: the module tree as records with their tensors.

    Args:
        path (str | Path): A ``.pt`` written by YOLOv6's training (a release file such as ``yolov6s.pt``, or a run's
            ``best_ckpt.pt``), of any YOLOv6 release.
        screen (Callable, optional): Called with the path and the ``yolov6.*`` class paths the file pickles, before
            any record is used; it may raise to refuse the file (``architecture.refuse_model_families``).

    Returns:
        (YOLOv6Checkpoint): The network's module tree (records) with its stored tensors.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        YOLOv6ImportError: The file is not a readable checkpoint, not YOLOv6's, names anything outside the reader's
            allow-list, holds no network, or holds weights that are not finite.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        checkpoint = read_untrusted(path, RECORD_CLASSES)
    except UntrustedFileError as error:
        raise _refusal(path, error) from None
    classes = frozenset(name for name in checkpoint.globals if name.startswith("yolov6."))
    if not classes:
        raise YOLOv6ImportError(f"{path} is not a YOLOv6 checkpoint (it pickles no yolov6.* class); pass a .pt that "
                                f"YOLOv6's training wrote, e.g. yolov6s.pt from github.com/meituan/YOLOv6/releases")
    if screen is not None:
        screen(path, classes)
    if checkpoint.root is None:
        raise YOLOv6ImportError(f"{path} holds no YOLOv6 network under 'model' or 'ema' (a state dict or another "
                                f"layout); pass the .pt that YOLOv6's training wrote, which pickles the whole model")
    if checkpoint.non_finite is not None:
        raise non_finite_weights(str(path), f"{checkpoint.root_key}.{checkpoint.non_finite}", "import")
    return YOLOv6Checkpoint(path, checkpoint.root, checkpoint.root_key, whole_number(checkpoint.entries.get("epoch")),
                            classes)
