"""``import_yolov6()``: a YOLOv6 checkpoint in, an Ultralytics checkpoint in training form out, checked before it lands.

The steps, each in its own module: read the file safely (``reader``), read the architecture from it
(``architecture``), pick the shipped config that reproduces it (``forms``), build that config with YOLOv8's Detect
head for ``nc`` classes, move every backbone and neck tensor across by structure (``remap``), write it to a temporary
file, reload that file as Ultralytics loads checkpoints, run it fused and unfused on a real photo (they must agree),
and only then move it into place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from ultralytics import __version__ as ultralytics_version
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from ..configs import CFG_DIR
from ..fusion import FusionCheck, check_fusion, fuse_rep_blocks, load_checkpoint, sample_image
from .architecture import Architecture, detect_architecture, refuse_model_families
from .forms import Selection, select_form
from .reader import YOLOv6ImportError, read_checkpoint
from .remap import remap

SHORT_NAMES = {"CSPBepBackbone": "CSPBep", "RepPANNeck": "RepPAN", "RepBiFPANNeck": "RepBiFPAN",
               "CSPRepPANNeck": "CSPRepPAN", "CSPRepBiFPANNeck": "CSPRepBiFPAN"}


@dataclass(frozen=True)
class ImportResult:
    """What ``import_yolov6`` read, matched, moved and wrote.

    Attributes:
        source (Path): The YOLOv6 checkpoint.
        output (Path): The Ultralytics checkpoint written.
        architecture (Architecture): The YOLOv6 network as detected, its head layout included.
        selection (Selection): The config and YOLOv6 size it was matched to.
        model_name (str): The Ultralytics model, e.g. ``yolov8s-repbifpan``.
        nc (int): Classes of the new Detect head.
        backbone (tuple[int, int]): YOLOv6 backbone tensors transferred, and the backbone's total.
        neck (tuple[int, int]): YOLOv6 neck tensors transferred, and the neck's total.
        scale_set (bool): The config's scales lack YOLOv6's depth and width at this size (YOLOv6-T), so the
            checkpoint's model YAML adds them under the size's letter.
        check (FusionCheck): The imported model, fused against unfused, on a real photo.
        head_state (dict[str, torch.Tensor]): YOLOv6's detection-head tensors as stored (``detect.*`` keys without
            the prefix), for importing the head itself.
    """

    source: Path
    output: Path
    architecture: Architecture
    selection: Selection
    model_name: str
    nc: int
    backbone: tuple[int, int]
    neck: tuple[int, int]
    scale_set: bool
    check: FusionCheck
    head_state: dict[str, torch.Tensor]

    def summary(self) -> str:
        """Return the one-line report, e.g. ``yolov6s (v3.0, EfficientRep + RepBiFPAN) -> yolov8s-repbifpan: ...``."""
        arch, form = self.architecture, self.selection.form
        unit = "" if arch.unit == "RepVGGBlock" else f", {arch.unit}"
        parts = (SHORT_NAMES.get(name, name) for name in (arch.backbone, arch.neck))
        scale = self.selection.size
        added = f" (scale {scale}: YOLOv6's depth {self.selection.depth}, width {self.selection.width})" \
            if self.scale_set else ""
        return (f"yolov6{scale} ({form.generation}, {' + '.join(parts)}{unit}) -> {self.model_name}{added}: "
                f"backbone {self.backbone[0]}/{self.backbone[1]}, neck {self.neck[0]}/{self.neck[1]} tensors; "
                f"Detect head initialized for nc={self.nc}")


def _target_config(selection: Selection, unit: str, nc: int, source: Path, arch: Architecture) -> tuple[dict, bool]:
    """Return the model YAML dict of the selected config at the YOLOv6 size, with ``unit`` swapped in if needed.

    Also returns whether the size's scale had to be set: the config has no such letter (YOLOv6-T), or its depth,
    width or channel cap differ from YOLOv6's at that size.
    """
    form, size = selection.form, selection.size
    cfg = yaml_model_load(CFG_DIR / f"{form.config}.yaml")
    depth, width, cap = cfg["scales"].get(size, (0, 0, 0))
    scale_set = (round(depth, 6), round(width, 6)) != (selection.depth, selection.width) or cap < 1024
    if scale_set:
        cfg["scales"][size] = [selection.depth, selection.width, 1024]
    cfg["scale"], cfg["nc"] = size, nc
    cfg["yaml_file"] = f"{form.config.replace('yolov8', f'yolov8{size}', 1)}.yaml"
    if unit != form.units[0]:  # QARepVGG checkpoints: the RepVGG config with their unit in every Rep row
        for row in cfg["backbone"] + cfg["head"]:
            if row[2] == "RepVGGBlock":
                row[2] = unit
            elif row[2] == "RepBlock":
                row[3] = [row[3][0], unit, *row[3][2:]]
            elif row[2] == "BepC3":
                row[3] = [*row[3][:2], unit, *row[3][3:]]
    cfg["yolov6_import"] = {"source": source.name, "yolov6": f"yolov6{size}", "architecture": arch.describe()}
    return cfg, scale_set


def _checked_output(source: Path, output: Path, force: bool) -> None:
    """Refuse an output path before any work: wrong suffix, the source itself, a missing folder, an existing file."""
    if output.suffix != ".pt":
        raise ValueError(f"{output}: the output must end in .pt, the only checkpoint suffix Ultralytics loads")
    if output.exists() and source.exists() and output.resolve() == source.resolve():
        raise ValueError(f"{output}: refusing to overwrite the YOLOv6 checkpoint itself; choose another output path")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"{output}: the folder {output.parent} does not exist; create it, or choose another "
                                f"output path")
    if output.exists() and not force:
        raise FileExistsError(f"{output} exists; add --force (force=True) to replace it, or choose another output path")


def import_yolov6(source: str | Path, output: str | Path, nc: int | None = None, force: bool = False,
                  imgsz: int = 160) -> ImportResult:
    """Turn a YOLOv6 detection checkpoint into an Ultralytics checkpoint with the same backbone and neck weights.

    The architecture is read from the checkpoint (release 0.1-0.4 naming, ``model`` / ``ema`` entries as YOLOv6's
    ``strip_optimizer`` writes them, float16), the shipped config with exactly its backbone and neck shapes is built
    with YOLOv8's Detect head for ``nc`` classes, and every backbone and neck tensor (BN statistics and BottleRep
    weights included) is copied by structure, every pair checked (class, shape, stride, BN ``eps``, activation). The
    file is written next to ``output`` under a temporary name, reloaded as Ultralytics loads checkpoints (it must hold
    exactly the imported tensors), fused and run on a real photo against the unfused model (they must agree), and
    only then moved into place; a failure leaves no file behind. YOLOv6's own forward is not run here (YOLOv6 need not
    be installed): the tests compare imported models with YOLOv6's code for every design and release. The checkpoint
    stores float32 weights (YOLOv6's float16 values exactly, and conv biases folded into BN means without rounding)
    and trains, validates, predicts and exports like any Ultralytics ``.pt``.

    Args:
        source (str | Path): A YOLOv6 ``.pt`` (``yolov6s.pt`` from YOLOv6's releases, or a run's ``best_ckpt.pt``).
        output (str | Path): The Ultralytics ``.pt`` to write.
        nc (int, optional): Classes of the new Detect head; by default the YOLOv6 model's (80 for COCO weights, whose
            class names are kept).
        force (bool): Replace ``output`` if it exists.
        imgsz (int): Side of the check image.

    Returns:
        (ImportResult): What was detected, matched and transferred; ``summary()`` is the one-line report.

    Raises:
        FileNotFoundError: ``source`` or the folder of ``output`` does not exist.
        FileExistsError: ``output`` exists and ``force`` is False.
        YOLOv6ImportError: (a ``ValueError``) the file is not an importable YOLOv6 checkpoint; the message says what it
            is and what to do.
        FusionCheckError: The imported model's fused and unfused forms disagree (a bug: please report it).

    Examples:
        >>> from yolov8_efficientrep.importer import import_yolov6
        >>> result = import_yolov6("yolov6s.pt", "yolov8s-yolov6.pt", nc=4)
        >>> print(result.summary())
    """
    source, output = Path(source), Path(output)
    _checked_output(source, output, force)
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 1):
        raise ValueError(f"nc must be a positive number of classes, got {nc!r}")
    checkpoint = read_checkpoint(source, screen=refuse_model_families)  # Lite, seg, P6, MBLA: before unpickling
    arch = detect_architecture(checkpoint)
    selection = select_form(arch, source)
    nc = nc or arch.head.nc
    cfg, scale_set = _target_config(selection, arch.unit, nc, source, arch)
    with torch.random.fork_rng(), torch.no_grad():  # seeded: the new head's weights are the same for the same input
        torch.manual_seed(0)
        target = DetectionModel(cfg, nc=nc, verbose=False)
    if arch.head.names and nc == arch.head.nc:
        target.names = dict(enumerate(arch.head.names))
    try:
        transfer = remap(checkpoint.model, target, selection.form)
    except YOLOv6ImportError as error:
        raise YOLOv6ImportError(f"{source}: {error}; the network differs from YOLOv6's design that "
                                f"{selection.form.config} reproduces, so it cannot be imported (please report it with "
                                f"the YOLOv6 version it was trained with)") from error
    target.load_state_dict(transfer.state, strict=False)
    check = _write(target.float().eval(), output, force, sample_image(imgsz, imgsz),
                   {**target.yaml["yolov6_import"], "yolov6_class": checkpoint.model.yolov6_class})

    source_keys = checkpoint.model.state_dict().keys()
    counts = {part: (sum(k.startswith(f"{part}.") for k in transfer.used),
                     sum(k.startswith(f"{part}.") for k in source_keys)) for part in ("backbone", "neck")}
    head_state = {k[len("detect."):]: v for k, v in checkpoint.model.state_dict().items() if k.startswith("detect.")}
    model_name = Path(target.yaml["yaml_file"]).stem
    return ImportResult(source, output, arch, selection, model_name, nc, counts["backbone"], counts["neck"], scale_set,
                        check, head_state)


def _write(model: DetectionModel, output: Path, force: bool, image: torch.Tensor, provenance: dict) -> FusionCheck:
    """Save ``model`` as an Ultralytics checkpoint; move it into place only once the written file has been checked.

    The file is reloaded as Ultralytics loads checkpoints and must hold exactly ``model``'s tensors; the reloaded
    model, fused (Ultralytics' ``fuse()`` and every Rep block), must compute what ``model`` computes on ``image``.
    """
    partial = output.with_name(f".{output.stem}.partial.pt")  # Ultralytics loads only *.pt
    checkpoint = {
        "date": datetime.now().astimezone().isoformat(), "version": ultralytics_version,
        "license": "AGPL-3.0 License (https://ultralytics.com/license)", "docs": "https://docs.ultralytics.com",
        "epoch": -1, "best_fitness": None, "model": model, "ema": None, "updates": None, "optimizer": None,
        "train_args": {"task": "detect", "imgsz": 640}, "yolov6_import": provenance,
    }
    try:
        torch.save(checkpoint, partial)
        written, _ = load_checkpoint(partial)
        expected = model.state_dict()
        if written.state_dict().keys() != expected.keys() or not all(
                torch.equal(tensor, expected[key]) for key, tensor in written.state_dict().items()):
            raise YOLOv6ImportError(f"{output}: the written checkpoint reloads with other weights than were imported")
        fuse_rep_blocks(written.fuse(verbose=False))
        check = check_fusion(written, model, image, what=f"import written to {output}", inplace=True)
        if output.exists() and not force:  # created while importing
            raise FileExistsError(f"{output} exists; add --force (force=True) to replace it, or choose another path")
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return check
