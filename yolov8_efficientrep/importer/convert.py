"""``import_yolov6()``: a YOLOv6 checkpoint in, an Ultralytics checkpoint in training form out, checked before it lands.

The steps, each in its own module: read the file safely (``reader``), read the architecture from it
(``architecture``), pick the shipped config that reproduces it (``forms``), build that config with YOLOv8's Detect
head for ``nc`` classes (Segment for YOLOv6-Seg; or its ``yolov6-*`` twin with YOLOv6's own head), move every backbone
and neck tensor (and the head's) across by structure (``remap``), write it to a temporary file, reload that file as
Ultralytics loads checkpoints, run it fused and unfused on a real photo (they must agree), and only then move it into
place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import ultralytics
import yaml
from ultralytics.nn.tasks import DetectionModel, SegmentationModel, yaml_model_load

from ..checkpoints import load_checkpoint, ultralytics_checkpoint
from ..configs import CFG_DIR, scaled_name
from ..fusion import FusionCheck, check_fusion, fuse_rep_blocks, sample_image
from ..limits import check_classes, check_imgsz
from ..errors import UntrustedFileError
from ..output_files import refuse_output, write_checked
from ..untrusted.jail import check_file
from .architecture import MISSING_PARTS, Architecture, detect_architecture, missing_parts, refuse_model_families
from .forms import Selection, select_form
from .reader import YOLOv6ImportError, read_checkpoint
from .remap import remap

SHORT_NAMES = {"CSPBepBackbone": "CSPBep", "RepPANNeck": "RepPAN", "RepBiFPANNeck": "RepBiFPAN",
               "CSPRepPANNeck": "CSPRepPAN", "CSPRepBiFPANNeck": "CSPRepBiFPAN", "CSPBepBackbone_P6": "CSPBep-P6",
               "RepBiFPANNeck6": "RepBiFPAN6", "CSPRepBiFPANNeck_P6": "CSPRepBiFPAN-P6"}
FORCE_HINT = "pass force=True"  # how an existing output may be replaced (the command line says --force)
HEADS = ("yolov8", "yolov6")  # a new YOLOv8 Detect head, or YOLOv6's own (EffiDeHead) with its trained weights
MODELS = {"detect": DetectionModel, "segment": SegmentationModel}  # Ultralytics' model class by task
# How the one-line report names the head: YOLOv6's, imported, by the head's kind (EffiDeHead for the others); a new
# YOLOv8 one by the task.
YOLOV6_HEADS = {"lite": "LiteEffiDeHead", "seg": "EffiDeSegHead"}
NEW_HEADS = {"detect": "Detect", "segment": "Segment"}


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
            the prefix).
        head (str): ``yolov8`` (a new Detect head for ``nc`` classes) or ``yolov6`` (YOLOv6's own head, imported).
        head_tensors (tuple[int, int]): YOLOv6 head tensors transferred (the DFL read-out: checked), and the head's
            total; (0, total) for a new head.
        dropped (tuple[str, ...]): YOLOv6 head tensors left out because YOLOv6's inference never reads them.
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
    head: str
    head_tensors: tuple[int, int]
    dropped: tuple[str, ...]

    def summary(self) -> str:
        """Return the one-line report, e.g. ``yolov6s (v3.0, EfficientRep + RepBiFPAN) -> yolov8s-repbifpan: ...``."""
        arch, form = self.architecture, self.selection.form
        unit = "" if arch.unit in ("RepVGGBlock", "Lite_EffiBlock") else f", {arch.unit}"
        unit += ", MBLABlock stages" if arch.stage == "MBLABlock" else ""
        parts = (SHORT_NAMES.get(name, name) for name in (arch.backbone, arch.neck))
        scale, yolov6 = self.selection.size, self.selection.yolov6_name
        added = f" (scale {scale}: YOLOv6's depth {self.selection.depth}, width {self.selection.width})" \
            if self.scale_set else ""
        counts = f"backbone {self.backbone[0]}/{self.backbone[1]}, neck {self.neck[0]}/{self.neck[1]}"
        if self.head == "yolov8":
            return (f"{yolov6} ({form.generation}, {' + '.join(parts)}{unit}) -> {self.model_name}{added}: "
                    f"{counts} tensors; {NEW_HEADS[form.task]} head initialized for nc={self.nc}")
        layout = self.architecture.head
        box = "plain distances" if not layout.uses_dfl else f"{layout.reg_max + 1} DFL bins per side"
        dropped = sorted({key.split(".")[1] for key in self.dropped})
        unread = f"; not read by inference, left out: {', '.join(dropped)}" if dropped else ""
        return (f"{yolov6} ({form.generation}, {' + '.join(parts)}{unit}) -> {self.model_name}{added}: "
                f"{counts}, head {self.head_tensors[0]}/{self.head_tensors[1]} tensors; YOLOv6's "
                f"{YOLOV6_HEADS.get(layout.kind, 'EffiDeHead')} for nc={self.nc} "
                f"({layout.inference[1]}: {box}{unread})")


def _target_config(selection: Selection, unit: str, nc: int, source: Path, arch: Architecture,
                   reg_max: int | None = None) -> tuple[dict, bool]:
    """Return the model YAML dict of the selected config at the YOLOv6 size, with ``unit`` swapped in if needed.

    With ``reg_max`` (YOLOv6's, of the head's inference branch), the whole-model config with YOLOv6's head is used and
    an ``EffiDeHead`` row gets that ``reg_max``. Also returns whether the size's scale had to be set: the config has no
    such letter (YOLOv6-T), or its depth, width or channel cap differ from YOLOv6's at that size. A config of one size
    (YOLOv6-Lite's) is used as it is.
    """
    form, size = selection.form, selection.size
    name = form.config if reg_max is None else form.whole_config
    cfg = yaml_model_load(CFG_DIR / f"{name}.yaml")
    scale_set = False
    if form.scaled:
        depth, width, cap = cfg["scales"].get(size, (0, 0, 0))
        scale_set = (round(depth, 6), round(width, 6)) != (selection.depth, selection.width) or cap < 1024
        if scale_set:
            cfg["scales"][size] = [selection.depth, selection.width, 1024]
        cfg["scale"] = size
    cfg["nc"] = nc
    cfg["yaml_file"] = scaled_name(name, size) if form.scaled else f"{name}.yaml"
    if reg_max is not None and cfg["head"][-1][2] in ("EffiDeHead", "EffiDeSegHead"):
        cfg["head"][-1][3] = [cfg["head"][-1][3][0], reg_max]  # [nc, reg_max]
    if unit != form.units[0]:  # QARepVGG checkpoints: the RepVGG config with their unit in every Rep row
        for row in cfg["backbone"] + cfg["head"]:
            if row[2] == "RepVGGBlock":
                row[2] = unit
            elif row[2] == "RepBlock":
                row[3] = [row[3][0], unit, *row[3][2:]]
            elif row[2] == "BepC3":
                row[3] = [*row[3][:2], unit, *row[3][3:]]
    cfg["yolov6_import"] = {"source": source.name, "yolov6": selection.yolov6_name, "architecture": arch.describe(),
                            "head": "yolov8" if reg_max is None else "yolov6"}
    return cfg, scale_set


def _class_names(arch: Architecture, nc: int) -> dict[int, str] | None:
    """Return the class names to keep: the checkpoint's for its own classes, else COCO's for 80 classes.

    YOLOv6's training stores its data set's names on the model; a file without them but with 80 classes holds COCO's
    (YOLOv6's released weights are COCO-trained), whose names Ultralytics ships in its coco.yaml.
    """
    if nc != arch.head.nc:
        return None
    if arch.head.names:
        return dict(enumerate(arch.head.names))
    if nc == 80:
        coco = Path(ultralytics.__file__).parent / "cfg" / "datasets" / "coco.yaml"
        return dict(yaml.safe_load(coco.read_text(encoding="utf-8"))["names"])
    return None


def import_yolov6(source: str | Path, output: str | Path, nc: int | None = None, force: bool = False,
                  imgsz: int = 160, head: str = "yolov8") -> ImportResult:
    """Turn a YOLOv6 checkpoint into an Ultralytics checkpoint with the same backbone and neck weights.

    The architecture is read from the checkpoint (release 0.1-0.4 naming, ``model`` / ``ema`` entries as YOLOv6's
    ``strip_optimizer`` writes them, float16), the shipped config with exactly its backbone and neck shapes is built
    with YOLOv8's Detect head for ``nc`` classes (a Segment head for YOLOv6-Seg), and every backbone and neck tensor
    (BN statistics and BottleRep weights included) is copied by structure, every pair checked (class, shape, stride,
    BN ``eps``, activation). With ``head="yolov6"`` the config's ``yolov6-*`` twin is built instead, ending in
    ``EffiDeHead`` (``LiteEffiDeHead``, ``EffiDeSegHead`` with the mask branch and prototypes), and YOLOv6's trained
    head comes along (the branches its inference reads; training-only predictions are left out): the result predicts
    what YOLOv6 predicts, for the checkpoint's classes and names. The
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
            class names are kept). With ``head="yolov6"`` the head keeps YOLOv6's classes: ``nc`` may only repeat them.
        force (bool): Replace ``output`` if it exists.
        imgsz (int): Side of the check image, rounded up to a multiple of the model's largest stride.
        head (str): ``yolov8`` for a new YOLOv8 Detect head, ``yolov6`` to keep YOLOv6's trained head.

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
        >>> import_yolov6("yolov6s.pt", "yolov6s-ultralytics.pt", head="yolov6")  # predicts as YOLOv6 does
    """
    source, output = Path(source), Path(output)
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such checkpoint")
    try:
        check_file(source)  # a folder, a FIFO, an unreadable file: named before the output is checked
    except UntrustedFileError as error:
        raise YOLOv6ImportError(f"{error}; pass a YOLOv6 .pt file") from None
    refuse_output(source, output, force, FORCE_HINT)
    if nc is not None:
        check_classes("nc (--nc)", nc)
    check_imgsz("import check image", imgsz)
    checkpoint = read_checkpoint(source, screen=refuse_model_families)  # Lite, seg, P6, MBLA: before unpickling
    arch = detect_architecture(checkpoint)
    selection = select_form(arch, source)
    keep = head == "yolov6"
    if keep and nc not in (None, arch.head.nc):
        raise ValueError(f"{source}: --head yolov6 keeps YOLOv6's head and its {arch.head.nc} classes, not nc={nc}; to "
                         f"fine-tune for {nc} classes, import with --head yolov6 and train on your data (yolo train "
                         f"re-initializes only the class predictions), or import with --head yolov8 --nc {nc}")
    reg_max = arch.head.inference_reg_max(source) if keep else None
    if nc is None:
        check_classes(f"{source}: its head's nc", arch.head.nc)  # a number from the file: bounded before building
    nc = nc or arch.head.nc
    cfg, scale_set = _target_config(selection, arch.unit, nc, source, arch, reg_max)
    with torch.random.fork_rng(), torch.no_grad():  # seeded: the new head's weights are the same for the same input
        torch.manual_seed(0)
        target = MODELS[selection.form.task](cfg, nc=nc, verbose=False)
    names = _class_names(arch, nc)
    if names:
        target.names = names
    try:
        transfer = remap(checkpoint.model, target, selection.form, arch.head if keep else None)
    except MISSING_PARTS as error:
        raise missing_parts(source, checkpoint.classes, error) from None
    except YOLOv6ImportError as error:
        config = selection.form.whole_config if keep else selection.form.config
        raise YOLOv6ImportError(f"{source}: {error}; it differs from YOLOv6's design that {config} reproduces: "
                                f"please report it, naming the YOLOv6 version that trained it") from error
    target.load_state_dict(transfer.state, strict=False)
    dropped = tuple(sorted(transfer.dropped))
    side = -(-imgsz // int(target.stride.max())) * int(target.stride.max())  # a P6 model's concats need /64
    check = _write(target.float().eval(), output, force, sample_image(side, side),
                   {**target.yaml["yolov6_import"], "yolov6_class": checkpoint.model.class_path,
                    "dropped": list(dropped)}, selection.form.task)

    source_keys = checkpoint.model.state_dict().keys()
    counts = {part: (sum(k.startswith(f"{part}.") for k in transfer.used),
                     sum(k.startswith(f"{part}.") for k in source_keys)) for part in ("backbone", "neck", "detect")}
    head_state = {k[len("detect."):]: v for k, v in checkpoint.model.state_dict().items() if k.startswith("detect.")}
    model_name = Path(target.yaml["yaml_file"]).stem
    return ImportResult(source, output, arch, selection, model_name, nc, counts["backbone"], counts["neck"], scale_set,
                        check, head_state, head, counts["detect"], dropped)


def _write(model: DetectionModel, output: Path, force: bool, image: torch.Tensor, provenance: dict,
           task: str) -> FusionCheck:
    """Save ``model`` as an Ultralytics checkpoint; move it into place only once the written file has been checked.

    The file is reloaded as Ultralytics loads checkpoints and must hold exactly ``model``'s tensors; the reloaded
    model, fused (Ultralytics' ``fuse()`` and every Rep block), must compute what ``model`` computes on ``image``.
    """
    checkpoint = ultralytics_checkpoint(model, train_args={"task": task, "imgsz": 640}, yolov6_import=provenance)

    def check(written_file: Path) -> FusionCheck:
        written, _ = load_checkpoint(written_file)
        expected = model.state_dict()
        if written.state_dict().keys() != expected.keys() or not all(
                torch.equal(tensor, expected[key]) for key, tensor in written.state_dict().items()):
            raise YOLOv6ImportError(f"{output}: the written checkpoint reloads with other weights than were imported")
        fuse_rep_blocks(written.fuse(verbose=False))
        return check_fusion(written, model, image, what=f"import written to {output}", inplace=True)

    return write_checked(output, checkpoint, check, force, FORCE_HINT)
