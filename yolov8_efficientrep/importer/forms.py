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

# YOLOv6's sizes: [depth_multiple, width_multiple] of its configs (configs/yolov6{n,t,s,m,l}.py, every release).
YOLOV6_SIZES = {"n": (0.33, 0.25), "t": (0.33, 0.375), "s": (0.33, 0.50), "m": (0.60, 0.75), "l": (1.0, 1.0)}
# YOLOv6's base channels (backbone out_channels + neck out_channels) and stage repeats before scaling.
BASE_CHANNELS = (64, 128, 256, 512, 1024, 256, 128, 128, 256, 256, 512)
BASE_REPEATS = (6, 12, 18, 6, 12, 12, 12, 12)

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
        layers (dict[str, int]): YOLOv6 module path -> the config's row index.
        backbone_outputs (tuple[int, ...]): Rows that compute YOLOv6's backbone outputs (the neck's inputs).
        neck_outputs (tuple[int, ...]): Rows that compute YOLOv6's neck outputs (the Detect inputs, P3-P5).
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
    layers: dict[str, int]
    backbone_outputs: tuple[int, ...]
    neck_outputs: tuple[int, ...]

    @property
    def whole_config(self) -> str:
        """The config with the same rows and YOLOv6's own head (``EffiDeHead``) last: ``yolov6-repbifpan``."""
        return self.config.replace("yolov8-", "yolov6-", 1)

    def describe(self) -> str:
        """Return e.g. ``v3.0 N/S: EfficientRep + RepBiFPANNeck (RepVGGBlock, ...) -> yolov8-repbifpan``."""
        csp = f", e={self.csp_e}" if self.csp_e else ""
        return (f"{self.generation} {'/'.join(self.published.upper())}: {self.backbone} + {self.neck} "
                f"({' / '.join(self.units)}{csp}, {self.sppf}) -> {self.config}")


PAN_OUTPUTS, BIFPAN_OUTPUTS = ((4, 6, 9), (17, 20, 23)), ((2, 4, 6, 9), (25, 28, 31))
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
)


@dataclass(frozen=True)
class Selection:
    """The form and YOLOv6 size an architecture was matched to."""

    form: Form
    size: str  # YOLOv6's size letter (n, t, s, m, l)
    depth: float
    width: float


def expected_shape(form: Form, depth: float, width: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return (channels, units per stage) of a form at a depth and width, by YOLOv6's scaling rules.

    Channels round up to multiples of 8; repeats are ``max(round(n * depth), 1)``; a BepC3 stage of ``n`` layers has
    ``max(n // 2, 1)`` BottleRep units. Ultralytics' parser applies the same rules to a config row.
    """
    channels = tuple(math.ceil(c * width / 8) * 8 for c in BASE_CHANNELS)
    repeats = [max(round(n * depth), 1) for n in BASE_REPEATS]
    return channels, tuple(max(n // 2, 1) if form.csp_e else n for n in repeats)


def select_form(arch: Architecture, path: object) -> Selection:
    """Return the shipped config and YOLOv6 size that reproduce ``arch`` exactly.

    Raises:
        YOLOv6ImportError: No form has this backbone, neck, unit, SPPF and BepC3 ratio, or no YOLOv6 size has its
            channels and repeats; the message says what was detected and what is supported.
    """
    for form in FORMS:
        if (form.backbone, form.neck, form.sppf, form.csp_e) == (arch.backbone, arch.neck, arch.sppf, arch.csp_e) \
                and arch.unit in form.units:
            for size, (depth, width) in YOLOV6_SIZES.items():
                if expected_shape(form, depth, width) == (arch.channels, arch.units):
                    return Selection(form, size, depth, width)
    supported = "; ".join(form.describe() for form in FORMS)
    raise YOLOv6ImportError(f"{path}: no shipped config reproduces this network: detected {arch.describe()}. "
                            f"Supported, at any of YOLOv6's sizes {'/'.join(YOLOV6_SIZES)}: {supported}")
