"""YOLOv6-Seg for the import tests: the networks of YOLOv6 release 0.4.1 (``yolov6-seg`` branch) as YOLOv6 builds them,
saved as its ``strip_optimizer`` saves them, and YOLOv6's own mask post-processing.

Configs: ``configs/yolov6{n,s,m,l,x}_seg.py`` of tag 0.4.1 (N/S: EfficientRep + RepBiFPANNeck with P2 fusion and
CSPSPPF, repvgg mode, no DFL; M: CSPBep e=2/3, repvgg, DFL; L/X: CSPBep e=1/2, conv_silu, DFL; npr 256, nm 32).

Backbone and neck are YOLOv6's own code: PyPI's ``yolov6detect`` (YOLOv6 0.3.0) builds them with its
``yolo.build_network`` and ``yolov6_models._renamed_04`` gives them 0.4.x's names (``git diff 0.4.0 0.4.1 --
yolov6/layers yolov6/models/efficientrep.py yolov6/models/reppan.py`` changes whitespace only). The network is 0.3.0's
``yolo.Model`` (0.4.1's adds only the class attribute ``export``), with 0.3.0's ``initialize_weights``.

The head is a stand-in: 0.3.0 has no segmentation classes. ``Detect``, ``Proto``, ``Conv`` and
``build_effidehead_layer`` reproduce those of ``git show 0.4.1:yolov6/models/heads/effidehead_fuseab_seg.py`` (same
module trees, attributes and arithmetic; the eval and export forward, not the training forward and its loss helpers
``handleseg_af/ab``), built as ``0.4.1:yolov6/models/yolo.py``'s ``build_network`` does for ``isseg`` (not
``issolo``), with 0.3.0's own ``generate_anchors`` and ``dist2bbox`` (0.4.1 changes only ``meshgrid``'s ``indexing``).
The head's ``ConvBNSiLU`` layers are ``yolov6_models``' 0.4.x stand-ins. 0.4.1's quirks are kept: ``build_network``
passes no ``reg_max`` to ``Detect`` (``proj_conv`` and ``proj`` have 17 bins for N/S too, which do not use them), the
Proto is both ``seg_proto[0]`` and the plain list ``reg_mask``, ``anchors_init`` stays float32 in the float16 file.
The classes are pickled under 0.4.1's paths ``yolov6.models.heads.effidehead_fuseab_seg.{Detect,Proto,Conv}``
(``yolov6_zoo_models._yolov6``).

``yolov6_masks`` reproduces ``0.4.1:yolov6/utils/nms.py``'s ``non_max_suppression_seg`` and
``0.4.1:yolov6/core/inferer.py``'s ``Inferer.handle_proto_test``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from yolov6.assigners.anchor_generator import generate_anchors
from yolov6.layers import common
from yolov6.utils.general import dist2bbox
from yolov6.utils.torch_utils import fuse_conv_and_bn

import yolov6_models as ym
import yolov6_zoo_models as zoo
from yolov6_zoo_models import _yolov6

SEG_SIZES = {"n": (0.33, 0.25), "s": (0.33, 0.5), "m": (0.6, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}
SEG_DESIGNS = {"n": "n", "s": "n", "m": "m", "l": "l", "x": "l"}  # yolov6_models.yolov6_config's designs
SEG_MODULE = "yolov6.models.heads.effidehead_fuseab_seg"


@_yolov6(SEG_MODULE)
class Conv(nn.Module):
    """0.4.1's seg ``Conv`` (YOLOv5's): conv without bias padded to 'same', bn, and ``act``: by default the class's one
    ``default_act`` SiLU, shared by every Conv."""

    default_act = nn.SiLU()

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1, act=True):
        super().__init__()
        padding = (d * (k - 1) + 1) // 2 if p is None else p  # autopad
        self.conv = nn.Conv2d(c1, c2, k, s, padding, groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = self.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def forward_fuse(self, x):
        return self.act(self.conv(x))


@_yolov6(SEG_MODULE)
class Proto(nn.Module):
    """0.4.1's ``Proto``: 3x3 Conv to ``c_``, nearest 2x upsampling, 3x3 Conv, 1x1 Conv to ``c2`` prototypes; its
    input is the neck level ``pos`` (P3 for 0)."""

    def __init__(self, num_layers, channels_list, pos, c_=256, c2=32):
        super().__init__()
        c1 = channels_list[([6, 8, 10] if num_layers == 3 else [8, 9, 10, 11])[pos]]
        self.cv1 = Conv(c1, c_, k=3)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.cv2 = Conv(c_, c_, k=3)
        self.cv3 = Conv(c_, c2)

    def forward(self, x):
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


def build_effidehead_layer(channels_list: list[int], num_anchors: int, num_classes: int, reg_max: int = 16,
                           num_layers: int = 3, num_masks: int = 32) -> nn.Sequential:
    """0.4.1's seg ``build_effidehead_layer``: per level (three, whatever ``num_layers``) stem (1x1), cls, reg and seg
    convs (3x3 ConvBNSiLU), then the 1x1 predictions cls, reg (4 * (reg_max + 1)), seg (masks) and their ``_ab``
    counterparts (times ``num_anchors``), ten layers a level."""
    layers = []
    for j in ([6, 8, 10] if num_layers == 3 else [8, 9, 10, 11])[:3]:
        c = channels_list[j]
        layers += [zoo._conv_bn_silu(c, c, 1), *(zoo._conv_bn_silu(c, c, 3) for _ in range(3))]
        layers += [nn.Conv2d(c, n, 1) for n in (num_classes, 4 * (reg_max + 1), num_masks, num_classes * num_anchors,
                                                4 * num_anchors, num_masks * num_anchors)]
    return nn.Sequential(*layers)


HEAD_LISTS = ("stems", "cls_convs", "reg_convs", "seg_convs", "cls_preds", "reg_preds", "seg_preds", "cls_preds_ab",
              "reg_preds_ab", "seg_preds_ab")  # Detect's ModuleLists in 0.4.1's order: ten head layers a level


@_yolov6(SEG_MODULE)
class Detect(nn.Module):
    """0.4.1's seg ``Detect``: the detection head of ``effidehead_fuseab`` with a seg branch (seg_convs, seg_preds: 32
    coefficients per anchor) and ``seg_proto`` (the Proto on P3, also kept in the plain list ``reg_mask``); the ``_ab``
    layers are registered only with ``fuse_ab``. Eval output: (xywh, 1, scores), [protos], (level, 32 coefficients);
    with ``export``: per level scores, distances and coefficients concatenated, and the protos (which, as in 0.4.1,
    fails with DFL: the distances are then (b, 1, 4, h * w))."""

    export = False

    def __init__(self, num_classes=80, anchors=None, num_layers=3, inplace=True, head_layers=None, reg_mask=None,
                 use_dfl=True, reg_max=16, nm=32, fuse_ab=False):
        super().__init__()
        assert head_layers is not None and reg_mask is not None
        self.nc, self.no, self.nl, self.nm = num_classes, num_classes + 5 + nm, num_layers, nm
        self.na = len(anchors[0]) // 2 if isinstance(anchors, (list, tuple)) else anchors
        self.grid = [torch.zeros(1)] * num_layers
        self.fuse_ab, self.prior_prob, self.inplace = fuse_ab, 1e-2, inplace
        self.stride = torch.tensor([8, 16, 32] if num_layers == 3 else [8, 16, 32, 64])
        self.use_dfl, self.reg_max = use_dfl, reg_max
        self.proj_conv = nn.Conv2d(self.reg_max + 1, 1, 1, bias=False)
        self.grid_cell_offset, self.grid_cell_size = 0.5, 5.0
        self.anchors_init = (torch.tensor(anchors) / self.stride[:, None]).reshape(self.nl, self.na, 2)
        self.reg_mask = reg_mask
        for name in HEAD_LISTS:
            setattr(self, name, nn.ModuleList())
        self.seg_proto = nn.ModuleList([reg_mask[0]])
        for i in range(num_layers):
            for j, name in enumerate(HEAD_LISTS[:10 if fuse_ab else 7]):
                getattr(self, name).append(head_layers[10 * i + j])

    def initialize_biases(self):
        prior = -math.log((1 - self.prior_prob) / self.prior_prob)
        groups = [(self.cls_preds, prior), (self.reg_preds, 1.0)]
        groups += [(self.cls_preds_ab, prior), (self.reg_preds_ab, 1.0)] if self.fuse_ab else []
        with torch.no_grad():
            for convs, bias in groups:
                for conv in convs:
                    conv.bias.fill_(bias)
                    conv.weight.fill_(0.0)
        self.proj = nn.Parameter(torch.linspace(0, self.reg_max, self.reg_max + 1), requires_grad=False)
        self.proj_conv.weight = nn.Parameter(self.proj.view([1, self.reg_max + 1, 1, 1]).clone().detach(),
                                             requires_grad=False)

    def forward(self, x):
        assert not self.training, "the stand-in reproduces YOLOv6-Seg's inference only"
        seg_list = [self.seg_proto[0](x[0])]
        scores, distances, coefficients = [], [], []
        for i in range(self.nl):
            b, _, h, w = x[i].shape
            cells = h * w
            x[i] = self.stems[i](x[i])
            cls_output = torch.sigmoid(self.cls_preds[i](self.cls_convs[i](x[i])))
            reg_output = self.reg_preds[i](self.reg_convs[i](x[i]))
            seg_output = self.seg_preds[i](self.seg_convs[i](x[i]))
            if self.use_dfl:
                reg_output = reg_output.reshape([-1, 4, self.reg_max + 1, cells]).permute(0, 2, 1, 3)
                reg_output = self.proj_conv(F.softmax(reg_output, dim=1))
            if self.export:
                scores.append(cls_output)
                distances.append(reg_output)
                coefficients.append(seg_output)
                continue
            scores.append(cls_output.reshape([b, self.nc, cells]))
            distances.append(reg_output.reshape([b, 4, cells]))
            level = (torch.ones(b, 1, cells) * i).to(x[0].device)  # which proto (there is one)
            coefficients.append(torch.cat([level, seg_output.reshape([b, 32, cells])], 1))
        if self.export:
            return tuple(torch.cat(maps, 1) for maps in zip(scores, distances, coefficients)), seg_list[0]
        scores = torch.cat(scores, -1).permute(0, 2, 1)
        distances = torch.cat(distances, -1).permute(0, 2, 1)
        coefficients = torch.cat(coefficients, -1).permute(0, 2, 1)
        anchor_points, stride_tensor = generate_anchors(x, self.stride, self.grid_cell_size, self.grid_cell_offset,
                                                        device=x[0].device, is_eval=True, mode="af")
        boxes = dist2bbox(distances, anchor_points, box_format="xywh") * stride_tensor
        objectness = torch.ones((b, boxes.shape[1], 1), device=boxes.device, dtype=boxes.dtype)
        return torch.cat([boxes, objectness, scores], -1), seg_list, coefficients


def seg_config(size: str, design: str | None = None) -> ym.Config:
    """Return 0.4.1's ``configs/yolov6{size}_seg.py`` as ``yolov6_models.yolov6_config`` builds 0.3.0 configs; with
    ``design`` (``n``, ``m`` or ``l``), that size's design at the depth and width of ``size``."""
    config = ym.yolov6_config("v3", design or SEG_DESIGNS[size], "l" if size == "x" else size)
    depth, width = SEG_SIZES[size]
    config.model.update(depth_multiple=depth, width_multiple=width)
    config.model.head.update(npr=256, nm=32, isseg=True, issolo=False, anchors=3)
    return config


def _seg_network(build_network):
    """0.4.1's ``build_network`` for ``isseg``: 0.3.0's ``build_network`` for the backbone and neck (its head is
    dropped), then the seg head of the same channels."""

    def build(config, channels, num_classes, num_layers, fuse_ab=False, distill_ns=False):
        backbone, neck, _ = build_network(config, channels, num_classes, num_layers)
        model, head = config.model, config.model.head
        width = model.width_multiple
        channels_list = [ym.yolov6_yolo.make_divisible(c * width, 8)
                         for c in model.backbone.out_channels + model.neck.out_channels]
        npr = ym.yolov6_yolo.make_divisible(head.npr * width, 8)
        head_layers = build_effidehead_layer(channels_list, 3, num_classes, head.reg_max, num_layers, head.nm)
        reg_masks = [Proto(num_layers, channels_list, 0, npr, head.nm)]
        return backbone, neck, Detect(num_classes, head.anchors_init, num_layers, head_layers=head_layers,
                                      use_dfl=head.use_dfl, reg_mask=reg_masks, fuse_ab=fuse_ab)

    return build


def build_seg(size: str, seed: int = 0, fuse_ab: bool = False, design: str | None = None) -> nn.Module:
    """Build YOLOv6-``size``-seg (80 classes) as 0.4.1 does (its ``Model``: seg head biases, ``initialize_weights``),
    randomized like ``yolov6_models.build``, in 0.4.x's module tree and names; float16 values, float32, eval.

    ``design`` builds another size's design (``n``, ``m``, ``l``) at this size's depth and width. ``fuse_ab`` registers
    the ``_ab`` prediction layers on the Detect (the released models have none). The seg
    predictions and the Proto keep PyTorch's default (random) conv weights and get random biases and BN values.
    """
    config = seg_config(size, design)
    with mock.patch.object(ym.yolov6_yolo, "build_network", _seg_network(ym.yolov6_yolo.build_network)), \
            torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ym.yolov6_yolo.Model(config, 3, 80, fuse_ab=fuse_ab)
    model = ym._renamed_04(ym.randomize_head(ym.randomize(model, seed), seed)).half().float().eval()
    assert model.detect.reg_mask[0] is model.detect.seg_proto[0]
    return model


def seg_inference(model: nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run YOLOv6-Seg in eval mode; return its Detect's output: predictions (b, anchors, 5 + nc: xywh, objectness 1,
    scores), prototypes (b, 32, H / 4, W / 4) and mask coefficients (b, anchors, 33: the anchor's level, 0-2, then
    32 coefficients; every level uses the one set of prototypes)."""
    with torch.no_grad():
        pred, seg_list, seg_conf = model(image)[0]
    return pred, seg_list[0], seg_conf


def seg_deploy(model: nn.Module) -> nn.Module:
    """Return a copy of a YOLOv6-Seg network (0.4.x names) in 0.4.1's deploy form, in 0.4.1's order: ``fuse_model``
    first (BN folded into every ``ConvModule``, RepVGG branches included; not into the Proto's ``Conv``), then each
    RepVGGBlock's ``switch_to_deploy``, whose 0.4.1 ``_fuse_bn_tensor`` takes a ConvModule branch's fused conv as is.
    (``yolov6_zoo_models.yolov6_deploy`` is 0.3.0's order and cannot read 0.4.x's ConvModule branches.)"""
    deployed = copy.deepcopy(model)
    for m in deployed.modules():
        if type(m) is ym.STAND_INS["ConvModule"] and hasattr(m, "bn"):
            m.conv, m.bn = fuse_conv_and_bn(m.conv, m.bn), nn.Identity()  # 0.4.1: delattr bn, forward_fuse
    fuse_bn_tensor = common.RepVGGBlock._fuse_bn_tensor

    def fused_branch(block, branch):
        is_module = isinstance(branch, ym.STAND_INS["ConvModule"])
        return (branch.conv.weight, branch.conv.bias) if is_module else fuse_bn_tensor(block, branch)

    with mock.patch.object(common.RepVGGBlock, "_fuse_bn_tensor", fused_branch):
        for m in deployed.modules():
            if isinstance(m, common.RepVGGBlock):
                m.switch_to_deploy()
    return deployed.eval()


def yolov6_masks(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], image_shape: tuple[int, int],
                 conf: float = zoo.CONF, iou: float = zoo.IOU, max_det: int = zoo.MAX_DET
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """YOLOv6 0.4.1's detections and masks for a batch of one image from ``seg_inference``'s outputs: its
    ``non_max_suppression_seg`` (single label, class-offset NMS) and ``handle_proto_test`` (sigmoid of the coefficients
    times the prototypes, bilinear to ``image_shape`` (h, w), cropped to the box, > 0.5).

    Returns:
        Detections (n, 6: x1 y1 x2 y2 score class) in input pixels and boolean masks (n, h, w).
    """
    pred, protos, seg_conf = outputs
    assert pred.shape[0] == 1, "one image"
    x = torch.cat([pred, seg_conf], 2)[0]
    nc = x.shape[1] - 5 - 33
    x = x[(x[:, 4] > conf) & (x[:, 5:5 + nc].max(-1)[0] > conf)]
    x[:, 5:5 + nc] *= x[:, 4:5]
    xy, wh = x[:, :2], x[:, 2:4]
    box = torch.cat([xy - wh / 2, xy + wh / 2], 1)  # xywh2xyxy
    score, label = x[:, 5:5 + nc].max(1, keepdim=True)
    x = torch.cat((box, score, label.float(), x[:, 5 + nc:]), 1)[score.view(-1) > conf]
    if len(x) > 30000:  # max_nms
        x = x[x[:, 4].argsort(descending=True)[:30000]]
    x = x[torchvision.ops.nms(x[:, :4] + x[:, 5:6] * zoo.MAX_WH, x[:, 4], iou)[:max_det]]
    if not len(x):  # handle_proto_test: no masks
        return x[:, :6], torch.zeros((0, *image_shape), dtype=torch.bool)
    h, w = protos.shape[-2:]
    proto = protos[:1]
    seg = (x[:, 7:] @ proto.reshape(proto.shape[0], proto.shape[1], -1)).reshape(1, len(x), h, w).sigmoid()
    masks = F.interpolate(seg, tuple(image_shape), mode="bilinear", align_corners=False)[0]
    x1, y1, x2, y2 = torch.chunk(x[:, :4, None], 4, 1)  # crop_mask
    columns = torch.arange(masks.shape[2], dtype=x1.dtype)[None, None, :]
    rows = torch.arange(masks.shape[1], dtype=x1.dtype)[None, :, None]
    masks = masks * ((columns >= x1) * (columns < x2) * (rows >= y1) * (rows < y2))
    return x[:, :6], masks.gt(0.5)


def _seg_paths():
    """Register the seg head stand-ins under their ``__module__`` now (a test may move one, e.g. to the solo head)."""
    return mock.patch.dict(zoo.STAND_IN_PATHS, {cls: cls.__module__ for cls in (Detect, Proto, Conv)})


def save_seg(model: nn.Module, path: Path) -> Path:
    """Save a YOLOv6-Seg network as 0.4.x's ``strip_optimizer`` does (``yolov6_zoo_models.save_04``), its head under
    0.4.1's class paths."""
    with _seg_paths():
        return zoo.save_04(model, path)
