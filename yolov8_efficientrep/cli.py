"""The ``yolov8-efficientrep`` command (also ``python -m yolov8_efficientrep``): one sub-command per task.

A sub-command is a function that adds its parser to ``commands`` and sets ``run`` to the function that executes it;
``main`` dispatches. Add one by writing such a function and calling it in ``build_parser``.
"""

from __future__ import annotations

import argparse
import sys


def _add_fuse(commands: argparse._SubParsersAction) -> None:
    """``fuse``: write a deploy checkpoint with every Rep block fused, checked against the unfused model."""
    parser = commands.add_parser(
        "fuse", help="write a deploy checkpoint with every Rep block fused",
        description="Write <checkpoint>-fused.pt next to the checkpoint, with every Rep block re-parameterized into "
                    "one 3x3 convolution and every Conv+BN folded. The written file is reloaded and checked against "
                    "the unfused model; 'yolo predict/val/export' load it like any .pt. It cannot be trained: train "
                    "from the original checkpoint.")
    parser.add_argument("checkpoint", help="an Ultralytics .pt with Rep blocks, e.g. runs/detect/train/weights/best.pt")
    parser.add_argument("-o", "--output", help="output path (default: <checkpoint stem>-fused.pt next to it)")
    parser.add_argument("--force", action="store_true", help="replace the output file if it exists")
    parser.add_argument("--half", action="store_true",
                        help="store float16 weights like Ultralytics' checkpoints: half the size, one more rounding")
    parser.add_argument("--imgsz", type=int, help="check image size (default: the checkpoint's training imgsz)")
    parser.set_defaults(run=_run_fuse)


def _run_fuse(args: argparse.Namespace) -> None:
    """Fuse ``args.checkpoint`` and print what was written."""
    from .fusion import fuse_checkpoint

    result = fuse_checkpoint(args.checkpoint, args.output, overwrite=args.force, half=args.half, imgsz=args.imgsz)
    (params, fused_params), (size, fused_size) = result.params, result.sizes
    check = result.check
    print(f"{args.checkpoint} -> {result.path}: fused {check.blocks} Rep blocks, max |diff| = {check.max_abs:.2e} "
          f"({check.max_rel:.2e} relative, tolerance {check.tolerance:.0e})\n"
          f"parameters {params:,} -> {fused_params:,}; file {size / 1e6:.1f} MB -> {fused_size / 1e6:.1f} MB "
          f"({'float16' if args.half else 'float32'} weights)")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="yolov8-efficientrep", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_fuse(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; print a one-line error and return 1 for a user error (bad path, existing output)."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"yolov8-efficientrep {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0
