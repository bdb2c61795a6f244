"""The ``yolov8-efficientrep`` command (also ``python -m yolov8_efficientrep``): one sub-command per task.

A sub-command is a function that adds its parser to ``commands`` and sets ``run`` to the function that executes it;
``main`` dispatches. Add one by writing such a function and calling it in ``build_parser``. Every failure ends in one
line on stderr that names the file or option and what to do, with a non-zero exit status (``describe``, ``main``);
``--traceback`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from .messages import describe

def _add_traceback(parser: argparse.ArgumentParser) -> None:
    """Give a sub-command ``--traceback``: errors then show Python's traceback instead of one line."""
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, show the Python traceback instead of the one-line message")


def _add_fuse(commands: argparse._SubParsersAction) -> None:
    """``fuse``: write a deploy checkpoint with every Rep block fused, checked against the unfused model."""
    parser = commands.add_parser(
        "fuse", help="write a deploy checkpoint with every Rep block fused",
        description="Write <checkpoint>-fused.pt next to the checkpoint, with every Rep block re-parameterized into "
                    "one 3x3 convolution and every Conv+BN folded. The written file is reloaded and checked against "
                    "the unfused model; 'yolo predict/val/export' load it like any .pt. It cannot be trained: train "
                    "from the original checkpoint. The checkpoint is read as data (nothing stored in it runs) unless "
                    "--trusted is given.")
    parser.add_argument("checkpoint", help="an Ultralytics .pt with Rep blocks, e.g. runs/detect/train/weights/best.pt")
    parser.add_argument("-o", "--output", help="output path (default: <checkpoint stem>-fused.pt next to it)")
    parser.add_argument("--force", action="store_true", help="replace the output file if it exists")
    parser.add_argument("--half", action="store_true",
                        help="store float16 weights like Ultralytics' checkpoints: half the size, one more rounding")
    parser.add_argument("--imgsz", type=int,
                        help="check image size, 32 to 2048 (default: the checkpoint's training imgsz)")
    parser.add_argument("--trusted", action="store_true",
                        help="the checkpoint is yours: load it with Ultralytics' full unpickler, which RUNS CODE stored "
                             "in the file (by default it is read as data in a jailed process and its model rebuilt "
                             "from its YAML)")
    _add_traceback(parser)
    parser.set_defaults(run=_run_fuse)


def _run_fuse(args: argparse.Namespace) -> None:
    """Fuse ``args.checkpoint`` and print what was written; the input, then the output, are checked before any work."""
    from .checkpoints import fuse_checkpoint
    from .limits import check_imgsz

    if args.imgsz is not None:
        check_imgsz("--imgsz", args.imgsz)
    result = fuse_checkpoint(args.checkpoint, args.output, overwrite=args.force, half=args.half, imgsz=args.imgsz,
                             trusted=args.trusted)
    (params, fused_params), (size, fused_size) = result.params, result.sizes
    check = result.check
    print(f"{args.checkpoint} -> {result.path}: fused {check.blocks} Rep blocks, max |diff| = {check.max_abs:.2e} "
          f"({check.max_rel:.2e} relative, within the relative tolerance {check.tolerance:.0e})\n"
          f"parameters {params:,} -> {fused_params:,}; file {size / 1e6:.1f} MB -> {fused_size / 1e6:.1f} MB "
          f"({'float16' if args.half else 'float32'} weights)")


def _add_demo(commands: argparse._SubParsersAction) -> None:
    """``demo``: train, validate, fuse, export and check EfficientRep on a generated data set, offline, on CPU."""
    parser = commands.add_parser(
        "demo", help="train, check and deploy EfficientRep on a generated data set, offline",
        description="Train EfficientRep for a few epochs on the shapes data set that cfg/shapes.yaml generates, "
                    "validate the trained network unfused and fused, export ONNX (fused and checked), compare ONNX "
                    "Runtime with PyTorch, predict on a validation image and print a summary. Ultralytics runs "
                    "offline in a child process with a temporary settings dir; your own settings are not touched.")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs, 1 to 1000 (default: 10)")
    parser.add_argument("--imgsz", type=int, default=160,
                        help="image size, 32 to 2048 (default: 160, the generated images' size)")
    parser.add_argument("--scale", choices="nsmlx", default="n", help="model scale (default: n)")
    parser.add_argument("--device", default="cpu", help="Ultralytics device: cpu, 0, 0,1, mps (default: cpu)")
    parser.add_argument("--out", help="new or empty output folder (default: a new runs/efficientrep-demo<N>)")
    parser.add_argument("--data", help="data YAML (default: the package's cfg/shapes.yaml, generated on first use)")
    _add_traceback(parser)
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    """Run the demo in a child process with Ultralytics offline; return its exit status."""
    from .demo import run

    return run(args.epochs, args.imgsz, args.scale, args.device, args.out, args.data, args.traceback)


def _add_import_yolov6(commands: argparse._SubParsersAction) -> None:
    """``import-yolov6``: turn a YOLOv6 checkpoint into an Ultralytics checkpoint with the same weights."""
    parser = commands.add_parser(
        "import-yolov6", help="turn a YOLOv6 checkpoint into an Ultralytics checkpoint (YOLOv6's head, or YOLOv8's)",
        description="Read a YOLOv6 checkpoint (yolov6n/t/s/m/l.pt and the _qa models of YOLOv6's 0.2.0 and 0.3.0 "
                    "releases, the P6, Lite, MBLA and Seg models of 0.3.0-0.4.1, or one trained with YOLOv6 0.2-0.4 "
                    "code) without YOLOv6 and without running pickled code, pick the shipped config with exactly its "
                    "backbone and neck, copy every backbone and neck tensor, give it YOLOv8's Detect head (Segment "
                    "for YOLOv6-Seg) for NC classes (or, with --head yolov6, YOLOv6's "
                    "own trained head: the model then predicts what YOLOv6 predicts), check it on a real photo and "
                    "write an Ultralytics checkpoint in training form: 'yolo predict/val/export/train model=OUT.pt' "
                    "take it. See docs/yolov6-import.md.")
    parser.add_argument("source", help="the YOLOv6 .pt, e.g. yolov6s.pt")
    parser.add_argument("-o", "--output", required=True, help="the Ultralytics .pt to write")
    parser.add_argument("--head", choices=("yolov8", "yolov6"), default="yolov8",
                        help="yolov8: a new YOLOv8 Detect (Segment) head for NC classes, to fine-tune (default); "
                             "yolov6: keep YOLOv6's trained head (EffiDeHead, LiteEffiDeHead, EffiDeSegHead) and its "
                             "classes")
    parser.add_argument("--nc", type=int, help="classes of the new head (default: the YOLOv6 model's)")
    parser.add_argument("--force", action="store_true", help="replace the output file if it exists")
    _add_traceback(parser)
    parser.set_defaults(run=_run_import_yolov6)


def _run_import_yolov6(args: argparse.Namespace) -> None:
    """Import ``args.source`` and print what was detected, moved and written."""
    from .importer import import_yolov6

    result = import_yolov6(args.source, args.output, nc=args.nc, force=args.force, head=args.head)
    check = result.check
    print(f"{result.summary()}\n{result.output}: float32 weights, read from YOLOv6 {result.architecture.naming} names; "
          f"fused vs unfused on a photo: {check.max_rel:.1e} relative difference (within the relative tolerance "
          f"{check.tolerance:.0e})")


def _version() -> str:
    """Return this package's version with the Ultralytics and torch it runs on, the three a bug report needs."""
    import torch
    import ultralytics

    from . import __version__

    return f"yolov8-efficientrep {__version__} (ultralytics {ultralytics.__version__}, torch {torch.__version__})"


class _VersionAction(argparse.Action):
    """``--version``: print ``_version()``, which imports torch and Ultralytics, only when asked (``--help`` does not)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the versions of this package, Ultralytics and torch, and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(_version())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every sub-command."""
    description = __doc__.splitlines()[0].replace("``", "'")  # argparse prints it as written: no reStructuredText
    parser = argparse.ArgumentParser(prog="yolov8-efficientrep", description=description)
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_fuse(commands)
    _add_demo(commands)
    _add_import_yolov6(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; report any failure in one line on stderr and return a non-zero status.

    Returns:
        (int): 0; 1 after an error; 128 + the signal after SIGTERM or SIGHUP stopped a write (130: Ctrl-C); or the
        exit status a command returns (the demo's child process).
    """
    args = build_parser().parse_args(argv)  # --help and --version end here, before torch is imported
    from . import register
    from .output_files import Terminated

    try:
        register()  # importing the package does not register for its own command (see __init__.py)
        return args.run(args) or 0
    except Terminated as stop:
        print(f"yolov8-efficientrep {args.command}: stopped by {stop.signal}; the file being written was removed",
              file=sys.stderr)
        return stop.code
    except KeyboardInterrupt:
        print(f"yolov8-efficientrep {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.traceback:
            raise
        print(describe(error, args.command), file=sys.stderr)
        return 1
