"""YOLOv6's Efficient Decoupled Heads as Ultralytics heads: the ``EffiDeHead``, ``LiteEffiDeHead`` and ``EffiDeSegHead``
rows.

``EffiDeHead`` subclasses Ultralytics' ``Detect``: its box and class branches are ``cv2`` and ``cv3`` like Detect's, so
Detect's own forward, anchor decoding, export settings and post-processing run unchanged in every supported release,
and Ultralytics' detection loss (which reads ``reg_max``, ``nc`` and ``stride``), its NMS, validator, predictor,
exporter and checkpoint transfer treat it as a Detect head. Only the per-level stem in front of both branches, the
branch layout and the initialization are YOLOv6's.

``EffiDeSegHead`` (YOLOv6-Seg's head) subclasses ``Segment`` the same way: a third branch predicts the mask
coefficients (``cv4``) and ``proto`` YOLOv6's mask prototypes, so Ultralytics' segmentation loss, NMS, mask
post-processing and export treat it as a Segment head.

Checkpoints pickle ``yolov8_efficientrep.heads.<class>``: keep the names and the module path stable.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from ultralytics.nn.modules import DFL, Conv, Detect, Segment

from .limits import (MAX_REG_MAX, RestrictedLoadOnly, check_channels, check_classes, check_parameters, check_stored,
                     check_stride)
from .lite_blocks import DPBlock
from .messages import call, quoted

PRIOR = 0.01  # YOLOv6's initial class probability (Detect.prior_prob)
MASKS = 32  # YOLOv6-Seg's mask coefficients per anchor (its configs' nm; its inference reshapes by 32)


class EffiDeHead(RestrictedLoadOnly, Detect):
    """YOLOv6's Efficient Decoupled Head with Ultralytics' ``Detect`` contract.

    Per level, as YOLOv6 builds it (``build_effidehead_layer``): a 1x1 Conv+BN+SiLU stem feeding a box branch (3x3
    Conv+BN+SiLU, then a 1x1 convolution predicting the four left/top/right/bottom distances, or YOLOv6's DFL bins for
    each) and a class branch (3x3 Conv+BN+SiLU, then a 1x1 convolution predicting ``nc`` logits). The head's
    convolutions are SiLU whatever the YAML's ``activation:``, as in every YOLOv6 release. Training returns what
    Ultralytics' ``v8DetectionLoss`` consumes; inference returns the decoded ``(batch, 4 + nc, anchors)`` tensor of
    xywh pixel boxes and sigmoid class scores that Ultralytics' NMS expects (the same boxes and scores as YOLOv6's own
    output, without its constant objectness column).

    Attributes:
        stems (nn.ModuleList): Per level, the 1x1 stem (YOLOv6's ``stems``).
        cv2 (nn.ModuleList): Per level, the box branch: ``Sequential(3x3 Conv, 1x1 nn.Conv2d)`` (YOLOv6's
            ``reg_convs`` and ``reg_preds``).
        cv3 (nn.ModuleList): Per level, the class branch: ``Sequential(3x3 Conv, 1x1 nn.Conv2d)`` (``cls_convs``,
            ``cls_preds``).
        reg_max (int): Ultralytics' bins per box side, YOLOv6's ``reg_max + 1``: 1 regresses plain distances (no DFL).
        dfl (nn.Module): ``DFL(reg_max)``, or ``nn.Identity`` without DFL.
        nc (int): Number of classes.
        nl (int): Number of detection levels.
        no (int): Outputs per anchor, ``nc + 4 * reg_max``.
        stride (torch.Tensor): Level strides, set when Ultralytics builds the model.

    Examples:
        >>> head = EffiDeHead(80, 0, (32, 64, 128))  # YOLOv6-N: plain distances
        >>> head.reg_max, head.cv2[0][-1].out_channels
        (1, 4)
        >>> EffiDeHead(80, 16, (96, 192, 384)).cv2[0][-1].out_channels  # YOLOv6-M: 4 x 17 bins
        68
    """

    def __init__(self, nc: int = 80, reg_max: int = 16, *parsed: object, ch: tuple[int, ...] | list[int] = ()):
        """Initialize the head.

        A YAML row writes ``[nc, reg_max]``; Ultralytics' parser appends the input channels of each level, as for
        Detect rows (Ultralytics 8.4 first appends the YAML's top-level ``reg_max`` and ``end2end`` too: this head's
        bins are its own ``reg_max`` argument, and it has no one-to-one branch).

        Args:
            nc (int): Number of classes.
            reg_max (int): YOLOv6's ``reg_max``: 0 regresses the four distances directly (YOLOv6-N/T/S), n > 0 regresses
                each as a distribution over n + 1 bins read out by DFL (YOLOv6-M/L: 16).
            *parsed: What Ultralytics' parser appends; the last item is the input channels of each level.
            ch (tuple[int, ...]): The input channels of each level, when constructing the head directly.
        """
        nn.Module.__init__(self)  # not Detect.__init__: it builds YOLOv8's branches; its signature varies by release
        if parsed:
            *extra, ch = parsed
            if len(extra) == 2 and extra[1]:
                raise ValueError("EffiDeHead has no one-to-one (end2end) branch: remove 'end2end' from the model YAML")
        if isinstance(reg_max, bool) or not isinstance(reg_max, int) or not 0 <= reg_max <= MAX_REG_MAX:
            raise ValueError(f"EffiDeHead reg_max is YOLOv6's: 0 for plain distances, 16 for 17 DFL bins per side (at "
                             f"most {MAX_REG_MAX}); got {quoted(reg_max)}")
        if not ch or not isinstance(ch, (list, tuple)) or len(ch) > 8:
            raise ValueError(f"EffiDeHead needs the input channels of each level, 1 to 8 levels (a YAML row's 'from' "
                             f"lists them); got {quoted(ch)}")
        owner = call("EffiDeHead", nc=nc, reg_max=reg_max, ch=ch)
        check_classes(owner, nc)
        check_channels(owner, *ch)
        check_parameters(owner, sum(c * (c + 18 * c + nc + 4 * (reg_max + 1)) for c in ch))  # stem, two 3x3, preds
        self.nc = nc
        self.nl = len(ch)
        self.reg_max = reg_max + 1
        self.no = nc + 4 * self.reg_max
        self.stride = torch.zeros(self.nl)
        self.stems = nn.ModuleList(Conv(c, c, 1, act=nn.SiLU()) for c in ch)
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(c, c, 3, act=nn.SiLU()), nn.Conv2d(c, 4 * self.reg_max, 1))
                                 for c in ch)
        self.cv3 = nn.ModuleList(nn.Sequential(Conv(c, c, 3, act=nn.SiLU()), nn.Conv2d(c, nc, 1)) for c in ch)
        self.dfl = DFL(self.reg_max) if self.reg_max > 1 else nn.Identity()

    def check_stored(self, owner: str | None = None) -> None:
        """Refuse stored counts that disagree with the head's own layers and tensors.

        ``nl``, ``nc``, ``reg_max`` and ``no`` decide how Detect's forward splits and decodes the branches' outputs, and
        ``stride`` scales the anchors: each is held to the prediction convolutions' weights, as built.
        """
        owner = owner or type(self).__name__
        check_stored(owner, "nl", self.nl, len(self.stems), "its per-level stems")
        for name in ("cv2", "cv3"):
            check_stored(owner, f"{name} levels", len(getattr(self, name)), self.nl, "its per-level stems")
        check_stored(owner, "nc", self.nc, self.cv3[0][-1].weight.shape[0], "its class predictions")
        check_stored(owner, "reg_max", self.reg_max, self.cv2[0][-1].weight.shape[0] // 4, "its box predictions")
        for level, (box, cls) in enumerate(zip(self.cv2, self.cv3)):
            outputs = (box[-1].weight.shape[0], cls[-1].weight.shape[0])
            check_stored(owner, f"level {level} (box, class) outputs", outputs, (4 * self.reg_max, self.nc),
                         "level 0's")
        check_stored(owner, "no", self.no, self.nc + 4 * self.reg_max, "nc + 4 * reg_max")
        check_stored(owner, "stride levels", tuple(self.stride.shape) if isinstance(self.stride, torch.Tensor) else
                     self.stride, (self.nl,), "its levels")
        if self.stride.any():  # zero until Ultralytics builds the model
            check_stride(owner, self.stride)
        bins = self.dfl.conv.weight.shape[1] if isinstance(self.dfl, DFL) else 1
        check_stored(owner, "dfl bins", (bins, getattr(self.dfl, "c1", 1)), (self.reg_max, self.reg_max), "reg_max")

    def fuse(self) -> None:
        """Check the stored counts before Ultralytics fuses the model for inference, then do what Detect does."""
        self.check_stored()
        getattr(super(), "fuse", lambda: None)()

    def forward(self, x: list[torch.Tensor]):
        """Run each level's stem, then Detect's forward on the stem outputs (box and class branches, decoding)."""
        return super().forward([stem(level) for stem, level in zip(self.stems, x)])

    def bias_init(self) -> None:
        """Initialize the predictions as YOLOv6 does: zero weights, class biases for a 1% prior, box biases 1.

        Ultralytics calls this once the strides are known, when it builds the model; fine-tuning for another class
        count therefore starts the new class predictions from this neutral point, while every other tensor transfers.
        """
        for box, cls in zip(self.cv2, self.cv3):
            nn.init.zeros_(cls[-1].weight)
            nn.init.constant_(cls[-1].bias, -math.log((1 - PRIOR) / PRIOR))
            nn.init.zeros_(box[-1].weight)
            nn.init.constant_(box[-1].bias, 1.0)


class LiteEffiDeHead(EffiDeHead):
    """YOLOv6-Lite's head (``effidehead_lite``) under Ultralytics' ``Detect`` contract: ``EffiDeHead`` with DPBlocks.

    Per level a ``DPBlock`` stem (5x5 depthwise and 1x1 convolution, BN, Hardswish) feeds a box branch (a DPBlock's two
    convolutions, then a 1x1 convolution predicting the four distances: YOLOv6-Lite has no DFL) and a class branch
    (the same, predicting ``nc`` logits). The branches hold the DPBlock's convolutions themselves, as Ultralytics'
    ``Conv`` layers, where Detect's branches start with a ``Conv``: Ultralytics reads a branch's first layer when it
    transfers weights into another class count. Forward, decoding, loss and initialization are ``EffiDeHead``'s.

    Attributes:
        stems (nn.ModuleList): Per level, the DPBlock stem (YOLOv6's ``stems``).
        cv2 (nn.ModuleList): Per level, ``Sequential(5x5 depthwise Conv, 1x1 Conv, 1x1 nn.Conv2d)``: YOLOv6's
            ``reg_convs`` (a DPBlock) and ``reg_preds``.
        cv3 (nn.ModuleList): Per level, the same for ``cls_convs`` and ``cls_preds``.
    """

    def __init__(self, nc: int = 80, *parsed: object, ch: tuple[int, ...] | list[int] = ()):
        """Initialize the head: a YAML row writes ``[nc]``; Ultralytics' parser appends what it appends to Detect rows,
        the input channels of each level last (see ``EffiDeHead``)."""
        super().__init__(nc, 0, *parsed, ch=ch)
        channels = [stem.conv.in_channels for stem in self.stems]
        check_parameters(call("LiteEffiDeHead", nc=nc, ch=channels),
                         sum(3 * (25 * c + c * c) + c * (nc + 4) for c in channels))

        def branch(c: int, outputs: int) -> nn.Sequential:
            return nn.Sequential(*DPBlock(c, c, 5).children(), nn.Conv2d(c, outputs, 1))

        self.stems = nn.ModuleList(DPBlock(c, c, 5) for c in channels)
        self.cv2 = nn.ModuleList(branch(c, 4) for c in channels)
        self.cv3 = nn.ModuleList(branch(c, nc) for c in channels)


class SegProto(RestrictedLoadOnly, nn.Module):
    """YOLOv6-Seg's mask prototypes (``Proto``): Ultralytics' ``Proto`` with nearest-neighbour upsampling.

    A 3x3 Conv+BN+SiLU, 2x nearest upsampling (where Ultralytics' Proto learns a transposed convolution), a 3x3 and a
    1x1 Conv+BN+SiLU: ``c2`` prototypes at stride 4 from the stride-8 level.

    Examples:
        >>> SegProto(32, 64, 32)(torch.zeros(1, 32, 10, 10)).shape
        torch.Size([1, 32, 20, 20])
    """

    def __init__(self, c1: int, c_: int = 256, c2: int = MASKS):
        """Initialize the prototypes.

        Args:
            c1 (int): Input channels (the stride-8 level's).
            c_ (int): Hidden channels (YOLOv6's ``npr``, width-scaled).
            c2 (int): Prototypes (YOLOv6's ``nm``).
        """
        super().__init__()
        self.cv1 = Conv(c1, c_, 3, act=nn.SiLU())
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.cv2 = Conv(c_, c_, 3, act=nn.SiLU())
        self.cv3 = Conv(c_, c2, 1, act=nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the prototypes, ``(batch, c2, 2H, 2W)``."""
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


class EffiDeSegHead(EffiDeHead, Segment):
    """YOLOv6-Seg's head (``effidehead_fuseab_seg``) under Ultralytics' ``Segment`` contract.

    ``EffiDeHead``'s stems, box and class branches, plus per level a mask branch from the same stem (3x3
    Conv+BN+SiLU, then a 1x1 convolution predicting 32 mask coefficients: YOLOv6's ``seg_convs`` and ``seg_preds``)
    and ``SegProto`` on the stride-8 level *before* its stem, with YOLOv6's hidden width: twice that level's channels
    (YOLOv6 scales 256 by the model's width, as it scales that level's 128). Segment's forward, mask losses and
    post-processing run unchanged; mask coefficients are raw, as in both YOLOv6 and Ultralytics (masks are the sigmoid
    of coefficients times prototypes).

    Attributes:
        cv4 (nn.ModuleList): Per level, ``Sequential(3x3 Conv, 1x1 nn.Conv2d)``: YOLOv6's ``seg_convs``, ``seg_preds``.
        proto (SegProto): YOLOv6's ``seg_proto[0]``.
        nm (int): Mask coefficients per anchor (32).
        npr (int): The prototypes' hidden channels.

    Examples:
        >>> head = EffiDeSegHead(80, 0, ch=(32, 64, 128))  # YOLOv6-Seg-N
        >>> head.npr, head.cv4[0][-1].out_channels
        (64, 32)
    """

    def __init__(self, nc: int = 80, reg_max: int = 16, *parsed: object, ch: tuple[int, ...] | list[int] = ()):
        """Initialize the head: a YAML row writes ``[nc, reg_max]``, as for ``EffiDeHead`` (see its arguments)."""
        super().__init__(nc, reg_max, *parsed, ch=ch)
        channels = [stem.conv.in_channels for stem in self.stems]
        self.nm, self.npr = MASKS, 2 * channels[0]
        masks = sum(c * (9 * c + MASKS) for c in channels)  # each level's 3x3 conv and coefficient predictions
        check_parameters(call("EffiDeSegHead", nc=nc, reg_max=reg_max, ch=channels),
                         masks + self.npr * (9 * channels[0] + 9 * self.npr + MASKS))
        self.cv4 = nn.ModuleList(nn.Sequential(Conv(c, c, 3, act=nn.SiLU()), nn.Conv2d(c, MASKS, 1)) for c in channels)
        self.proto = SegProto(channels[0], self.npr, MASKS)

    def check_stored(self, owner: str | None = None) -> None:
        """``EffiDeHead``'s checks, and the mask branch's levels and outputs held to ``nm``."""
        owner = owner or type(self).__name__
        super().check_stored(owner)
        check_stored(owner, "cv4 levels", len(self.cv4), self.nl, "its per-level stems")
        for level, branch in enumerate(self.cv4):
            check_stored(owner, f"level {level} mask outputs", branch[-1].weight.shape[0], self.nm, "nm")
        check_stored(owner, "prototypes", self.proto.cv3.conv.weight.shape[0], self.nm, "nm")

    def forward(self, x: list[torch.Tensor]):
        """Run Segment's forward: the prototypes from the stride-8 level as it comes, the branches after the stems.

        Ultralytics 8.4 runs the branches in ``forward_head`` (which applies the stems here); earlier releases' Segment
        forward reads one list for both, so this is its body with the stems in front of the branches.
        """
        if hasattr(Segment, "forward_head"):
            return Segment.forward(self, x)
        proto = self.proto(x[0])
        x = [stem(level) for stem, level in zip(self.stems, x)]
        coefficients = torch.cat([branch(level).view(proto.shape[0], self.nm, -1)
                                  for branch, level in zip(self.cv4, x)], 2)
        x = Detect.forward(self, x)
        if self.training:
            return x, coefficients, proto
        if self.export:
            return torch.cat([x, coefficients], 1), proto
        return torch.cat([x[0], coefficients], 1), (x[1], coefficients, proto)

    def forward_head(self, x: list[torch.Tensor], box_head: nn.Module | None = None,
                     cls_head: nn.Module | None = None, mask_head: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Ultralytics 8.4: Segment's branches on the stems' outputs."""
        return Segment.forward_head(self, [stem(level) for stem, level in zip(self.stems, x)], box_head, cls_head,
                                    mask_head)
