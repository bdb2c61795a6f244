"""The plugin's model YAML rows: the one table every list of rows is derived from.

A row names a class a model YAML may use, the kind of row Ultralytics' parser must treat it as, and its arguments as
a YAML writes them. Derived from ``ROWS``: the parser's collections (``integration/parser.py``), the usage line of a
failing row (``row_errors.py``), the classes Ultralytics' restricted loader may rebuild (``plugin_classes``), the
fork patch's imports (``patches/make_fork_patch.py``) and the package's ``__all__``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterable

from torch import nn
from ultralytics.nn.modules import RepConv

from .blocks import BASIC_UNITS, REP_UNITS, BottleRep, ConvBNAct, QARepVGGBlock, QARepVGGBlockV2, RepBlock, RepVGGBlock
from .csp_blocks import CSPSPPF, BepC3, MBLABlock, SimCSPSPPF, SimSPPF
from .heads import EffiDeHead, EffiDeSegHead, LiteEffiDeHead
from .lite_blocks import DPBlock, LiteCSPBlock, LiteEffiBlockS1, LiteEffiBlockS2, SplitAdd

PACKAGE = __name__.partition(".")[0]

CONV = "conv"  # Conv-like: input channels from the previous layer, width-scaled output channels
REPEAT = "repeat"  # Conv-like, and takes the depth-scaled repeat count
HEAD = "head"  # Detect-like: the input channels of every level


@dataclass(frozen=True)
class Row:
    """One kind of model YAML row.

    Attributes:
        name (str): The module name a row writes, e.g. ``RepVGGBlock``.
        cls (type[nn.Module]): The class the parser builds.
        kind (str): ``CONV``, ``REPEAT`` or ``HEAD``: how Ultralytics' parser passes it channels and repeats.
        args (str): The row's args as a YAML writes them (the parser adds ``c1``, and ``n`` for repeat rows).
        task (str | None): A head row's task, as Ultralytics names tasks (``detect``, ``segment``); None otherwise.
    """

    name: str
    cls: type[nn.Module]
    kind: str
    args: str
    task: str | None = None


_UNITS, _REP_UNITS = "|".join(BASIC_UNITS), "|".join(REP_UNITS)
ROWS: tuple[Row, ...] = (
    Row("RepVGGBlock", RepVGGBlock, CONV, "[c2, k=3, s=1, act]"),
    # Ultralytics' own RepConv gets Conv-like channels too, so rows can say RepConv as the YOLOv6 design card does; no
    # stock YAML names it, so no stock model changes
    Row("RepConv", RepConv, CONV, "[c2, k=3, s=1]"),
    Row("RepBlock", RepBlock, REPEAT, f"[c2, block={_REP_UNITS}, act]"),
    Row("QARepVGGBlock", QARepVGGBlock, CONV, "[c2, k=3, s=1, act]"),
    Row("BottleRep", BottleRep, CONV, f"[c2, block={_UNITS}, weight=True, act]"),
    Row("BepC3", BepC3, REPEAT, f"[c2, e=0.5, block={_UNITS}, act]"),
    Row("SimSPPF", SimSPPF, CONV, "[c2, k=5, act=relu]"),
    Row("CSPSPPF", CSPSPPF, CONV, "[c2, k=5, e=0.5, act]"),
    Row("SimCSPSPPF", SimCSPSPPF, CONV, "[c2, k=5, e=0.5, act=relu]"),
    Row("QARepVGGBlockV2", QARepVGGBlockV2, CONV, "[c2, k=3, s=1, act]"),
    Row("ConvBNAct", ConvBNAct, CONV, "[c2, k=3, s=1, act]"),
    Row("EffiDeHead", EffiDeHead, HEAD, "[nc, reg_max=16 (YOLOv6's: 0 for no DFL)]", "detect"),
    Row("MBLABlock", MBLABlock, REPEAT, f"[c2, e=0.5, block={_UNITS}, act]"),
    # YOLOv6-Lite
    Row("DPBlock", DPBlock, CONV, "[c2, k=3, s=1, act=hardswish]"),
    Row("LiteEffiBlockS1", LiteEffiBlockS1, CONV, "[c2, c_mid, act=hardswish]"),
    Row("LiteEffiBlockS2", LiteEffiBlockS2, CONV, "[c2, c_mid, s=2, act=hardswish]"),
    Row("LiteCSPBlock", LiteCSPBlock, CONV, "[c2, k=5, e=0.5, act=hardswish]"),
    Row("SplitAdd", SplitAdd, CONV, "[c2 (half the input's channels)]"),
    Row("LiteEffiDeHead", LiteEffiDeHead, HEAD, "[nc]", "detect"),
    # YOLOv6-Seg
    Row("EffiDeSegHead", EffiDeSegHead, HEAD, "[nc, reg_max=16 (YOLOv6's: 0 for no DFL)]", "segment"),
)


def names(kind: str | None = None) -> list[str]:
    """Return the row names, in table order; of one kind only when ``kind`` is given."""
    return [row.name for row in ROWS if kind is None or row.kind == kind]


def head_tasks() -> dict[str, str]:
    """Return ``{head row name: its task}``."""
    return {row.name: row.task for row in ROWS if row.kind == HEAD}


def is_plugin_class(cls: type) -> bool:
    """Return whether ``cls`` is defined in this package (Ultralytics' ``RepConv`` is not)."""
    return cls.__module__.partition(".")[0] == PACKAGE


def uses_plugin(model: nn.Module) -> bool:
    """Return whether ``model`` holds a layer of this package: Ultralytics' own models are left exactly as they are."""
    return any(is_plugin_class(type(module)) for module in model.modules())


def plugin_classes() -> list[type[nn.Module]]:
    """Return every plugin layer class a checkpoint may pickle.

    That is each row class defined in this package, plus the plugin's ``nn.Module`` classes those rows' modules
    define or import (the units a row is built from, such as ``BottleRep`` inside a ``RepBlock``).
    """
    modules = {row.cls.__module__ for row in ROWS if is_plugin_class(row.cls)}
    return sorted({obj for module in modules for obj in vars(sys.modules[module]).values()
                   if isinstance(obj, type) and issubclass(obj, nn.Module) and is_plugin_class(obj)},
                  key=lambda cls: (cls.__module__, cls.__qualname__))


def by_module(rows: Iterable[Row] = ROWS) -> dict[str, list[str]]:
    """Return ``{module: [class names]}`` of the rows defined in this package, to import them from where they live."""
    grouped: dict[str, list[str]] = {}
    for row in rows:
        if is_plugin_class(row.cls):
            grouped.setdefault(row.cls.__module__, []).append(row.cls.__name__)
    return grouped
