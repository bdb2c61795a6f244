"""The rest of YOLOv6's zoo for the import tests: P6 and Lite networks as YOLOv6 builds them, and how they are compared.

P6 (YOLOv6-N6/S6/M6/L6): configs ``yolov6{n,s,m,l}6.py`` of tags 0.3.0 and 0.4.0 (unchanged between them); PyPI's
``yolov6detect`` packages YOLOv6 0.3.0's ``yolov6``, which has every P6 class (``EfficientRep6``,
``CSPBepBackbone_P6``, ``RepBiFPANNeck6``, ``CSPRepBiFPANNeck_P6``, the four-level ``effidehead.Detect``), so the
networks are YOLOv6's own code; ``yolov6_models.build`` gives them 0.4.x's names when asked (``git diff 0.3.0 0.4.0 --
yolov6/models`` changes only the layers' class names in the P6 classes).

YOLOv6-Lite S/M/L (tag 0.4.0, ``configs/yolov6_lite``): 0.3.0's package has none of its classes, so they are
stand-ins reproducing 0.4.0's as read from ``git show 0.4.0:`` ``yolov6/layers/common.py`` (``ConvBNHS``, ``ConvBN``,
``SEBlock``, ``Lite_EffiBlockS1``, ``Lite_EffiBlockS2``, ``DPBlock``, ``DarknetBlock``, ``CSPBlock``),
``yolov6/models/efficientrep.py`` (``Lite_EffiBackbone``), ``yolov6/models/reppan.py`` (``Lite_EffiNeck``),
``yolov6/models/heads/effidehead_lite.py`` (``Detect``, its layers) and ``yolov6/models/yolo_lite.py`` (``Model``, its
channel rounding to multiples of 16): the same module trees, attributes and arithmetic, written here, with 0.3.0's own
``initialize_weights``, ``generate_anchors`` and ``dist2bbox`` (unchanged in 0.4.0). They are pickled under 0.4.0's
class paths, with 0.4.x's checkpoint entries.

The comparison helpers read the imported Ultralytics model's layers, YOLOv6's outputs and both sides' detections
after NMS the way ``tests/test_yolov6_head.py`` does, for any number of levels.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import math
import sys
import types
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import torch
from torch import nn
from ultralytics.utils import ASSETS
from ultralytics.utils.nms import non_max_suppression
from yolov6.assigners.anchor_generator import generate_anchors
from yolov6.data.data_augment import letterbox
from yolov6.utils.general import dist2bbox
from yolov6.utils.nms import non_max_suppression as yolov6_nms
from yolov6.utils.torch_utils import fuse_model as yolov6_fuse_model
from yolov6.utils.torch_utils import initialize_weights

import yolov6_models as ym
from helpers import RTOL, relative_difference

CONF, IOU, MAX_DET = 0.25, 0.45, 1000  # Ultralytics' predict confidence; YOLOv6's inference IoU and max_det
MAX_WH = 4096  # YOLOv6's per-class box offset in its NMS (Ultralytics': 7680): the same arithmetic on both sides
PHOTOS = ("bus.jpg", "zidane.jpg")
CANDIDATES = 100  # NMS takes at least this many of YOLOv6's anchors (see nms_confidence)

# The P6 designs of YOLOv6 0.3.0 (configs/yolov6{n,s,m,l}6.py): backbone, neck and SPPF as the configs build them.
P6_DESIGNS = {
    "n6": dict(training_mode="repvgg", backbone=dict(type="EfficientRep6", fuse_P2=True, cspsppf=True),
               neck=dict(type="RepBiFPANNeck6"), dfl=False),  # N6 and S6
    "m6": dict(training_mode="repvgg", backbone=dict(type="CSPBepBackbone_P6", csp_e=2 / 3, fuse_P2=True),
               neck=dict(type="CSPRepBiFPANNeck_P6", csp_e=2 / 3), dfl=True),
    "l6": dict(training_mode="conv_silu", backbone=dict(type="CSPBepBackbone_P6", csp_e=1 / 2, fuse_P2=True),
               neck=dict(type="CSPRepBiFPANNeck_P6", csp_e=1 / 2), dfl=True),
}


def p6_config(design: str, size: str) -> ym.Config:
    """Return YOLOv6 0.3.0's P6 config of ``design`` (``n6``, ``m6``, ``l6``) at the depth and width of ``size``."""
    depth, width = ym.SIZES[size]
    spec = P6_DESIGNS[design]
    dfl = spec["dfl"]
    return ym._config(dict(training_mode=spec["training_mode"], model=dict(
        depth_multiple=depth, width_multiple=width,
        backbone=dict(num_repeats=[1, 6, 12, 18, 6, 6], out_channels=[64, 128, 256, 512, 768, 1024],
                      **spec["backbone"]),
        neck=dict(num_repeats=[12] * 6, out_channels=[512, 256, 128, 256, 512, 1024], **spec["neck"]),
        head=dict(type="EffiDeHead", in_channels=[128, 256, 512, 1024], num_layers=4, anchors=1,
                  strides=[8, 16, 32, 64], use_dfl=dfl, reg_max=16 if dfl else 0))))


# --- YOLOv6-Lite (0.4.0) stand-ins ------------------------------------------------------------------------------------

LITE_WIDTHS = {"s": 0.7, "m": 1.1, "l": 1.5}  # configs/yolov6_lite/yolov6_lite_{s,m,l}.py
STAND_IN_PATHS = {}  # stand-in class -> its YOLOv6 0.4.0 module, for pickling


def _yolov6(module: str):
    """Give a stand-in class YOLOv6's class path ``module.<its name>``."""

    def named(cls: type) -> type:
        cls.__module__, cls.__qualname__ = module, cls.__name__
        STAND_IN_PATHS[cls] = module
        return cls

    return named


ACTIVATION_TABLE = {"hardswish": nn.Hardswish()}  # 0.4.0's common.activation_table: one module shared by every layer


@_yolov6("yolov6.layers.common")
class ConvBNHS(ym._Wrapper):
    """0.4.0's ConvBNHS: ``block`` = ConvModule(conv without bias, bn, the shared Hardswish)."""

    def __init__(self, c1, c2, k=3, s=1, padding=None, groups=1):
        conv = nn.Conv2d(c1, c2, k, s, k // 2 if padding is None else padding, groups=groups, bias=False)
        super().__init__(ym.STAND_INS["ConvModule"](conv, nn.BatchNorm2d(c2), ACTIVATION_TABLE["hardswish"],
                                                    "hardswish"))


@_yolov6("yolov6.layers.common")
class ConvBN(ym._Wrapper):
    """0.4.0's ConvBN: ``block`` = ConvModule(conv without bias, bn), no activation."""

    def __init__(self, c1, c2, k=3, s=1, padding=None, groups=1):
        conv = nn.Conv2d(c1, c2, k, s, k // 2 if padding is None else padding, groups=groups, bias=False)
        super().__init__(ym.STAND_INS["ConvModule"](conv, nn.BatchNorm2d(c2), None, None))


@_yolov6("yolov6.layers.common")
class SEBlock(nn.Module):
    """0.4.0's SEBlock: average, 1x1 conv to c // 4, ReLU, 1x1 conv back, hard sigmoid, times the input."""

    def __init__(self, channel, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = nn.Conv2d(channel, channel // reduction, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channel // reduction, channel, 1)
        self.hardsigmoid = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.hardsigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))


@_yolov6("yolov6.layers.common")
class Lite_EffiBlockS1(nn.Module):  # noqa: N801 (YOLOv6's name)
    """0.4.0's stride-1 block: second half -> 1x1 (HS), 3x3 depthwise (BN), SE, 1x1 (HS); cat after the first half;
    two-group channel shuffle."""

    def __init__(self, in_channels, mid_channels, out_channels, stride):
        super().__init__()
        self.conv_pw_1 = ConvBNHS(in_channels // 2, mid_channels, 1, 1, 0)
        self.conv_dw_1 = ConvBN(mid_channels, mid_channels, 3, stride, 1, groups=mid_channels)
        self.se = SEBlock(mid_channels)
        self.conv_1 = ConvBNHS(mid_channels, out_channels // 2, 1, 1, 0)

    def forward(self, x):
        half = x.shape[1] // 2
        kept, changed = x[:, :half], x[:, half:]
        changed = self.conv_1(self.se(self.conv_dw_1(self.conv_pw_1(changed))))
        out = torch.cat([kept, changed], 1)
        b, c, h, w = out.shape
        return out.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)


@_yolov6("yolov6.layers.common")
class Lite_EffiBlockS2(nn.Module):  # noqa: N801 (YOLOv6's name)
    """0.4.0's downsampling block: [3x3 dw (BN), 1x1 (HS)] and [1x1 (HS) to mid / 2, 3x3 dw (BN), SE, 1x1 (HS)],
    concatenated, then a 3x3 depthwise (HS) and a 1x1 (HS) convolution."""

    def __init__(self, in_channels, mid_channels, out_channels, stride):
        super().__init__()
        half = mid_channels // 2
        self.conv_dw_1 = ConvBN(in_channels, in_channels, 3, stride, 1, groups=in_channels)
        self.conv_1 = ConvBNHS(in_channels, out_channels // 2, 1, 1, 0)
        self.conv_pw_2 = ConvBNHS(in_channels, half, 1, 1, 0)
        self.conv_dw_2 = ConvBN(half, half, 3, stride, 1, groups=half)
        self.se = SEBlock(half)
        self.conv_2 = ConvBNHS(half, out_channels // 2, 1, 1, 0)
        self.conv_dw_3 = ConvBNHS(out_channels, out_channels, 3, 1, 1, groups=out_channels)
        self.conv_pw_3 = ConvBNHS(out_channels, out_channels, 1, 1, 0)

    def forward(self, x):
        first = self.conv_1(self.conv_dw_1(x))
        second = self.conv_2(self.se(self.conv_dw_2(self.conv_pw_2(x))))
        return self.conv_pw_3(self.conv_dw_3(torch.cat([first, second], 1)))


@_yolov6("yolov6.layers.common")
class DPBlock(nn.Module):
    """0.4.0's DPBlock: depthwise k x k conv (with bias), BN, Hardswish; 1x1 conv (with bias), BN, Hardswish."""

    def __init__(self, in_channel=96, out_channel=96, kernel_size=3, stride=1):
        super().__init__()
        self.conv_dw_1 = nn.Conv2d(in_channel, out_channel, kernel_size, stride, (kernel_size - 1) // 2,
                                   groups=out_channel)
        self.bn_1 = nn.BatchNorm2d(out_channel)
        self.act_1 = nn.Hardswish()
        self.conv_pw_1 = nn.Conv2d(out_channel, out_channel, 1)
        self.bn_2 = nn.BatchNorm2d(out_channel)
        self.act_2 = nn.Hardswish()

    def forward(self, x):
        return self.act_2(self.bn_2(self.conv_pw_1(self.act_1(self.bn_1(self.conv_dw_1(x))))))


@_yolov6("yolov6.layers.common")
class DarknetBlock(nn.Module):
    """0.4.0's DarknetBlock: 1x1 ConvBNHS to out * expansion, then a DPBlock."""

    def __init__(self, in_channels, out_channels, kernel_size=3, expansion=0.5):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv_1 = ConvBNHS(in_channels, hidden, 1, 1, 0)
        self.conv_2 = DPBlock(hidden, out_channels, kernel_size, 1)

    def forward(self, x):
        return self.conv_2(self.conv_1(x))


@_yolov6("yolov6.layers.common")
class CSPBlock(nn.Module):
    """0.4.0's CSPBlock: two 1x1 paths to out / 2, a DarknetBlock on the first, cat, 1x1 to out."""

    def __init__(self, in_channels, out_channels, kernel_size=3, expand_ratio=0.5):
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.conv_1 = ConvBNHS(in_channels, mid, 1, 1, 0)
        self.conv_2 = ConvBNHS(in_channels, mid, 1, 1, 0)
        self.conv_3 = ConvBNHS(2 * mid, out_channels, 1, 1, 0)
        self.blocks = DarknetBlock(mid, mid, kernel_size, 1.0)

    def forward(self, x):
        return self.conv_3(torch.cat((self.blocks(self.conv_1(x)), self.conv_2(x)), 1))


@_yolov6("yolov6.models.efficientrep")
class Lite_EffiBackbone(nn.Module):  # noqa: N801 (YOLOv6's name)
    """0.4.0's Lite backbone: a 24-channel stride-2 ConvBNHS, then four stages of one S2 and n - 1 S1 blocks; returns
    the last three stages' outputs (P3, P4, P5)."""

    def __init__(self, in_channels, mid_channels, out_channels, num_repeat=(1, 3, 7, 3)):
        super().__init__()
        out_channels[0] = 24
        self.conv_0 = ConvBNHS(in_channels, out_channels[0], 3, 2, 1)
        for k in range(1, 5):
            stage = nn.Sequential()
            for i in range(num_repeat[k - 1]):
                block = Lite_EffiBlockS2(out_channels[k - 1], mid_channels[k], out_channels[k], 2) if i == 0 else \
                    Lite_EffiBlockS1(out_channels[k], mid_channels[k], out_channels[k], 1)
                stage.add_module(str(i), block)
            setattr(self, f"lite_effiblock_{k}", stage)

    def forward(self, x):
        x = self.lite_effiblock_2(self.lite_effiblock_1(self.conv_0(x)))
        p4 = self.lite_effiblock_3(x)
        return x, p4, self.lite_effiblock_4(p4)


@_yolov6("yolov6.models.reppan")
class Lite_EffiNeck(nn.Module):  # noqa: N801 (YOLOv6's name)
    """0.4.0's Lite neck: 1x1 reductions to the unified width, a top-down and a bottom-up path of CSPBlocks with
    nearest upsampling and DPBlock downsampling, and P6 as the sum of two stride-2 DPBlocks."""

    def __init__(self, in_channels, unified_channels):
        super().__init__()
        c = unified_channels
        for i in range(3):
            setattr(self, f"reduce_layer{i}", ConvBNHS(in_channels[i], c, 1, 1, 0))
        self.upsample0 = nn.Upsample(scale_factor=2, mode="nearest")
        self.upsample1 = nn.Upsample(scale_factor=2, mode="nearest")
        for name in ("Csp_p4", "Csp_p3", "Csp_n3", "Csp_n4"):
            setattr(self, name, CSPBlock(2 * c, c, 5))
        for name in ("downsample2", "downsample1", "p6_conv_1", "p6_conv_2"):
            setattr(self, name, DPBlock(c, c, 5, 2))

    def forward(self, inputs):
        p3, p4, p5 = inputs
        top = self.reduce_layer0(p5)
        p4, p3 = self.reduce_layer1(p4), self.reduce_layer2(p3)
        f_out1 = self.Csp_p4(torch.cat([self.upsample0(top), p4], 1))
        pan3 = self.Csp_p3(torch.cat([self.upsample1(f_out1), p3], 1))
        pan2 = self.Csp_n3(torch.cat([self.downsample2(pan3), f_out1], 1))
        pan1 = self.Csp_n4(torch.cat([self.downsample1(pan2), top], 1))
        return [pan3, pan2, pan1, self.p6_conv_1(top) + self.p6_conv_2(pan1)]


@_yolov6("yolov6.models.heads.effidehead_lite")
class Detect(nn.Module):
    """0.4.0's effidehead_lite.Detect: per level DPBlock stem, cls and reg DPBlocks, 1x1 predictions (nc; 4 plain
    distances); inference decodes like effidehead.Detect without DFL: (batch, anchors, xywh + 1 + nc)."""

    def __init__(self, num_classes=80, num_layers=3, inplace=True, head_layers=None):
        super().__init__()
        self.nc, self.no, self.nl = num_classes, num_classes + 5, num_layers
        self.grid = [torch.zeros(1)] * num_layers
        self.prior_prob, self.inplace = 1e-2, inplace
        self.stride = torch.tensor([8, 16, 32] if num_layers == 3 else [8, 16, 32, 64])
        self.grid_cell_offset, self.grid_cell_size = 0.5, 5.0
        for j, name in enumerate(("stems", "cls_convs", "reg_convs", "cls_preds", "reg_preds")):
            setattr(self, name, nn.ModuleList(head_layers[5 * i + j] for i in range(num_layers)))

    def initialize_biases(self):
        with torch.no_grad():
            for conv in self.cls_preds:
                conv.weight.zero_()
                conv.bias.fill_(-math.log((1 - self.prior_prob) / self.prior_prob))
            for conv in self.reg_preds:
                conv.weight.zero_()
                conv.bias.fill_(1.0)

    def forward(self, x):
        assert not self.training, "the stand-in reproduces YOLOv6-Lite's inference only"
        anchors, strides = generate_anchors(x, self.stride, self.grid_cell_size, self.grid_cell_offset,
                                            device=x[0].device, is_eval=True, mode="af")
        scores, distances = [], []
        for i in range(self.nl):
            b, _, h, w = x[i].shape
            feature = self.stems[i](x[i])
            scores.append(torch.sigmoid(self.cls_preds[i](self.cls_convs[i](feature))).reshape(b, self.nc, h * w))
            distances.append(self.reg_preds[i](self.reg_convs[i](feature)).reshape(b, 4, h * w))
        boxes = dist2bbox(torch.cat(distances, -1).permute(0, 2, 1), anchors, box_format="xywh") * strides
        scores = torch.cat(scores, -1).permute(0, 2, 1)
        return torch.cat([boxes, torch.ones((b, boxes.shape[1], 1), dtype=boxes.dtype), scores], -1)


def lite_head_layers(channels: list[int], num_classes: int, num_layers: int) -> nn.Sequential:
    """0.4.0's effidehead_lite.build_effidehead_layer: per level stem, cls_conv, reg_conv (DPBlock, 5x5), cls_pred,
    reg_pred (1x1)."""
    layers = nn.Sequential()
    for i in range(num_layers):
        c = channels[i]
        for name, layer in (("stem", DPBlock(c, c, 5, 1)), ("cls_conv", DPBlock(c, c, 5, 1)),
                            ("reg_conv", DPBlock(c, c, 5, 1)), ("cls_pred", nn.Conv2d(c, num_classes, 1)),
                            ("reg_pred", nn.Conv2d(c, 4, 1))):
            layers.add_module(f"{name}{i}", layer)
    return layers


def _lite_divisible(value: float, divisor: int = 16) -> int:
    """0.4.0's yolo_lite.make_divisible: round to the nearest multiple of ``divisor``, at least 90% of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@_yolov6("yolov6.models.yolo_lite")
class Model(nn.Module):
    """0.4.0's yolo_lite.Model: Lite_EffiBackbone + Lite_EffiNeck + the lite head, built by its build_network."""

    def __init__(self, size: str, num_classes: int = 80):
        super().__init__()
        width = LITE_WIDTHS[size]
        out = [_lite_divisible(c * width) for c in (24, 32, 64, 128, 256)]
        mid = [_lite_divisible(int(c * 0.5), 8) for c in out]
        neck_in = [_lite_divisible(c * width) for c in (256, 128, 64)]
        self.backbone = Lite_EffiBackbone(3, mid, out, num_repeat=[1, 3, 7, 3])
        self.neck = Lite_EffiNeck(neck_in, 96)
        self.detect = Detect(num_classes, 4, head_layers=lite_head_layers([96] * 4, num_classes, 4))
        self.stride = self.detect.stride
        self.detect.initialize_biases()
        initialize_weights(self)

    def forward(self, x):
        features = self.neck(self.backbone(x))
        return [self.detect(list(features)), features]


def build_lite(size: str, seed: int = 0) -> nn.Module:
    """Build YOLOv6-Lite-``size`` as 0.4.0 does, randomize it like ``yolov6_models.build``; float16 values, eval."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Model(size)
    return ym.randomize_head(ym.randomize(model, seed), seed).half().float().eval()


@contextlib.contextmanager
def _stand_in_paths():
    """Let pickle find the 0.4.0 stand-ins under their class paths (two of their modules are not in 0.3.0)."""
    modules = {path: sys.modules.get(path) or types.ModuleType(path) for path in set(STAND_IN_PATHS.values())}
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(sys.modules, modules))
        for cls, path in STAND_IN_PATHS.items():
            stack.enter_context(mock.patch.object(modules[path], cls.__name__, cls, create=True))
        yield


def save_04(model: nn.Module, path: Path) -> Path:
    """Save a network with 0.4.0 stand-ins (Lite, MBLA) as 0.4.x's ``strip_optimizer`` does."""
    with _stand_in_paths():
        return ym.save(model, path, "0.4")


# --- MBLA (0.4.0) stand-ins ------------------------------------------------------------------------------------------

MBLA_SIZES = {"s": (0.5, 0.5), "m": (0.5, 0.75), "l": (0.5, 1.0), "x": (1.0, 1.0)}  # configs/mbla/yolov6*_mbla.py


def _conv_bn_silu(c1: int, c2: int, k: int = 3) -> nn.Module:
    """0.4.0's ConvBNSiLU(c1, c2, k): ``block`` = ConvModule(conv without bias, bn, SiLU)."""
    conv = nn.Conv2d(c1, c2, k, 1, k // 2, bias=False)
    return ym.STAND_INS["ConvBNSiLU"](ym.STAND_INS["ConvModule"](conv, nn.BatchNorm2d(c2), nn.SiLU(), "silu"))


@_yolov6("yolov6.layers.common")
class BottleRep3(nn.Module):
    """0.4.0's BottleRep3: three ConvBNSiLU layers (the conv_silu models' basic block) and ``alpha`` times the input
    where the shapes match."""

    def __init__(self, in_channels, out_channels, weight=True):
        super().__init__()
        self.conv1 = _conv_bn_silu(in_channels, out_channels)
        self.conv2 = _conv_bn_silu(out_channels, out_channels)
        self.conv3 = _conv_bn_silu(out_channels, out_channels)
        self.shortcut = in_channels == out_channels
        self.alpha = nn.Parameter(torch.ones(1)) if weight else 1.0

    def forward(self, x):
        y = self.conv3(self.conv2(self.conv1(x)))
        return y + self.alpha * x if self.shortcut else y


@_yolov6("yolov6.layers.common")
class MBLABlock(nn.Module):
    """0.4.0's MBLABlock with the conv_silu models' layers: n // 2 BottleRep3 units in the longest branch; branches
    [0, 1] for one unit, else [0, the largest power of two below n // 2, n // 2]; a SiLU ConvModule splits the input
    into branches of out * e channels and another mixes every map."""

    def __init__(self, in_channels, out_channels, n=1, e=0.5):
        super().__init__()
        n = max(n // 2, 1)
        if n == 1:
            lengths = [0, 1]
        else:
            step = 1
            while step * 2 < n:
                step *= 2
            lengths = [0, step, n]
        self.c = int(out_channels * e)
        conv = nn.Conv2d(in_channels, len(lengths) * self.c, 1, 1, 0, bias=False)
        self.cv1 = ym.STAND_INS["ConvModule"](conv, nn.BatchNorm2d(conv.out_channels), nn.SiLU(), "silu")
        conv = nn.Conv2d((sum(lengths) + len(lengths)) * self.c, out_channels, 1, 1, 0, bias=False)
        self.cv2 = ym.STAND_INS["ConvModule"](conv, nn.BatchNorm2d(out_channels), nn.SiLU(), "silu")
        self.m = nn.ModuleList(nn.Sequential(*(BottleRep3(self.c, self.c) for _ in range(k))) for k in lengths[1:])
        self.split_num = (self.c,) * len(lengths)

    def forward(self, x):
        first, *branches = self.cv1(x).split(self.split_num, 1)
        maps = [first]
        for branch, chain in zip(branches, self.m):
            maps.append(branch)
            for unit in chain:
                maps.append(unit(maps[-1]))
        return self.cv2(torch.cat(maps, 1))


def mbla_config(size: str) -> ym.Config:
    """YOLOv6 0.4.0's configs/mbla/yolov6{size}_mbla.py, with BepC3 stages for 0.3.0's build_network (``build_mbla``
    puts the MBLABlocks in)."""
    depth, width = MBLA_SIZES[size]
    return ym._config(dict(training_mode="conv_silu", model=dict(
        depth_multiple=depth, width_multiple=width,
        backbone=dict(type="CSPBepBackbone", num_repeats=[1, 4, 8, 8, 4], out_channels=[64, 128, 256, 512, 1024],
                      csp_e=1 / 2, fuse_P2=True),
        neck=dict(type="CSPRepBiFPANNeck", num_repeats=[8, 8, 8, 8], out_channels=[256, 128, 128, 256, 256, 512],
                  csp_e=1 / 2),
        head=dict(type="EffiDeHead", in_channels=[128, 256, 512], num_layers=3, anchors=1, strides=[8, 16, 32],
                  use_dfl=True, reg_max=16))))


def build_mbla(size: str, seed: int = 0) -> nn.Module:
    """Build YOLOv6-``size``_mbla as 0.4.0 does: 0.3.0's build_network for the CSP design, every BepC3 stage then
    replaced by an MBLABlock of the stage's channels and depth-scaled repeats (0.4.0's ``stage_block_type``), YOLOv6's
    ``initialize_weights``, randomized like ``yolov6_models.build``, in 0.4.x's module tree and names."""
    config = mbla_config(size)
    depth = config.model.depth_multiple
    repeats = [max(round(n * depth), 1) for n in (4, 8, 8, 4, 8, 8, 8, 8)]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ym.yolov6_yolo.build_model(config, 80, "cpu")
        stages = [(model.backbone, f"ERBlock_{k}", 1) for k in range(2, 6)]
        stages += [(model.neck, name, None) for name in ("Rep_p4", "Rep_p3", "Rep_n3", "Rep_n4")]
        for (parent, name, index), n in zip(stages, repeats):
            owner = getattr(parent, name) if index is not None else parent
            key = str(index) if index is not None else name
            bepc3 = owner._modules[key]
            owner._modules[key] = MBLABlock(bepc3.cv1.conv.in_channels, bepc3.cv3.conv.out_channels, n,
                                            1 / 2)
        initialize_weights(model)
    model = ym.randomize_head(ym.randomize(model, seed), seed)
    return ym._renamed_04(model).half().float().eval()


# --- photos, features and detections ----------------------------------------------------------------------------------


def photo(name: str, size: int, stride: int = 64, rect: bool = True) -> torch.Tensor:
    """Return an Ultralytics asset letterboxed by YOLOv6's own code to ``size`` (a minimal rectangle of multiples of
    ``stride``, or a square), RGB, 0-1, batch of one."""
    image = letterbox(cv2.imread(str(ASSETS / name)), size, auto=rect, stride=stride)[0]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[::-1])).float()[None] / 255


VARIANCE_FLOOR = 0.01


def calibrated(model: nn.Module, size: int, stride: int = 64) -> nn.Module:
    """Return ``model`` with BN statistics measured on the photos (squares of ``size``), as ``ym.calibrate_bn``, each
    variance at least ``VARIANCE_FLOOR``.

    Two photos leave about 1% of the channels of these random networks almost constant (variance down to 1e-4); their
    BN scales float32 rounding by up to 1/sqrt(eps) = 32, layer after layer, past the 1e-4 of a fused-vs-unfused check
    (YOLOv6-Lite-L: 1.3e-4 without the floor, 1.1e-5 with it). Statistics measured on a data set have no such channels.
    """
    model = ym.calibrate_bn(model, torch.cat([photo(name, size, stride, rect=False) for name in PHOTOS]))
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_var.clamp_(min=VARIANCE_FLOOR)
    return model.half().float().eval()


def layer_outputs(model: nn.Module, layers: tuple[int, ...], image: torch.Tensor) -> list[torch.Tensor]:
    """Run an Ultralytics model; return the outputs of the rows ``layers``."""
    outputs = {}
    hooks = [model.model[i].register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, out)) for i in layers]
    with torch.no_grad():
        model(image)
    for hook in hooks:
        hook.remove()
    return [outputs[i] for i in layers]


def compare(decoded: torch.Tensor, yolov6: torch.Tensor) -> tuple[float, float]:
    """Return the relative differences of the boxes and of the class scores: Ultralytics' decoded (batch, 4 + nc,
    anchors) against YOLOv6's (batch, anchors, 5 + nc), whose fifth column is its constant objectness."""
    assert torch.all(yolov6[..., 4] == 1)
    ours = decoded.transpose(1, 2)
    return relative_difference(ours[..., :4], yolov6[..., :4]), relative_difference(ours[..., 4:], yolov6[..., 5:])


def paired_detections(ours: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
    """Return, for each of ``theirs`` (x1, y1, x2, y2, score, class, ...) detections, the index of the nearest of
    ``ours`` of its class (largest coordinate difference); assert that no two share one."""
    assert len(ours) == len(theirs) and len(theirs) > 0, (ours.shape, theirs.shape)
    distance = (theirs[:, None, :4] - ours[None, :, :4]).abs().amax(-1)  # theirs x ours, pixels
    distance[theirs[:, None, 5] != ours[None, :, 5]] = math.inf
    nearest = distance.argmin(1)
    assert len(set(nearest.tolist())) == len(theirs), "two detections matched the same one"
    return nearest


def same_detections(ours: torch.Tensor, theirs: torch.Tensor, box_atol: float, score_atol: float = RTOL
                    ) -> tuple[float, float]:
    """Assert the same (x1, y1, x2, y2, score, class) detections in any order: each of ``theirs`` has one of ``ours``
    of its class with the box within ``box_atol`` pixels and the score within ``score_atol``, no two sharing one.
    Return the largest box and score differences."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    nearest = ours[paired_detections(ours, theirs)]
    boxes = (theirs[:, :4] - nearest[:, :4]).abs().max().item()
    scores = (theirs[:, 4] - nearest[:, 4]).abs().max().item()
    assert boxes <= box_atol and scores <= score_atol, (boxes, scores)
    return boxes, scores


def nms_confidence(theirs: torch.Tensor) -> float:
    """Return the confidence threshold for comparing detections after NMS on YOLOv6's output (batch of one,
    (anchors, 5 + nc + ...)): Ultralytics' 0.25, or lower where fewer than ``CANDIDATES`` anchors of YOLOv6's output
    reach it (a random head can give flat scores): then it lies in the widest gap between YOLOv6's best scores from the
    ``CANDIDATES``-th to the 1.5-fold, so that no score near it decides on one side only."""
    best = theirs[0, :, 5:].amax(-1).sort(descending=True).values
    if len(best) > CANDIDATES and best[CANDIDATES - 1] < CONF:
        window = best[CANDIDATES - 1:CANDIDATES * 3 // 2]
        widest = int((window[:-1] - window[1:]).argmax())
        return float(window[widest] + window[widest + 1]) / 2
    return CONF


def detections_match(decoded: torch.Tensor, theirs: torch.Tensor, tolerance: float = RTOL
                     ) -> tuple[float, float, float, float, int]:
    """Compare an imported model's decoded output with YOLOv6's inference output on one image: before NMS, and after
    NMS at YOLOv6's thresholds (confidence: ``nms_confidence``) on both sides, within ``tolerance`` (relative; scores
    absolute after NMS). Return (boxes, scores relative; boxes px, scores after NMS; detections).
    """
    boxes, scores = compare(decoded, theirs)
    assert boxes <= tolerance and scores <= tolerance, (boxes, scores, tolerance)
    conf = nms_confidence(theirs)
    expected = yolov6_nms(theirs.clone(), conf, IOU, max_det=MAX_DET)[0]
    found = non_max_suppression(decoded, conf, IOU, max_det=MAX_DET, max_wh=MAX_WH)[0]
    pixels, points = same_detections(found, expected, tolerance * theirs[..., :4].abs().max().item(), tolerance)
    return boxes, scores, pixels, points, len(expected)


def import_with_head(source: Path) -> tuple[Path, str]:
    """Run ``yolov8-efficientrep import-yolov6 <source> --head yolov6`` (the command's ``main``) into
    ``imported.pt`` beside the file; return that path and what the command printed."""
    from yolov8_efficientrep.cli import main

    output, printed = source.with_name("imported.pt"), io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["import-yolov6", str(source), "-o", str(output), "--head", "yolov6"]) == 0
    return output, printed.getvalue()


def import_under_a_new_head(source: Path, output: Path, layers: tuple[int, ...], yolov6: nn.Module,
                            image: torch.Tensor) -> tuple[nn.Module, dict, str, float]:
    """Run ``yolov8-efficientrep import-yolov6 <source> -o <output> --nc 4`` (the command's ``main``: a new YOLOv8
    head for 4 classes); assert that the rows ``layers`` of the import compute YOLOv6's backbone and neck outputs on
    ``image`` within ``RTOL``. Return the imported model, its checkpoint, what the command printed and the largest
    relative difference."""
    from yolov8_efficientrep.checkpoints import load_checkpoint
    from yolov8_efficientrep.cli import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["import-yolov6", str(source), "-o", str(output), "--nc", "4"]) == 0
    ours, checkpoint = load_checkpoint(output)
    assert ours.model[-1].nc == 4
    difference = max(relative_difference(a, b) for a, b in
                     zip(layer_outputs(ours, layers, image), ym.features(yolov6, image), strict=True))
    assert difference <= RTOL, difference
    return ours, checkpoint, printed.getvalue(), difference


def whole_model_agreement(ours: nn.Module, yolov6: nn.Module, layers: tuple[int, ...],
                          images: dict[str, torch.Tensor]) -> str:
    """Compare an import with its head with YOLOv6's network on each image: the feature maps of ``layers`` against
    YOLOv6's backbone and neck outputs (within ``RTOL``), and the detections before and after NMS
    (``detections_match``); return the line that reports the largest differences."""
    largest, counts = [0.0] * 5, []
    for name, image in images.items():
        features = layer_outputs(ours, layers, image), ym.features(yolov6, image)
        assert [t.shape for t in features[0]] == [t.shape for t in features[1]], name
        maps = max(relative_difference(a, b) for a, b in zip(*features))
        assert maps <= RTOL, (name, maps)
        with torch.no_grad():
            measured = detections_match(ours(image)[0], ym.inference(yolov6, image))
        largest = [max(a, b) for a, b in zip(largest, (maps, *measured[:4]))]
        counts.append(measured[4])
    return (f"features {largest[0]:.1e}, pre-NMS boxes {largest[1]:.1e} scores {largest[2]:.1e} relative; after NMS "
            f"the same {' + '.join(map(str, counts))} detections, boxes within {largest[3]:.1e} px, scores within "
            f"{largest[4]:.1e}")


def onnx_agreement(onnx_file: str, yolov6: nn.Module, images: list[torch.Tensor]) -> str:
    """Run an exported import in ONNX Runtime on each image and compare it with YOLOv6's network before and after NMS,
    within ``fusion_tolerance``; return the line that reports the largest differences."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    tolerance = fusion_tolerance(yolov6, images)
    largest = [0.0] * 4
    for image in images:
        exported = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: image.numpy()})[0])
        measured = detections_match(exported, ym.inference(yolov6, image), tolerance)
        largest = [max(a, b) for a, b in zip(largest, measured[:4])]
    return (f"pre-NMS boxes {largest[0]:.1e}, scores {largest[1]:.1e} relative (bound {tolerance:.1e}: RTOL, or twice "
            f"YOLOv6's own deploy form's difference); the same detections, boxes within {largest[2]:.1e} px, scores "
            f"within {largest[3]:.1e}")


def one_fine_tuning_epoch(checkpoint: Path, data: Path, folder: Path, losses: int = 3, unused: tuple[str, ...] = ()
                          ) -> dict[str, float]:
    """Fine-tune an imported checkpoint for one epoch with Ultralytics' trainer; assert ``losses`` finite training
    losses (detection: box, class, DFL), positive but for the ``unused`` ones (``train/sem_loss`` of a Segment head
    without a semantic branch), which are zero; return them."""
    from ultralytics import YOLO

    YOLO(checkpoint).train(data=str(data), epochs=1, imgsz=64, batch=8, workers=0, device="cpu", plots=False,
                           val=False, project=str(folder), name="tuned", exist_ok=True)
    rows = list(csv.DictReader((folder / "tuned" / "results.csv").open()))
    found = {k.strip(): float(v) for k, v in rows[0].items() if k.strip().startswith("train/")}
    assert len(rows) == 1 and len(found) == losses and all(math.isfinite(v) and (v == 0) == (k in unused)
                                                           for k, v in found.items()), found
    return found


def yolov6_deploy(model: nn.Module) -> nn.Module:
    """Return a copy of a YOLOv6 network in the deploy form YOLOv6 exports: every block's ``switch_to_deploy`` (Rep
    blocks re-parameterized), then YOLOv6's ``fuse_model`` (BN folded into each convolution)."""
    deployed = copy.deepcopy(model)
    for layer in deployed.modules():
        if hasattr(layer, "switch_to_deploy"):
            layer.switch_to_deploy()
    return yolov6_fuse_model(deployed).eval()


def fusion_tolerance(model: nn.Module, images: list[torch.Tensor]) -> float:
    """Return the bound for a fused (exported) import against YOLOv6's training-form output: ``RTOL``, or twice what
    YOLOv6's own deploy form deviates from it on ``images`` where that is more.

    Re-parameterizing sums the branches in another order; in a deep network with random weights the rounding grows
    past 1e-4 for YOLOv6's own conversion too (YOLOv6-N6: 1.4e-4 on bus.jpg), so the exported model is held to what
    YOLOv6's own deploy form achieves.
    """
    deployed = yolov6_deploy(model)
    own = 0.0
    for image in images:
        fused, trained = ym.inference(deployed, image), ym.inference(model, image)
        own = max(own, relative_difference(fused[..., :4], trained[..., :4]),
                  relative_difference(fused[..., 5:], trained[..., 5:]))
    return max(RTOL, 2 * own)


def save(model: nn.Module, path: Path, naming: str = "0.3") -> Path:
    """Save a YOLOv6 network as its ``strip_optimizer`` does (``yolov6_models.save``)."""
    return ym.save(model, path, naming)
