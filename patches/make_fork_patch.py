"""Write a patch that builds yolov8-efficientrep's blocks into Ultralytics itself: the route for vendored forks.

The patch edits one file, ``ultralytics/nn/tasks.py``, in two places:

1. ``parse_model``'s Conv-like, repeat and Detect collections list the plugin's row names, found the way
   the run-time registration finds them (``yolov8_efficientrep/integration/parser.py``), so plugin rows get Ultralytics' channel, width and repeat handling natively;
2. the end of the file sets ``YOLOV8_EFFICIENTREP_NATIVE = True`` and imports the blocks from the installed
   ``yolov8_efficientrep`` package. The marker tells the package not to patch the parser again at run time; importing
   from the package keeps checkpoints interchangeable with plugin installs (they pickle the same class paths).

Usage::

    python patches/make_fork_patch.py -o efficientrep.patch            # against the installed ultralytics
    python patches/make_fork_patch.py --tasks fork/ultralytics/nn/tasks.py -o efficientrep.patch
    cd fork && git apply efficientrep.patch                           # or: patch -p1 < efficientrep.patch

Regenerate the patch after upgrading Ultralytics or yolov8-efficientrep.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import sys
from pathlib import Path

from yolov8_efficientrep.integration.parser import NATIVE, collection_names, collection_rows, module_collections
from yolov8_efficientrep.rows import by_module

TARGET = "ultralytics/nn/tasks.py"  # the path inside an Ultralytics checkout, for `git apply` / `patch -p1`


def _parse_model(tree: ast.Module, path: Path) -> ast.FunctionDef:
    """Return the top-level ``parse_model`` definition of tasks.py."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "parse_model":
            return node
    raise SystemExit(f"{path}: no top-level parse_model(); is this ultralytics/nn/tasks.py?")


def _import_lines() -> list[str]:
    """Return the marker and the import statements for every row class of the plugin's table, grouped by module."""
    return [
        "",
        "# yolov8-efficientrep (fork patch from patches/make_fork_patch.py): parse_model builds these blocks natively.",
        f"{NATIVE} = True  # set before the import below: the package then leaves parse_model as this file has it",
        *(f"from {module} import {', '.join(sorted(names))}  # noqa: E402"
          for module, names in sorted(by_module().items())),
    ]


def patched_source(source: str, path: Path) -> str:
    """Return tasks.py's source with the plugin's blocks added natively.

    Raises:
        SystemExit: The file is already patched, or its ``parse_model`` has an unrecognised shape.
    """
    if f"{NATIVE} = True" in source:
        raise SystemExit(f"{path} is already patched for yolov8-efficientrep")
    tree = ast.parse(source)
    wanted = collection_rows()
    try:
        collections = module_collections(_parse_model(tree, path))
    except ImportError as error:
        raise SystemExit(f"{path}: {error}") from error

    lines = source.splitlines(keepends=True)
    # insert after each collection's last element, bottom-up so earlier positions stay valid
    inserts = sorted(
        ((node.elts[-1].end_lineno, node.elts[-1].end_col_offset, [n for n in names if n not in collection_names(node)])
         for node, names in zip(collections, wanted)),
        reverse=True,
    )
    for line_number, column, names in inserts:
        line = lines[line_number - 1]
        lines[line_number - 1] = line[:column] + "".join(f", {name}" for name in names) + line[column:]
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines += [f"{line}\n" for line in _import_lines()]
    return "".join(lines)


def make_patch(tasks: Path) -> str:
    """Return a unified diff (``a/ultralytics/nn/tasks.py`` to ``b/...``) that adds the blocks to ``tasks``."""
    source = tasks.read_text(encoding="utf-8")
    patched = patched_source(source, tasks)
    return "".join(difflib.unified_diff(source.splitlines(keepends=True), patched.splitlines(keepends=True),
                                        f"a/{TARGET}", f"b/{TARGET}"))


def main(argv: list[str] | None = None) -> int:
    """Command line: write the patch for ``--tasks`` (default: the installed Ultralytics) to ``-o`` or stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=Path, help="tasks.py to patch (default: the installed ultralytics/nn/tasks.py)")
    parser.add_argument("-o", "--output", type=Path, help="write the patch here (default: stdout); never overwritten")
    args = parser.parse_args(argv)

    if args.output is not None and args.output.exists():
        raise SystemExit(f"{args.output} exists; choose another name or delete it first")
    if args.tasks is None:
        import ultralytics.nn.tasks

        args.tasks = Path(ultralytics.nn.tasks.__file__)
    patch = make_patch(args.tasks)
    if args.output is None:
        sys.stdout.write(patch)
    else:
        args.output.write_text(patch, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
