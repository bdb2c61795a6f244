"""Teach Ultralytics' model parser the plugin's rows, without editing any Ultralytics file.

``parse_model`` (``ultralytics/nn/tasks.py``) decides a row's channels by membership in collections written inside
the function: Conv-like rows get ``c1 = ch[f]`` and width-scaled ``c2``; repeat rows also get the depth-scaled repeat
count; Detect-like rows the input channels of every level. A class that is merely importable falls through to
``c2 = ch[f]`` and builds with wrong channels. ``install_parser`` therefore puts the row classes into ``tasks``'
namespace, recompiles ``parse_model`` from its own source with the row names appended to those collections (found
by content, so it works across releases) and executes it in ``tasks``' namespace so ``globals()[name]`` still resolves
rows. A fork patched by ``patches/make_fork_patch.py`` (``YOLOV8_EFFICIENTREP_NATIVE``) already did both, natively.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import textwrap
from types import ModuleType
from typing import Callable

from ..row_errors import explain
from ..rows import CONV, HEAD, REPEAT, ROWS, names
from ..versions import MAX_VERSION, MIN_VERSION, ultralytics_version, unsupported
from .wrapping import is_wrapped, mark

NATIVE = "YOLOV8_EFFICIENTREP_NATIVE"  # set in tasks.py by the fork patch: its parse_model knows the rows


def install_parser() -> None:
    """Make plugin rows build like built-in rows in every model Ultralytics parses from now on; idempotent.

    ``RepVGGBlock`` / ``RepConv`` rows behave like ``Conv`` rows (input channels, width scaling, ``max_channels``);
    ``RepBlock`` rows like ``C2f`` rows (plus depth-scaled repeats); ``EffiDeHead`` rows like ``Detect`` rows. A
    failing plugin row is reported with its file and row (``row_errors``). Ultralytics' own rows are untouched.

    Raises:
        ImportError: The installed Ultralytics is outside the supported range, or its parser has an unknown shape.
    """
    tasks = importlib.import_module("ultralytics.nn.tasks")
    if getattr(tasks, NATIVE, False) or is_wrapped(tasks.parse_model):
        return  # a patched fork, whose own parser knows the rows (it imports this package while loading), or done
    if not MIN_VERSION <= ultralytics_version() < MAX_VERSION:
        raise unsupported("version outside the supported range")
    for row in ROWS:
        existing = tasks.__dict__.get(row.name)
        if existing is not None and existing is not row.cls:
            raise unsupported(f"ultralytics.nn.tasks already defines a different '{row.name}'")
        setattr(tasks, row.name, row.cls)
    original = tasks.parse_model
    parse_model = mark(_with_row_context(_recompile_parse_model(tasks)), original)
    tasks.parse_model = parse_model
    nn_package = importlib.import_module("ultralytics.nn")
    if hasattr(nn_package, "parse_model"):  # `from ultralytics.nn import parse_model` re-export
        nn_package.parse_model = parse_model


def _with_row_context(parse_model: Callable) -> Callable:
    """Wrap ``parse_model`` so that a failing row is reported with its YAML file, section, index, text and cause."""

    @functools.wraps(parse_model)
    def parse_model_with_row_context(d: dict, ch, verbose: bool = True):
        from ultralytics.nn.modules import Conv

        default_act = Conv.default_act
        try:
            return parse_model(d, ch, verbose)
        except Exception as error:
            # parse_model sets the process-wide default from `activation:` and restores it only when it returns: a
            # failed YAML would otherwise hand its activation to every model built after it
            Conv.default_act = default_act
            explained = explain(error, d, parse_model, ROWS)
            if explained is None:
                raise
            raise explained from error

    return parse_model_with_row_context


def collection_names(node: ast.Set | ast.Tuple) -> set[str]:
    """Return the bare names listed in a set or tuple literal."""
    return {element.id for element in node.elts if isinstance(element, ast.Name)}


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
    base = [node for node in literals if {"Conv", "C2f"} <= collection_names(node)]
    repeat = [node for node in literals
              if {"C2f", "BottleneckCSP"} <= collection_names(node) and "Conv" not in collection_names(node)]
    channel_branches = [node.test for node in ast.walk(tree) if isinstance(node, ast.If) and node.body
                        and any(isinstance(n, ast.ListComp) for n in ast.walk(node.body[0]))]
    detect = [node for node in literals if "Detect" in collection_names(node)
              and any(node is n for test in channel_branches for n in ast.walk(test))]
    if len(base) != 1 or len(repeat) != 1 or len(detect) != 1:
        raise unsupported(
            f"parse_model's module collections were not recognised (found {len(base)} Conv-like, {len(repeat)} "
            f"repeat and {len(detect)} Detect collections, expected one of each)"
        )
    return base[0], repeat[0], detect[0]


def collection_rows() -> tuple[list[str], list[str], list[str]]:
    """Return the row names each collection of ``module_collections`` must list: Conv-like (repeat rows too, in table
    order), repeat, Detect-like."""
    return [row.name for row in ROWS if row.kind in (CONV, REPEAT)], names(REPEAT), names(HEAD)


def _recompile_parse_model(tasks: ModuleType) -> Callable:
    """Compile ``parse_model`` from its source with the plugin's rows in its Conv-like, repeat and Detect collections."""
    try:
        lines, first_line = inspect.getsourcelines(tasks.parse_model)
    except (OSError, TypeError) as error:
        raise unsupported(f"the source of ultralytics/nn/tasks.py is not available ({error})") from error
    tree = ast.parse(textwrap.dedent("".join(lines)))
    ast.increment_lineno(tree, first_line - 1)  # tracebacks point at the real lines of tasks.py

    for node, wanted in zip(module_collections(tree), collection_rows()):
        node.elts.extend(ast.Name(id=name, ctx=ast.Load()) for name in wanted if name not in collection_names(node))
    ast.fix_missing_locations(tree)

    exec(compile(tree, tasks.__file__, "exec"), tasks.__dict__)  # rebinds tasks.parse_model; the caller wraps it
    return tasks.parse_model
