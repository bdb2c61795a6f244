"""Which shipped config takes which YOLOv6 architecture, and where each YOLOv6 module lands in it.

A *form* is one YOLOv6 backbone + neck design that a config in ``cfg/`` reproduces layer for layer. Its ``layers``
table maps YOLOv6's module paths to the config's row indices; read it beside the config's comments, which name the
same YOLOv6 modules. Tables are by name, so the order in which YOLOv6 registers its modules (the v2 neck registers its
RepBlocks before the layers that feed them) does not matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .architecture import Architecture
from .reader import YOLOv6ImportError

# YOLOv6's sizes: [depth_multiple, width_multiple] of its configs (configs/yolov6{n,t,s,m,l}.py, every release; the
# P6 configs yolov6{n,s,m,l}6.py of 0.3.0 and 0.4.0 use the same numbers).
YOLOV6_SIZES = {"n": (0.33, 0.25), "t": (0.33, 0.375), "s": (0.33, 0.50), "m": (0.60, 0.75), "l": (1.0, 1.0)}
# YOLOv6's base channels (backbone out_channels + neck out_channels) and stage repeats before scaling (the stem's
# repeat, 1, is never scaled): P5 configs, and the P6 configs' sixth backbone stage and three-BiFusion neck.
BASE_CHANNELS = (64, 128, 256, 512, 1024, 256, 128, 128, 256, 256, 512)
BASE_REPEATS = (6, 12, 18, 6, 12, 12, 12, 12)
P6_CHANNELS = (64, 128, 256, 512, 768, 1024, 512, 256, 128, 256, 512, 1024)
P6_REPEATS = (6, 12, 18, 6, 6, 12, 12, 12, 12, 12, 12)

BACKBONE = {"backbone.stem": 0, "backbone.ERBlock_2.0": 1, "backbone.ERBlock_2.1": 2, "backbone.ERBlock_3.0": 3,
            "backbone.ERBlock_3.1": 4, "backbone.ERBlock_4.0": 5, "backbone.ERBlock_4.1": 6, "backbone.ERBlock_5.0": 7,
            "backbone.ERBlock_5.1": 8, "backbone.ERBlock_5.2": 9}
PAN_NECK = {"neck.reduce_layer0": 10, "neck.upsample0": 11, "neck.Rep_p4": 13, "neck.reduce_layer1": 14,
            "neck.upsample1": 15, "neck.Rep_p3": 17, "neck.downsample2": 18, "neck.Rep_n3": 20, "neck.downsample1": 21,
            "neck.Rep_n4": 23}
BIFPAN_NECK = {"neck.reduce_layer0": 10, "neck.Bifusion0.upsample": 11, "neck.Bifusion0.cv1": 12,
               "neck.Bifusion0.cv2": 13, "neck.Bifusion0.downsample": 14, "neck.Bifusion0.cv3": 16, "neck.Rep_p4": 17,
               "neck.reduce_layer1": 18, "neck.Bifusion1.upsample": 19, "neck.Bifusion1.cv1": 20,
               "neck.Bifusion1.cv2": 21, "neck.Bifusion1.downsample": 22, "neck.Bifusion1.cv3": 24, "neck.Rep_p3": 25,
               "neck.downsample2": 26, "neck.Rep_n3": 28, "neck.downsample1": 29, "neck.Rep_n4": 31}
BACKBONE6 = {**{k: v for k, v in BACKBONE.items() if k != "backbone.ERBlock_5.2"}, "backbone.ERBlock_6.0": 9,
             "backbone.ERBlock_6.1": 10, "backbone.ERBlock_6.2": 11}  # the SPPF ends ERBlock_6
BIFPAN6_NECK = {"neck.reduce_layer0": 12, "neck.Rep_p5": 19, "neck.reduce_layer1": 20, "neck.Rep_p4": 27,
                "neck.reduce_layer2": 28, "neck.Rep_p3": 35, "neck.downsample2": 36, "neck.Rep_n4": 38,
                "neck.downsample1": 39, "neck.Rep_n5": 41, "neck.downsample0": 42, "neck.Rep_n6": 44,
                **{f"neck.Bifusion{i}.{name}": 13 + 8 * i + row for i in range(3) for name, row in
                   (("upsample", 0), ("cv1", 1), ("cv2", 2), ("downsample", 3), ("cv3", 5))}}
# YOLOv6-Lite (0.4.0): a backbone of four stages (one Lite_EffiBlockS2, then Lite_EffiBlockS1 blocks: each run of S1
# blocks is one row, a Sequential when it holds more than one, so blocks map to "row.i") and its neck. Its released
# sizes round widths in YOLOv6-Lite's own way, so each size has its own config (channels written out, no scales).
LITE_REPEATS = (1, 3, 7, 3)
LITE_BACKBONE = {"backbone.conv_0": 0,
                 **{f"backbone.lite_effiblock_{k}.0": row for k, row in ((1, 1), (2, 2), (3, 4), (4, 6))},
                 **{f"backbone.lite_effiblock_{k}.{i}": f"{row}.{i - 1}" for k, row in ((2, 3), (3, 5), (4, 7))
                    for i in range(1, LITE_REPEATS[k - 1])}}
LITE_NECK = {"neck.reduce_layer0": 8, "neck.upsample0": 9, "neck.reduce_layer1": 10, "neck.Csp_p4": 12,
             "neck.upsample1": 13, "neck.reduce_layer2": 14, "neck.Csp_p3": 16, "neck.downsample2": 17,
             "neck.Csp_n3": 19, "neck.downsample1": 20, "neck.Csp_n4": 22, "neck.p6_conv_1": 23, "neck.p6_conv_2": 24}
# Per released size: width, then (conv_0, the four stages' outputs, their middle channels, the neck's width)
LITE_SIZES = {"s": (0.7, (24, 32, 48, 96, 176, 16, 24, 48, 88, 96)),
              "m": (1.1, (24, 32, 64, 144, 288, 16, 32, 72, 144, 96)),
              "l": (1.5, (24, 48, 96, 192, 384, 24, 48, 96, 192, 96))}
# YOLOv6 0.4's MBLA models (configs/mbla/yolov6{s,m,l,x}_mbla.py): the v3.0 CSP design with MBLABlock stages, their own
# stage repeats and sizes.
MBLA_REPEATS = (4, 8, 8, 4, 8, 8, 8, 8)
MBLA_SIZES = {"s": (0.5, 0.5), "m": (0.5, 0.75), "l": (0.5, 1.0), "x": (1.0, 1.0)}
# YOLOv6-Seg (0.4.1, configs/yolov6{n,s,m,l,x}_seg.py): the v3.0 designs and sizes, and an X of their own.
SEG_SIZES = {**{k: v for k, v in YOLOV6_SIZES.items() if k != "t"}, "x": (1.33, 1.25)}
REP_UNITS = ("RepVGGBlock", "QARepVGGBlock", "QARepVGGBlockV2")  # RepVGG configs take QARepVGG units swapped in


@dataclass(frozen=True)
class Form:
    """A YOLOv6 backbone + neck design and the shipped config that reproduces it.

    Attributes:
        config (str): The config's stem in ``cfg/`` (``yolov8-repbifpan``).
        generation (str): YOLOv6's version of the design (``v3.0``).
        published (str): The YOLOv6 sizes published in this design (``ns``).
        backbone, neck, sppf (str): YOLOv6's class names.
        units (tuple[str, ...]): The units it takes; the first is the config's own, the others replace it on import.
        csp_e (str | None): BepC3's hidden ratio, None for RepBlock stages.
        layers (dict[str, int | str]): YOLOv6 module path -> the config's row index (or ``"row.i"``, the i-th module
            of a row that repeats one module).
        backbone_outputs (tuple[int, ...]): Rows that compute YOLOv6's backbone outputs (the neck's inputs).
        neck_outputs (tuple[int, ...]): Rows that compute YOLOv6's neck outputs (the Detect inputs, P3-P5 or P3-P6).
        base_channels (tuple[int, ...]): YOLOv6's ``channels_list`` before width scaling (backbone, then neck).
        base_repeats (tuple[int, ...]): YOLOv6's stage repeats before depth scaling, the stem's left out.
        names (str): YOLOv6's model name after ``yolov6`` for a size: ``{size}`` (``yolov6s``), ``{size}6`` (P6),
            ``lite_{size}`` (YOLOv6-Lite).
        sizes (dict[str, tuple[float, float]] | None): The sizes it takes, ``(depth, width)`` by letter; None for
            ``YOLOV6_SIZES``.
        scaled (bool): ``config`` scales to every size (``scales:``); False for a config of one size, whose
            ``base_channels`` and ``base_repeats`` are that size's own (YOLOv6-Lite).
        stage (str | None): The backbone's stage class (``Architecture.stage``); None for ``RepBlock``, or ``BepC3``
            where ``csp_e`` is set.
        task (str): Ultralytics' task of the models: ``detect``, or ``segment`` (YOLOv6-Seg: ``config`` ends in
            YOLOv8's Segment head, ``whole_config`` in ``EffiDeSegHead``).
        whole_config (str): The config of the whole model, ``config``'s rows with ``EffiDeHead`` in place of Detect.
    """

    config: str
    generation: str
    published: str
    backbone: str
    neck: str
    sppf: str
    units: tuple[str, ...]
    csp_e: str | None
    layers: dict[str, int | str]
    backbone_outputs: tuple[int, ...]
    neck_outputs: tuple[int, ...]
    base_channels: tuple[int, ...] = BASE_CHANNELS
    base_repeats: tuple[int, ...] = BASE_REPEATS
    names: str = "{size}"
    sizes: dict[str, tuple[float, float]] | None = None
    scaled: bool = True
    stage: str | None = None
    task: str = "detect"

    @property
    def stage_block(self) -> str:
        """The backbone's stage class: ``stage``, else ``BepC3`` for a CSP design, ``RepBlock`` otherwise."""
        return self.stage or ("BepC3" if self.csp_e else "RepBlock")

    @property
    def levels(self) -> int:
        """Detection levels: 3 (P3-P5), 4 (P3-P6: the P6 designs, YOLOv6-Lite)."""
        return len(self.neck_outputs)

    def yolov6_name(self, size: str) -> str:
        """YOLOv6's name of this design at ``size``: ``yolov6s``, ``yolov6n6``, ``yolov6lite_s``, ``yolov6s_seg``."""
        return "yolov6" + self.names.format(size=size)

    @property
    def whole_config(self) -> str:
        """The config with the same rows and YOLOv6's own head (``EffiDeHead``) last: ``yolov6-repbifpan``."""
        return self.config.replace("yolov8-", "yolov6-", 1)

    def describe(self) -> str:
        """Return e.g. ``v3.0 N/S: EfficientRep + RepBiFPANNeck (RepVGGBlock, ...) -> yolov8-repbifpan``."""
        csp = f", e={self.csp_e}" if self.csp_e else ""
        sizes = "/".join(self.names.format(size=size.upper()) for size in self.published)
        stage = f", {self.stage}" if self.stage else ""
        sppf = f", {self.sppf}" if self.sppf else ""
        return (f"{self.generation} {sizes}: {self.backbone} + {self.neck}{stage} "
                f"({' / '.join(self.units)}{csp}{sppf}) -> {self.config}")


PAN_OUTPUTS, BIFPAN_OUTPUTS = ((4, 6, 9), (17, 20, 23)), ((2, 4, 6, 9), (25, 28, 31))
P6_OUTPUTS = ((2, 4, 6, 8, 11), (35, 38, 41, 44))
FORMS = (
    Form("yolov8-reppan", "v1.0/v2.0", "nts", "EfficientRep", "RepPANNeck", "SimSPPF", REP_UNITS, None,
         {**BACKBONE, **PAN_NECK}, *PAN_OUTPUTS),
    Form("yolov8-cspbep", "v2.0", "m", "CSPBepBackbone", "CSPRepPANNeck", "SimSPPF", REP_UNITS, "2/3",
         {**BACKBONE, **PAN_NECK}, *PAN_OUTPUTS),
    Form("yolov8-cspbep-silu", "v2.0", "l", "CSPBepBackbone", "CSPRepPANNeck", "SPPF", ("Conv+BN+SiLU",), "1/2",
         {**BACKBONE, **PAN_NECK}, *PAN_OUTPUTS),
    Form("yolov8-repbifpan", "v3.0", "ns", "EfficientRep", "RepBiFPANNeck", "SimCSPSPPF", REP_UNITS, None,
         {**BACKBONE, **BIFPAN_NECK}, *BIFPAN_OUTPUTS),
    Form("yolov8-cspbifpan", "v3.0", "m", "CSPBepBackbone", "CSPRepBiFPANNeck", "SimSPPF", REP_UNITS, "2/3",
         {**BACKBONE, **BIFPAN_NECK}, *BIFPAN_OUTPUTS),
    Form("yolov8-cspbifpan-silu", "v3.0", "l", "CSPBepBackbone", "CSPRepBiFPANNeck", "SPPF", ("Conv+BN+SiLU",), "1/2",
         {**BACKBONE, **BIFPAN_NECK}, *BIFPAN_OUTPUTS),
    Form("yolov8-repbifpan-p6", "v3.0", "ns", "EfficientRep6", "RepBiFPANNeck6", "SimCSPSPPF", REP_UNITS, None,
         {**BACKBONE6, **BIFPAN6_NECK}, *P6_OUTPUTS, P6_CHANNELS, P6_REPEATS, "{size}6"),
    Form("yolov8-cspbifpan-p6", "v3.0", "m", "CSPBepBackbone_P6", "CSPRepBiFPANNeck_P6", "SimSPPF", REP_UNITS, "2/3",
         {**BACKBONE6, **BIFPAN6_NECK}, *P6_OUTPUTS, P6_CHANNELS, P6_REPEATS, "{size}6"),
    Form("yolov8-cspbifpan-silu-p6", "v3.0", "l", "CSPBepBackbone_P6", "CSPRepBiFPANNeck_P6", "SPPF",
         ("Conv+BN+SiLU",), "1/2", {**BACKBONE6, **BIFPAN6_NECK}, *P6_OUTPUTS, P6_CHANNELS, P6_REPEATS, "{size}6"),
    *(Form(f"yolov8-lite-{size}", "0.4.0", size, "Lite_EffiBackbone", "Lite_EffiNeck", "", ("Lite_EffiBlock",), None,
           {**LITE_BACKBONE, **LITE_NECK}, (3, 5, 7), (16, 19, 22, 26), channels, LITE_REPEATS, "lite_{size}",
           {size: (1.0, width)}, scaled=False, stage="Lite_EffiBlock")
      for size, (width, channels) in LITE_SIZES.items()),
    Form("yolov8-mbla", "0.4.0", "smlx", "CSPBepBackbone", "CSPRepBiFPANNeck", "SPPF", ("Conv+BN+SiLU",), "1/2",
         {**BACKBONE, **BIFPAN_NECK}, *BIFPAN_OUTPUTS, BASE_CHANNELS, MBLA_REPEATS, "{size}_mbla", MBLA_SIZES,
         stage="MBLABlock"),
    Form("yolov8-repbifpan-seg", "0.4.1", "ns", "EfficientRep", "RepBiFPANNeck", "SimCSPSPPF", REP_UNITS, None,
         {**BACKBONE, **BIFPAN_NECK}, *BIFPAN_OUTPUTS, names="{size}_seg", sizes=SEG_SIZES, task="segment"),
    Form("yolov8-cspbifpan-seg", "0.4.1", "m", "CSPBepBackbone", "CSPRepBiFPANNeck", "SimSPPF", REP_UNITS, "2/3",
         {**BACKBONE, **BIFPAN_NECK}, *BIFPAN_OUTPUTS, names="{size}_seg", sizes=SEG_SIZES, task="segment"),
    Form("yolov8-cspbifpan-silu-seg", "0.4.1", "lx", "CSPBepBackbone", "CSPRepBiFPANNeck", "SPPF", ("Conv+BN+SiLU",),
         "1/2", {**BACKBONE, **BIFPAN_NECK}, *BIFPAN_OUTPUTS, names="{size}_seg", sizes=SEG_SIZES, task="segment"),
)


@dataclass(frozen=True)
class Selection:
    """The form and YOLOv6 size an architecture was matched to."""

    form: Form
    size: str  # YOLOv6's size letter (n, t, s, m, l, x)
    depth: float
    width: float

    @property
    def yolov6_name(self) -> str:
        """YOLOv6's name of the model: ``yolov6s``, ``yolov6n6`` (a P6 design), ``yolov6lite_s``, ``yolov6s_seg``."""
        return self.form.yolov6_name(self.size)


def expected_shape(form: Form, depth: float, width: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return (channels, units per stage) of a form at a depth and width, by YOLOv6's scaling rules.

    Channels round up to multiples of 8; repeats are ``max(round(n * depth), 1)``; a BepC3 stage of ``n`` layers has
    ``max(n // 2, 1)`` BottleRep units. Ultralytics' parser applies the same rules to a config row.
    """
    channels = tuple(math.ceil(c * width / 8) * 8 for c in form.base_channels)
    repeats = [max(round(n * depth), 1) for n in form.base_repeats]
    return channels, tuple(max(n // 2, 1) if form.csp_e else n for n in repeats)


def select_form(arch: Architecture, path: object) -> Selection:
    """Return the shipped config and YOLOv6 size that reproduce ``arch`` exactly.

    Raises:
        YOLOv6ImportError: No form has this backbone, neck, unit, SPPF and BepC3 ratio, or no YOLOv6 size has its
            channels and repeats; the message says what was detected and what is supported.
    """
    for form in FORMS:
        design = (form.backbone, form.neck, form.sppf, form.csp_e, form.stage_block, form.task)
        if design == (arch.backbone, arch.neck, arch.sppf, arch.csp_e, arch.stage, arch.head.task) and \
                arch.unit in form.units:
            for size, (depth, width) in (form.sizes or YOLOV6_SIZES).items():
                shape = expected_shape(form, depth, width) if form.scaled else (form.base_channels, form.base_repeats)
                if shape == (arch.channels, arch.units):
                    return Selection(form, size, depth, width)
    raise YOLOv6ImportError(f"{path}: no shipped config reproduces this network: detected {arch.describe()}; the "
                            f"designs that import are listed in docs/yolov6-import.md (Supported checkpoints)")
