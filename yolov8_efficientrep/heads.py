"""YOLOv6's Efficient Decoupled Head as an Ultralytics detection head: the ``EffiDeHead`` row.

``EffiDeHead`` subclasses Ultralytics' ``Detect``: its box and class branches are ``cv2`` and ``cv3`` like Detect's, so
Detect's own forward, anchor decoding, export settings and post-processing run unchanged in every supported release,
and Ultralytics' detection loss (which reads ``reg_max``, ``nc`` and ``stride``), its NMS, validator, predictor,
exporter and checkpoint transfer treat it as a Detect head. Only the per-level stem in front of both branches, the
branch layout and the initialization are YOLOv6's.

Checkpoints pickle ``yolov8_efficientrep.heads.EffiDeHead``: keep the name and the module path stable.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from ultralytics.nn.modules import DFL, Conv, Detect

from .limits import (MAX_REG_MAX, RestrictedLoadOnly, check_channels, check_classes, check_parameters, check_stored,
                     check_stride)
from .lite_blocks import DPBlock
from .messages import call, quoted

PRIOR = 0.01  # YOLOv6's initial class probability (Detect.prior_prob)


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
