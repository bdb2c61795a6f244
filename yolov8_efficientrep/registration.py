"""Teach Ultralytics' model parser the plugin's YAML rows, without editing any Ultralytics file.

``parse_model`` (``ultralytics/nn/tasks.py``) decides a row's channels by membership in two collections written
inside the function: Conv-like rows get ``c1 = ch[f]`` and width-scaled ``c2``; repeat rows also get the
depth-scaled repeat count. A class that is merely importable falls through to ``c2 = ch[f]`` and builds with wrong
channels. ``register()`` therefore recompiles ``parse_model`` from its own source with the plugin's names appended
to those two collections, and executes it in ``tasks``' namespace so ``globals()[name]`` still resolves rows.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from types import ModuleType
from typing import Callable

from torch import nn

from .row_errors import with_row_context

SUPPORTED_ULTRALYTICS = ">=8.1.0,<8.5"
_MIN_VERSION, _MAX_VERSION = (8, 1, 0), (8, 5, 0)  # inclusive, exclusive; keep in step with setup.cfg
_PATCHED = "__yolov8_efficientrep__"  # marks the installed parse_model, making register() idempotent
NATIVE = "YOLOV8_EFFICIENTREP_NATIVE"  # set in tasks.py by the fork patch (patches/): the parser knows the blocks


def _plugin_blocks() -> dict[str, tuple[type[nn.Module], bool]]:
    """Return ``{row name: (class, takes repeats)}`` for every block a YAML row may name."""
    from ultralytics.nn.modules import RepConv

    from .blocks import BottleRep, ConvBNAct, QARepVGGBlock, QARepVGGBlockV2, RepBlock, RepVGGBlock
    from .csp_blocks import BepC3, CSPSPPF, SimCSPSPPF, SimSPPF
    from .heads import EffiDeHead

    # Ultralytics' own RepConv is listed so "RepConv" rows (as the design card words the stride-2 rows) get Conv-like
    # channels too; no stock YAML names it, so no stock model changes.
    return {"RepVGGBlock": (RepVGGBlock, False), "RepConv": (RepConv, False), "RepBlock": (RepBlock, True),
            "QARepVGGBlock": (QARepVGGBlock, False), "BottleRep": (BottleRep, False), "BepC3": (BepC3, True),
            "SimSPPF": (SimSPPF, False), "CSPSPPF": (CSPSPPF, False), "SimCSPSPPF": (SimCSPSPPF, False),
            "QARepVGGBlockV2": (QARepVGGBlockV2, False), "ConvBNAct": (ConvBNAct, False),
            "EffiDeHead": (EffiDeHead, False)}


# A plugin row's args as the YAML writes them (the parser adds c1, and n for repeat rows), for error messages.
# act: an activation name (relu, silu, ...; see activations.py), default the YAML's `activation:`.
_ROW_ARGS = {"RepVGGBlock": "[c2, k=3, s=1, act]", "QARepVGGBlock": "[c2, k=3, s=1, act]",
             "RepConv": "[c2, k=3, s=1]", "RepBlock": "[c2, block=RepVGGBlock|QARepVGGBlock|BottleRep, act]",
             "BottleRep": "[c2, block=RepVGGBlock|QARepVGGBlock|QARepVGGBlockV2|ConvBNAct, weight=True, act]",
             "BepC3": "[c2, e=0.5, block=RepVGGBlock|QARepVGGBlock|QARepVGGBlockV2|ConvBNAct, act]",
             "SimSPPF": "[c2, k=5, act=relu]", "CSPSPPF": "[c2, k=5, e=0.5, act]",
             "SimCSPSPPF": "[c2, k=5, e=0.5, act=relu]", "QARepVGGBlockV2": "[c2, k=3, s=1, act]",
             "ConvBNAct": "[c2, k=3, s=1, act]", "EffiDeHead": "[nc, reg_max=16 (YOLOv6's: 0 for no DFL)]"}


def version_tuple(text: str) -> tuple[int, ...]:
    """Return the numeric release of a version string: ``8.3.0`` -> (8, 3, 0)."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def ultralytics_version() -> tuple[int, ...]:
    """Return the installed Ultralytics version as an integer tuple, e.g. ``(8, 4, 190)``."""
    import ultralytics

    return version_tuple(ultralytics.__version__)


def _unsupported(reason: str) -> ImportError:
    """Build the import error shown when the installed Ultralytics cannot be patched."""
    import ultralytics

    return ImportError(
        f"yolov8-efficientrep cannot register its blocks with ultralytics {ultralytics.__version__}: {reason}. "
        f"Supported: ultralytics{SUPPORTED_ULTRALYTICS}; install one with: pip install 'ultralytics{SUPPORTED_ULTRALYTICS}'"
    )


def register() -> None:
    """Make plugin rows build like built-in rows in every model Ultralytics parses from now on. Idempotent.

    ``RepVGGBlock`` / ``RepConv`` rows behave like ``Conv`` rows (input channels, width scaling, ``max_channels``);
    ``RepBlock`` rows like ``C2f`` rows (plus depth-scaled repeats); ``EffiDeHead`` rows like ``Detect`` rows (the
    input channels of every level). Ultralytics' own rows are untouched.

    Raises:
        ImportError: The installed Ultralytics is outside the supported range or its parser has an unknown shape.
    """
    tasks = importlib.import_module("ultralytics.nn.tasks")
    if getattr(tasks, NATIVE, False) or getattr(tasks.parse_model, _PATCHED, False):
        return  # a patched fork (which imports this package while tasks.py is still loading), or registered already
    if not _MIN_VERSION <= ultralytics_version() < _MAX_VERSION:
        raise _unsupported("version outside the supported range")

    blocks = _plugin_blocks()
    for name, (cls, _) in blocks.items():
        existing = tasks.__dict__.get(name)
        if existing is not None and existing is not cls:
            raise _unsupported(f"ultralytics.nn.tasks already defines a different '{name}'")
        setattr(tasks, name, cls)

    conv_like, repeating, heads = row_kinds(blocks)
    parse_model = with_row_context(_recompile_parse_model(tasks, conv_like, repeating, heads), blocks, _ROW_ARGS)
    setattr(parse_model, _PATCHED, True)
    tasks.parse_model = parse_model
    nn_package = importlib.import_module("ultralytics.nn")
    if hasattr(nn_package, "parse_model"):  # `from ultralytics.nn import parse_model` re-export
        nn_package.parse_model = parse_model

    from .configs import install_bundled_lookup
    from .heads import install_task_guess

    install_bundled_lookup(tasks)
    install_task_guess()


def _names(node: ast.Set | ast.Tuple) -> set[str]:
    """Return the bare names listed in a set or tuple literal."""
    return {element.id for element in node.elts if isinstance(element, ast.Name)}


def row_kinds(blocks: dict[str, tuple[type[nn.Module], bool]]) -> tuple[list[str], list[str], list[str]]:
    """Split the plugin's row names into (Conv-like, repeat, Detect-like) rows, the collections they join.

    Detection heads (``Detect`` subclasses) join Detect's collection, which hands them the input channels of every
    level; every other block is Conv-like, and those taking repeats are also repeat rows.
    """
    from ultralytics.nn.modules import Detect

    heads = [name for name, (cls, _) in blocks.items() if issubclass(cls, Detect)]
    conv_like = [name for name in blocks if name not in heads]
    return conv_like, [name for name, (_, repeats) in blocks.items() if repeats], heads


def module_collections(tree: ast.AST) -> tuple[ast.Set | ast.Tuple, ...]:
    """Return the Conv-like, the repeat and the Detect collection literals of ``parse_model``'s syntax tree.

    They are found by content, which holds from 8.0's tuple literals to 8.4's frozensets: the Conv-like one lists
    both ``Conv`` and ``C2f``; the repeat one lists ``C2f`` and ``BottleneckCSP`` but not ``Conv``; the Detect one lists
    ``Detect`` and is tested by the branch that passes the heads their input channels (``[ch[x] for x in f]``), not
    by the later one of 8.3+ that only sets ``legacy``.

    Raises:
        ImportError: Not exactly one of each was found.
    """
    literals = [node for node in ast.walk(tree) if isinstance(node, (ast.Set, ast.Tuple))]
    base = [node for node in literals if {"Conv", "C2f"} <= _names(node)]
    repeat = [node for node in literals if {"C2f", "BottleneckCSP"} <= _names(node) and "Conv" not in _names(node)]
    channel_branches = [node.test for node in ast.walk(tree) if isinstance(node, ast.If) and node.body
                        and any(isinstance(n, ast.ListComp) for n in ast.walk(node.body[0]))]
    detect = [node for node in literals if "Detect" in _names(node)
              and any(node is n for test in channel_branches for n in ast.walk(test))]
    if len(base) != 1 or len(repeat) != 1 or len(detect) != 1:
        raise _unsupported(
            f"parse_model's module collections were not recognised (found {len(base)} Conv-like, {len(repeat)} "
            f"repeat and {len(detect)} Detect collections, expected one of each)"
        )
    return base[0], repeat[0], detect[0]


def _recompile_parse_model(tasks: ModuleType, conv_like: list[str], repeating: list[str], heads: list[str]
                           ) -> Callable:
    """Compile ``parse_model`` from its source with extra names in its Conv-like, repeat and Detect collections."""
    try:
        lines, first_line = inspect.getsourcelines(tasks.parse_model)
    except (OSError, TypeError) as error:
        raise _unsupported(f"the source of ultralytics/nn/tasks.py is not available ({error})") from error
    tree = ast.parse(textwrap.dedent("".join(lines)))
    ast.increment_lineno(tree, first_line - 1)  # tracebacks point at the real lines of tasks.py

    for node, names in zip(module_collections(tree), (conv_like, repeating, heads)):
        node.elts.extend(ast.Name(id=name, ctx=ast.Load()) for name in names if name not in _names(node))
    ast.fix_missing_locations(tree)

    exec(compile(tree, tasks.__file__, "exec"), tasks.__dict__)  # rebinds tasks.parse_model; register() wraps it
    return tasks.parse_model
