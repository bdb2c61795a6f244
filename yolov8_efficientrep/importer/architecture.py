"""Read a YOLOv6 network's architecture from its checkpoint: block types, widths, repeats, P2 fusion, SPPF, head.

Everything comes from the module tree a checkpoint pickles (class names, tensor shapes, a few attributes), never from
a config file: YOLOv6 keeps its config outside the checkpoint. The result says what the network is; ``forms.py``
decides which shipped config takes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..limits import whole_number
from ..messages import printable
from ..untrusted.records import Record
from .reader import YOLOv6Checkpoint, YOLOv6ImportError

# YOLOv6 unit classes (the `block` of its backbone and neck stages) -> the unit's name in this package's terms.
# 0.2.x/0.3.x wrap plain units as ConvWrapper / SimConvWrapper, 0.4.x as ConvBNSiLU / ConvBNReLU.
UNITS = {"RepVGGBlock": "RepVGGBlock", "QARepVGGBlock": "QARepVGGBlock", "QARepVGGBlockV2": "QARepVGGBlockV2",
         "ConvWrapper": "Conv+BN+SiLU", "ConvBNSiLU": "Conv+BN+SiLU",
         "SimConvWrapper": "Conv+BN+ReLU", "ConvBNReLU": "Conv+BN+ReLU",
         "RealVGGBlock": "RealVGGBlock (RepOpt)", "LinearAddBlock": "LinearAddBlock (RepOpt hyper-search)"}
NAMES_04 = {"ConvModule", "ConvBNReLU", "ConvBNSiLU", "ConvBN", "SPPFModule", "CSPSPPFModule"}  # 0.4.x classes only
CSP_RATIOS = {"2/3": 2 / 3, "1/2": 1 / 2}  # BepC3 hidden ratios of YOLOv6's configs (M, L)
BACKBONES = {"EfficientRep": 3, "CSPBepBackbone": 3, "EfficientRep6": 4, "CSPBepBackbone_P6": 4}  # -> detection levels
NECKS = {"RepPANNeck": 3, "RepBiFPANNeck": 3, "CSPRepPANNeck": 3, "CSPRepBiFPANNeck": 3, "RepBiFPANNeck6": 4,
         "CSPRepBiFPANNeck_P6": 4}  # the P6 configs of 0.3.0-0.4.0 use the BiFPAN necks only (RepPANNeck6 in none)
# By detection levels: the neck's stages, and the neck layers whose output channels are YOLOv6's channels_list[-6:].
NECK_STAGES = {3: ("Rep_p4", "Rep_p3", "Rep_n3", "Rep_n4"),
               4: ("Rep_p5", "Rep_p4", "Rep_p3", "Rep_n4", "Rep_n5", "Rep_n6")}
NECK_CHANNELS = {3: ("reduce_layer0", "reduce_layer1", "downsample2", "Rep_n3", "downsample1", "Rep_n4"),
                 4: ("reduce_layer0", "reduce_layer1", "reduce_layer2", "Rep_n4", "Rep_n5", "Rep_n6")}
HEAD_BRANCHES = ("stems", "cls_convs", "reg_convs", "cls_preds", "reg_preds", "reg_preds_lrtb", "cls_preds_af",
                 "reg_preds_af", "cls_preds_ab", "reg_preds_ab", "seg_convs", "seg_preds", "seg_preds_ab")
# The head's ModuleLists YOLOv6's inference reads, (class predictions, box predictions), by head: the distillation head
# of v3.0 N/S infers with plain distances (reg_preds_lrtb), a --fuse_ab head with its anchor-free branch.
INFERENCE = {"distill_ns": ("cls_preds", "reg_preds_lrtb"), "fuse_ab": ("cls_preds_af", "reg_preds_af"),
             "plain": ("cls_preds", "reg_preds"), "lite": ("cls_preds", "reg_preds"), "seg": ("cls_preds", "reg_preds")}
LITE_HEAD = "yolov6.models.heads.effidehead_lite.Detect"  # YOLOv6-Lite's: DPBlock layers, plain distances, no DFL
SEG_HEAD = "yolov6.models.heads.effidehead_fuseab_seg.Detect"  # YOLOv6-Seg's (0.4.1): a mask branch and prototypes
MASKS = 32  # the mask coefficients YOLOv6-Seg's inference reads per anchor (it reshapes them by 32)
# YOLOv6-Seg heads no release ships: the --issolo head of the yolov6-seg branch, and 0.4.1's unused effidehead_seg.
UNRELEASED_SEG = ("yolov6.models.heads.effidehead_fuseab_seg_solo.", "yolov6.models.effidehead_seg.")
# How an error names a file by a class only one family has (a file that names it but lacks its parts included).
FAMILIES = (("MBLABlock", "an MBLA model"), ("Lite_EffiBackbone", "a YOLOv6-Lite model"),
            ("EfficientRep6", "a P6 model"), ("CSPBepBackbone_P6", "a P6 model"), ("Proto", "a YOLOv6-Seg model"))
# What reading a module record that lacks the children or attributes of its class raises.
MISSING_PARTS = (AttributeError, IndexError, KeyError, StopIteration)


@dataclass(frozen=True)
class HeadLayout:
    """YOLOv6's detection head as stored, for importing it later (this importer gives YOLOv8's Detect a fresh start).

    Attributes:
        yolov6_class (str): The head's class path, e.g. ``yolov6.models.heads.effidehead_distill_ns.Detect``.
        nc (int): Number of classes.
        names (tuple[str, ...] | None): Class names, when the training run stored them on the model.
        reg_max (int | None): YOLOv6's ``reg_max`` (0: plain ltrb distances; 16: 17 bins per side).
        use_dfl (bool | None): Whether the head regresses with distribution focal loss bins.
        branches (dict[str, tuple[tuple[int, ...], ...]]): Per ``ModuleList`` of the head (``stems``, ``cls_convs``,
            ``reg_preds``, ``reg_preds_lrtb``, ``cls_preds_af``, ...), the weight shape of each level's convolution.
    """

    yolov6_class: str
    nc: int
    names: tuple[str, ...] | None
    reg_max: int | None
    use_dfl: bool | None
    branches: dict[str, tuple[tuple[int, ...], ...]]

    @property
    def kind(self) -> str:
        """``distill_ns`` (v3.0 N/S: ``reg_preds_lrtb``), ``fuse_ab`` (``--fuse_ab`` runs: ``*_af`` / ``*_ab``),
        ``lite`` (YOLOv6-Lite's ``effidehead_lite``), ``seg`` (YOLOv6-Seg's ``effidehead_fuseab_seg``) or ``plain``
        (``effidehead.Detect``), read from the ModuleLists the head holds and, for Lite and Seg, its class."""
        if self.yolov6_class == LITE_HEAD:
            return "lite"
        if self.yolov6_class == SEG_HEAD:
            return "seg"
        if "reg_preds_lrtb" in self.branches:
            return "distill_ns"
        return "fuse_ab" if "cls_preds_af" in self.branches else "plain"

    @property
    def levels(self) -> int:
        """The detection levels: 3 (P3-P5) or, for YOLOv6's P6 models, 4 (P3-P6)."""
        return len(self.branches.get("stems", ()))

    @property
    def inference(self) -> tuple[str, str]:
        """The ModuleLists YOLOv6's inference reads: (class predictions, box predictions)."""
        return INFERENCE[self.kind]

    @property
    def task(self) -> str:
        """Ultralytics' task of the model: ``segment`` for YOLOv6-Seg, ``detect`` otherwise."""
        return "segment" if self.kind == "seg" else "detect"

    @property
    def read(self) -> tuple[str, ...]:
        """The ModuleLists YOLOv6's inference reads: stems, class and box branches, and YOLOv6-Seg's mask branch."""
        masks = ("seg_convs", "seg_preds") if self.kind == "seg" else ()
        return ("stems", "cls_convs", "reg_convs", *self.inference, *masks)

    @property
    def dropped(self) -> tuple[str, ...]:
        """The prediction ModuleLists YOLOv6 trains but never reads at inference (distillation bins, anchor-based
        branch): importing the head leaves them out."""
        return tuple(name for name in self.branches if name not in self.read)

    @property
    def uses_dfl(self) -> bool:
        """Whether YOLOv6's inference reads its box predictions as DFL bins (the distillation head never does)."""
        return self.kind != "distill_ns" and bool(self.use_dfl)

    def inference_reg_max(self, path: object) -> int:
        """Return YOLOv6's ``reg_max`` of the box predictions inference reads: 0 for plain distances, else bins - 1.

        Raises:
            YOLOv6ImportError: The head is not one YOLOv6's own inference can run (levels, class or box channels that
                disagree with ``nc``, ``use_dfl`` and ``reg_max``).
        """
        cls, box = self.inference
        levels = {name: len(self.branches.get(name, ())) for name in self.read}
        if set(levels.values()) not in ({3}, {4}):
            raise YOLOv6ImportError(f"{path}: the head's levels {levels} are not YOLOv6's three (P3-P5) or four "
                                    f"(P3-P6)")
        if self.use_dfl is None or (self.uses_dfl and self.reg_max is None):
            raise YOLOv6ImportError(f"{path}: the head {self.yolov6_class} records no use_dfl / reg_max; pass a "
                                    f"checkpoint that YOLOv6's training wrote")
        bins = self.reg_max + 1 if self.uses_dfl else 1
        outputs = {name: {shape[0] for shape in self.branches[name]} for name in (cls, box)}
        masks = sorted({shape[0] for shape in self.branches.get("seg_preds", ())})
        if self.kind == "seg" and masks != [MASKS]:
            raise YOLOv6ImportError(f"{path}: the head's seg_preds have {masks} output channels, where YOLOv6-Seg's "
                                    f"inference reads {MASKS} mask coefficients")
        if outputs != {cls: {self.nc}, box: {4 * bins}}:
            raise YOLOv6ImportError(
                f"{path}: the head's {cls} / {box} have {sorted(outputs[cls])} / {sorted(outputs[box])} output "
                f"channels, where YOLOv6's inference (nc {self.nc}, use_dfl {self.use_dfl}, reg_max {self.reg_max}) "
                f"reads {self.nc} / {4 * bins}")
        return bins - 1


@dataclass(frozen=True)
class Architecture:
    """What a YOLOv6 checkpoint's network is, in YOLOv6's own terms.

    Attributes:
        backbone (str): ``EfficientRep`` or ``CSPBepBackbone``; ``EfficientRep6`` or ``CSPBepBackbone_P6`` (P6).
        neck (str): ``RepPANNeck``, ``RepBiFPANNeck``, ``CSPRepPANNeck`` or ``CSPRepBiFPANNeck``; ``RepBiFPANNeck6`` or
            ``CSPRepBiFPANNeck_P6`` (P6).
        unit (str): The stages' layer: ``RepVGGBlock``, ``QARepVGGBlock``, ``QARepVGGBlockV2`` or ``Conv+BN+SiLU``
            (YOLOv6-L's ``conv_silu``); see ``UNITS``.
        sppf (str): The backbone's last layer: ``SimSPPF``, ``SPPF``, ``SimCSPSPPF`` or ``CSPSPPF``.
        csp_e (str | None): BepC3's hidden ratio (``2/3``, ``1/2``), None without BepC3 stages.
        fuse_p2 (bool): The neck also takes the backbone's P2 stage (YOLOv6 3.0's BiFusion).
        levels (int): Detection levels: 3 (P3-P5), or 4 (P3-P6: YOLOv6's P6 models, a sixth backbone stage).
        channels (tuple[int, ...]): YOLOv6's ``channels_list`` after width scaling: 5 backbone (P6: 6), 6 neck.
        units (tuple[int, ...]): Units per stage after depth scaling: 4 backbone, 4 neck (P6: 5 and 6; layers of a
            RepBlock, BottleRep units of a BepC3).
        naming (str): ``0.2.x/0.3.x`` (SimConv, Conv_C3) or ``0.4.x`` (ConvModule inside ConvBNReLU / ConvBNSiLU).
        head (HeadLayout): The detection head.
        stage (str): The backbone's stage class: ``RepBlock``, ``BepC3``, ``MBLABlock`` (YOLOv6 0.4's ``_mbla``
            models) or ``Lite_EffiBlock`` (YOLOv6-Lite's S2 / S1 blocks).
    """

    backbone: str
    neck: str
    unit: str
    sppf: str
    csp_e: str | None
    fuse_p2: bool
    levels: int
    channels: tuple[int, ...]
    units: tuple[int, ...]
    naming: str
    head: HeadLayout
    stage: str = "RepBlock"

    def describe(self) -> str:
        """Return a one-line description, e.g. ``EfficientRep + RepBiFPANNeck, RepVGGBlock units, SimCSPSPPF, ...``."""
        csp = f", {self.stage} e={self.csp_e}" if self.csp_e else ""
        return (f"{self.backbone} + {self.neck}, {self.unit} units{csp}, {self.sppf}, "
                f"P{2 if self.fuse_p2 else 3}-P{self.levels + 2} into the neck, channels {list(self.channels)}, "
                f"units per stage {list(self.units)}, {self.naming} names")


def _name(module: Record | None) -> str:
    """Return a module record's class name (YOLOv6's or torch's), ``None`` for a missing module."""
    return module.class_name if isinstance(module, Record) else type(module).__name__


def _first_conv(module: Record) -> Record:
    """Return the first ``Conv2d`` in a module: a Rep unit's 3x3 branch, a conv unit's convolution."""
    return next(m for m in module.modules() if m.is_instance_of(nn.Conv2d))


def out_channels(module: Record) -> int:
    """Return the output channels of a YOLOv6 layer or stage."""
    name = _name(module)
    if name in ("RepBlock", "BottleRep"):
        return out_channels(module.conv1)
    if name == "BepC3":
        return out_channels(module.cv3)
    if name == "MBLABlock":
        return out_channels(module.cv2)
    if name in ("SimSPPF", "SPPF"):
        return out_channels(getattr(module, "sppf", module).cv2)  # 0.4.x wraps the layers in `sppf`
    if name in ("SimCSPSPPF", "CSPSPPF"):
        return out_channels(getattr(module, "cspsppf", module).cv7)
    return _first_conv(module).out_channels


def stage_units(stage: Record) -> list[Record]:
    """Return the units of a RepBlock (its layers, or its BottleRep units), of a BepC3's RepBlock, or of an MBLABlock
    (the BottleRep3 units of every branch)."""
    if _name(stage) == "BepC3":
        return stage_units(stage.m)
    if _name(stage) == "MBLABlock":
        return [unit for chain in stage.m for unit in chain]
    return [stage.conv1, *(stage.block if stage.block is not None else [])]


def stage_size(stage: Record) -> int:
    """Return a stage's size as YOLOv6's scaling rules count it: units of a RepBlock or BepC3, the longest branch's
    units of an MBLABlock (``n // 2`` of its ``n`` layers)."""
    return len(stage.m[-1]) if _name(stage) == "MBLABlock" else len(stage_units(stage))


def layer_units(stage: Record) -> list[Record]:
    """Return every single layer of a stage, looking inside BottleRep and BottleRep3 units."""
    inner = {"BottleRep": ("conv1", "conv2"), "BottleRep3": ("conv1", "conv2", "conv3")}
    return [layer for unit in stage_units(stage)
            for layer in ((getattr(unit, name) for name in inner[_name(unit)]) if _name(unit) in inner else (unit,))]


def refuse_model_families(path: object, classes: frozenset[str]) -> None:
    """Raise ``YOLOv6ImportError`` for YOLOv6 model families this importer does not take, from the classes a file
    pickles (``YOLOv6Checkpoint.classes``), so that ``read_checkpoint`` can refuse them before unpickling anything.
    """
    unreleased = sorted(name for name in classes if name.startswith(UNRELEASED_SEG))
    if unreleased:
        raise YOLOv6ImportError(f"{path} is a YOLOv6 segmentation model with a head no YOLOv6 release ships "
                                f"({', '.join(unreleased)}: the --issolo head, or effidehead_seg); the YOLOv6-Seg "
                                f"models of release 0.4.1 (N/S/M/L/X_seg, effidehead_fuseab_seg) import")


def _refuse_unsupported(checkpoint: YOLOv6Checkpoint) -> None:
    """Raise ``YOLOv6ImportError`` for the YOLOv6 models this importer does not take, naming what the file is."""
    path, model = checkpoint.path, checkpoint.model
    refuse_model_families(path, checkpoint.classes)
    fused = [name for name, m in model.named_modules() if name.endswith("rbr_reparam") or "forward" in m.attributes]
    if fused:
        raise YOLOv6ImportError(
            f"{path} is a fused (deploy) YOLOv6 checkpoint: its Rep blocks were re-parameterized ({fused[0]}) and "
            f"their branches and BN statistics are gone; import the training checkpoint it came from (a release .pt, "
            f"or best_ckpt.pt of a YOLOv6 run)")
    if any(getattr(model, part, None) is None for part in ("backbone", "neck", "detect")):
        raise YOLOv6ImportError(f"{path}: the pickled {_name(model)} has no backbone, neck and detect parts, so it is "
                                f"not a YOLOv6 detection model; pass one trained with YOLOv6's tools/train.py")


def _backbone_stages(backbone: Record, levels: int) -> list[Record]:
    """Return the backbone's stages after the stem: ``ERBlock_2`` to ``ERBlock_5`` (P6: ``ERBlock_6``)."""
    return [getattr(backbone, f"ERBlock_{k}") for k in range(2, levels + 3)]


def _unit(checkpoint: YOLOv6Checkpoint, levels: int) -> str:
    """Return the name (a value of ``UNITS``) of the one unit class every backbone and neck stage is built of."""
    model = checkpoint.model
    backbone = model.backbone
    stages = [stage[1] for stage in _backbone_stages(backbone, levels)]
    stages += [getattr(model.neck, name) for name in NECK_STAGES[levels]]
    layers = [backbone.stem, *(stage[0] for stage in _backbone_stages(backbone, levels))]
    layers += [layer for stage in stages for layer in layer_units(stage)]
    found = sorted({_name(layer) for layer in layers})
    if len(found) != 1 or found[0] not in UNITS:
        raise YOLOv6ImportError(f"{checkpoint.path}: the backbone and neck are built of {', '.join(found)}, not of one "
                                f"of YOLOv6's units ({', '.join(UNITS)}); this importer cannot read that network")
    return UNITS[found[0]]


def _csp_ratio(checkpoint: YOLOv6Checkpoint) -> str | None:
    """Return the hidden ratio of the BepC3 or MBLABlock stages as YOLOv6's configs write it (``2/3`` or ``1/2``), None
    without such stages. An MBLABlock's ``cv1`` makes one map of that width per branch."""
    stages = [m for m in checkpoint.model.modules() if _name(m) in ("BepC3", "MBLABlock")]
    if not stages:
        return None
    hidden = [(out_channels(stage.cv1) // (len(stage.m) + 1 if _name(stage) == "MBLABlock" else 1),
               out_channels(stage)) for stage in stages]
    for label, ratio in CSP_RATIOS.items():
        if all(c_ == int(c2 * ratio) for c_, c2 in hidden):
            return label
    raise YOLOv6ImportError(f"{checkpoint.path}: {_name(stages[0])} stages with hidden/output channels {hidden}, which "
                            f"match neither of YOLOv6's ratios ({', '.join(CSP_RATIOS)}); no shipped config has them")


def _head(detect: Record, model: Record) -> HeadLayout:
    """Return the layout of YOLOv6's detection head."""
    branches = {}
    for name in HEAD_BRANCHES:
        levels = getattr(detect, name, None)
        if isinstance(levels, Record) and levels.is_instance_of(nn.ModuleList):
            branches[name] = tuple(tuple(next(t for t in level.state_dict().values() if t.dim() == 4).shape)
                                   for level in levels)
    names = getattr(model, "names", None)
    use_dfl, reg_max = getattr(detect, "use_dfl", None), whole_number(getattr(detect, "reg_max", None))
    if detect.class_path == LITE_HEAD:  # no use_dfl / reg_max: YOLOv6-Lite's head regresses plain distances only
        use_dfl, reg_max = False, 0
    return HeadLayout(detect.class_path, whole_number(getattr(detect, "nc", None)) or 0,
                      tuple(names) if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)
                      else None, reg_max, use_dfl if isinstance(use_dfl, bool) else None, branches)


def _lite_architecture(checkpoint: YOLOv6Checkpoint) -> Architecture:
    """Return the architecture of a YOLOv6-Lite network (``Lite_EffiBackbone`` + ``Lite_EffiNeck``)."""
    model = checkpoint.model
    backbone, neck = model.backbone, model.neck
    if _name(neck) != "Lite_EffiNeck":
        raise YOLOv6ImportError(f"{checkpoint.path} is a YOLOv6-Lite model (Lite_EffiBackbone) with a {_name(neck)} "
                                f"neck, which no shipped config reproduces; YOLOv6-Lite pairs it with Lite_EffiNeck")
    stages = [getattr(backbone, f"lite_effiblock_{k}") for k in range(1, 5)]
    found = sorted({f"{_name(block)} at {i}" for stage in stages for i, block in enumerate(stage)
                    if _name(block) != ("Lite_EffiBlockS2" if i == 0 else "Lite_EffiBlockS1")})
    if found:
        raise YOLOv6ImportError(f"{checkpoint.path}: YOLOv6-Lite stages start with one Lite_EffiBlockS2 followed by "
                                f"Lite_EffiBlockS1 blocks; this one has {', '.join(found[:3])}")
    channels = [out_channels(backbone.conv_0), *(out_channels(stage[0].conv_pw_3) for stage in stages)]
    channels += [2 * out_channels(stage[0].conv_pw_2) for stage in stages]  # the stage's middle channels
    channels.append(out_channels(neck.reduce_layer0))
    return Architecture(backbone="Lite_EffiBackbone", neck="Lite_EffiNeck", unit="Lite_EffiBlock", sppf="",
                        csp_e=None, fuse_p2=False, levels=4, channels=tuple(channels),
                        units=tuple(len(stage) for stage in stages), naming="0.4.x", head=_head(model.detect, model),
                        stage="Lite_EffiBlock")


def family(classes: frozenset[str]) -> str:
    """Return how a message names a file by its family (``an MBLA model``), ``a YOLOv6 model`` for the others."""
    names = {path.rpartition(".")[2] for path in classes}
    return next((what for name, what in FAMILIES if name in names), "a YOLOv6 model")


def missing_parts(path: object, classes: frozenset[str], error: Exception) -> YOLOv6ImportError:
    """Return the error for a network whose module records lack the children or attributes their classes have."""
    return YOLOv6ImportError(f"{path} is {family(classes)} whose modules lack parts YOLOv6's classes have "
                             f"({printable(error, 100)}); pass a checkpoint that YOLOv6's training wrote")


def detect_architecture(checkpoint: YOLOv6Checkpoint) -> Architecture:
    """Return the architecture of a YOLOv6 checkpoint's network, read from its module tree.

    Raises:
        YOLOv6ImportError: The network is fused, has a segmentation head no release ships, is built of other units,
            or its modules lack parts their classes have.
    """
    try:
        return _architecture(checkpoint)
    except MISSING_PARTS as error:
        raise missing_parts(checkpoint.path, checkpoint.classes, error) from None


def _architecture(checkpoint: YOLOv6Checkpoint) -> Architecture:
    """``detect_architecture``'s reading, which a record lacking its class's parts stops with ``MISSING_PARTS``."""
    _refuse_unsupported(checkpoint)
    model = checkpoint.model
    backbone, neck = model.backbone, model.neck
    if _name(backbone) == "Lite_EffiBackbone":
        return _lite_architecture(checkpoint)
    levels = BACKBONES.get(_name(backbone))
    if levels is None or NECKS.get(_name(neck)) != levels:
        pairs = " or ".join(f"{' / '.join(b for b, n in BACKBONES.items() if n == k)} with "
                            f"{' / '.join(n for n, m in NECKS.items() if m == k)}" for k in (3, 4))
        raise YOLOv6ImportError(f"{checkpoint.path}: a {_name(backbone)} backbone with a {_name(neck)} neck, which no "
                                f"shipped config reproduces; supported: {pairs}")
    stages = _backbone_stages(backbone, levels)
    neck_stages = [getattr(neck, name) for name in NECK_STAGES[levels]]
    channels = [out_channels(backbone.stem), *(out_channels(stage[0]) for stage in stages)]
    channels += [out_channels(getattr(neck, name)) for name in NECK_CHANNELS[levels]]
    classes = {name.rpartition(".")[2] for name in checkpoint.classes}
    return Architecture(
        backbone=_name(backbone), neck=_name(neck), unit=_unit(checkpoint, levels), sppf=_name(stages[-1][2]),
        csp_e=_csp_ratio(checkpoint), fuse_p2="BiFPAN" in _name(neck), levels=levels, channels=tuple(channels),
        units=tuple(stage_size(stage) for stage in [s[1] for s in stages] + neck_stages),
        naming="0.4.x" if classes & NAMES_04 else "0.2.x/0.3.x", head=_head(model.detect, model),
        stage=_name(stages[0][1]))
