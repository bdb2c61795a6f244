"""Move a YOLOv6 network's backbone, neck and (optionally) head tensors into the matching Ultralytics model.

``remap(source, target, form)`` is pure: it reads YOLOv6's module tree (inert records from ``reader.py``) and the built
Ultralytics model and returns the target's new state dict, in the style of timm's ``checkpoint_filter_fn``. The form's
table pairs YOLOv6's modules with the config's rows; below each pair, modules are matched by what they are, layer by
layer, YOLOv6 name to plugin name:

    RepVGGBlock       rbr_dense.{conv,bn} -> conv1.{conv,bn}, rbr_1x1 -> conv2, rbr_identity -> bn
    QARepVGGBlock(V2) rbr_dense -> conv1, rbr_1x1 (bare conv) -> conv2, bn -> bn (V2: rbr_avg <-> avg, no tensors)
    conv units        SimConv / Conv / Conv_C3 / ConvWrapper.block / 0.4.x ConvBN*.block (ConvModule): conv, bn
    RepBlock          conv1, block.0, block.1, ... -> m.0, m.1, m.2, ...
    BottleRep         conv1, conv2, alpha -> cv1, cv2, alpha
    BepC3             cv1, cv2, cv3, m -> cv1, cv2, cv3, m
    MBLABlock         cv1, cv2 (ConvModule), m.i.j -> cv1, cv2, m.i.j; BottleRep3 conv1-3, alpha -> cv1-3, alpha
    SimSPPF / SPPF    cv1, cv2 (0.4.x: sppf.cv1, sppf.cv2) -> cv1, cv2
    (Sim)CSPSPPF      cv1..cv7 (0.4.x: cspsppf.cv1..) -> cv1..cv7
    Transpose         upsample_transpose -> the nn.ConvTranspose2d row itself
    YOLOv6-Lite       ConvBNHS / ConvBN (block: ConvModule) -> Conv; Lite_EffiBlockS1 / S2, CSPBlock, DarknetBlock ->
                      the plugin's blocks of the same child names; DPBlock conv_dw_1 + bn_1, conv_pw_1 + bn_2 ->
                      conv_dw_1, conv_pw_1 (Conv, their conv biases folded into the BN); SEBlock conv1, conv2 (with
                      bias) -> conv1, conv2; nn.Upsample rows checked (nearest, x2); a run of Lite_EffiBlockS1 blocks
                      -> the modules of one row (the form's ``"row.i"``); the head's DPBlock branches -> the first two
                      Convs of each LiteEffiDeHead branch
    Detect (head)     per level: stems -> stems, cls_convs -> cv3.i.0, reg_convs -> cv2.i.0, and the predictions
                      inference reads: cls_preds (cls_preds_af) -> cv3.i.1, reg_preds (reg_preds_lrtb, reg_preds_af)
                      -> cv2.i.1; with DFL, YOLOv6's fixed read-out weights (proj, proj_conv) must equal EffiDeHead's
                      DFL convolution; the predictions inference never reads are dropped (HeadLayout.dropped);
                      YOLOv6-Seg also seg_convs -> cv4.i.0, seg_preds -> cv4.i.1, seg_proto.0.{cv1,cv2,cv3} ->
                      proto.{cv1,cv2,cv3} (its upsampling checked: nearest, x2)

Every pair is checked: class, convolution shape, stride, padding, groups, BN ``eps``, activation, identity and
shortcut presence; any mismatch is an error naming both sides. YOLOv6 0.2.x/0.3.x ``ConvWrapper`` layers (YOLOv6-L)
and YOLOv6-Lite's DPBlocks carry a conv bias before their BN; a bias before BN shifts the BN's input by a constant
that the BN subtracts again, so it is folded exactly into the BN's running mean (the target's convolutions have no
bias).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from ultralytics.nn.modules import Conv

from ..blocks import BottleRep, QARepVGGBlock, QARepVGGBlockV2, RepBlock, RepVGGBlock
from ..csp_blocks import CSPSPPF, BepC3, BottleRep3, MBLABlock, SimSPPF
from ..heads import EffiDeHead, EffiDeSegHead, LiteEffiDeHead
from ..lite_blocks import SEBlock, DPBlock, DarknetBlock, LiteCSPBlock, LiteEffiBlockS1, LiteEffiBlockS2
from .architecture import HeadLayout
from .forms import Form
from ..untrusted.records import Record
from .reader import YOLOv6ImportError

WRAPPERS = {"ConvWrapper", "SimConvWrapper", "ConvBNReLU", "ConvBNSiLU", "ConvBN", "ConvBNHS"}  # layer in `.block`
CONV_UNITS = {"SimConv", "Conv", "Conv_C3", "ConvModule", *WRAPPERS}  # Conv+BN(+activation) layers of every release
BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass
class Transfer:
    """The target's new tensors, and the YOLOv6 tensors they were made from or left out.

    Attributes:
        state (dict[str, torch.Tensor]): Target state-dict key -> float32 tensor (``num_batches_tracked`` stays int).
        used (set[str]): YOLOv6 state-dict keys consumed (or, for the DFL read-out, checked equal).
        dropped (set[str]): YOLOv6 head keys left out because inference never reads them.
    """

    state: dict[str, torch.Tensor] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    dropped: set[str] = field(default_factory=set)


class _Pairing:
    """One remapping run: walks paired modules and fills a ``Transfer``."""

    def __init__(self, target: nn.Module):
        self.target_state = target.state_dict()
        self.transfer = Transfer()

    def fail(self, src: str, dst: str, problem: str) -> YOLOv6ImportError:
        """Return the error for a YOLOv6 module that does not fit its target layer."""
        return YOLOv6ImportError(f"YOLOv6 {src} does not fit {dst}: {problem}")

    def put(self, dst: str, value: torch.Tensor, *src: str) -> None:
        """Write one target tensor from YOLOv6 tensors ``src``, checking its shape and that nothing is written twice."""
        expected = self.target_state.get(dst)
        if expected is None or dst in self.transfer.state:
            raise self.fail(" + ".join(src), dst, "no such target tensor" if expected is None else "written twice")
        if tuple(value.shape) != tuple(expected.shape):
            raise self.fail(" + ".join(src), dst, f"shape {tuple(value.shape)} vs {tuple(expected.shape)}")
        self.transfer.state[dst] = value.detach().to(torch.float32 if value.is_floating_point() else value.dtype,
                                                     copy=True)
        self.transfer.used.update(src)

    # --- leaves ---------------------------------------------------------------------------------------------------

    def conv(self, src: Record, dst: nn.Module, s: str, d: str, bias_into: str | None = None) -> None:
        """Pair two convolutions (``Conv2d``, ``ConvTranspose2d``); a bias the target lacks is for ``bias_into``."""
        settings = ("kernel_size", "stride", "padding", "dilation", "groups")
        if not src.is_instance_of(type(dst)) or any(getattr(src, k, None) != getattr(dst, k) for k in settings):
            raise self.fail(s, d, f"{src} vs {dst}")
        self.put(f"{d}.weight", src.weight, f"{s}.weight")
        if dst.bias is not None and src.bias is not None:
            self.put(f"{d}.bias", src.bias, f"{s}.bias")
        elif dst.bias is not None or (src.bias is not None and bias_into is None):
            raise self.fail(s, d, "a bias on one side only")

    def bn(self, src: Record, dst: nn.Module, s: str, d: str, bias: tuple[torch.Tensor, str] | None = None) -> None:
        """Pair two BatchNorms; ``bias`` is a preceding conv bias to fold into the running mean."""
        if not (src.is_instance_of(nn.BatchNorm2d) and isinstance(dst, nn.BatchNorm2d)) or src.eps != dst.eps:
            raise self.fail(s, d, f"{src} vs {dst}")
        for name in BN_TENSORS:
            if name == "running_mean" and bias is not None:  # BN(conv(x) + b) == BN'(conv(x)), mean' = mean - b
                self.put(f"{d}.running_mean", src.running_mean.float() - bias[0].float(), f"{s}.running_mean", bias[1])
            else:
                self.put(f"{d}.{name}", getattr(src, name), f"{s}.{name}")

    def act(self, src: Record | None, dst: nn.Module, s: str, d: str) -> None:
        """Check that two activations are the same function (an absent one is the identity)."""
        if not (src.is_instance_of(type(dst)) if src is not None else isinstance(dst, nn.Identity)):
            raise self.fail(s, d, f"activation {src} vs {dst}")

    # --- layers ---------------------------------------------------------------------------------------------------

    def conv_unit(self, src: Record, dst: nn.Module, s: str, d: str) -> None:
        """Pair a YOLOv6 Conv+BN(+activation) layer with an Ultralytics ``Conv``."""
        if src.class_name in WRAPPERS:
            src, s = src.block, f"{s}.block"
        if not isinstance(dst, Conv) or not hasattr(dst, "bn"):
            raise self.fail(s, d, f"a Conv+BN layer vs {type(dst).__name__}")
        self.conv(src.conv, dst.conv, f"{s}.conv", f"{d}.conv", bias_into=f"{d}.bn")
        bias = (src.conv.bias, f"{s}.conv.bias") if src.conv.bias is not None else None
        self.bn(src.bn, dst.bn, f"{s}.bn", f"{d}.bn", bias)
        self.act(getattr(src, "act", None), dst.act, s, d)

    def repvgg(self, src: Record, dst: nn.Module, s: str, d: str) -> None:
        """Pair YOLOv6's RepVGGBlock with the plugin's."""
        if type(dst) is not RepVGGBlock or (src.rbr_identity is None) != (dst.bn is None):
            raise self.fail(s, d, f"RepVGGBlock (identity: {src.rbr_identity is not None}) vs {dst}")
        for src_branch, dst_branch in (("rbr_dense", "conv1"), ("rbr_1x1", "conv2")):
            branch = getattr(src, src_branch)
            self.conv(branch.conv, getattr(dst, dst_branch).conv, f"{s}.{src_branch}.conv", f"{d}.{dst_branch}.conv")
            self.bn(branch.bn, getattr(dst, dst_branch).bn, f"{s}.{src_branch}.bn", f"{d}.{dst_branch}.bn")
        if src.rbr_identity is not None:
            self.bn(src.rbr_identity, dst.bn, f"{s}.rbr_identity", f"{d}.bn")
        self.act(src.nonlinearity, dst.act, s, d)

    def qarepvgg(self, src: Record, dst: nn.Module, s: str, d: str) -> None:
        """Pair YOLOv6's QARepVGGBlock or QARepVGGBlockV2 with the plugin's block of the same name."""
        expected = QARepVGGBlockV2 if src.class_name == "QARepVGGBlockV2" else QARepVGGBlock
        identity = src.rbr_identity is not None
        average = getattr(src, "rbr_avg", None)
        if type(dst) is not expected or identity != dst.has_identity or (average is not None) != (
                getattr(dst, "avg", None) is not None):
            raise self.fail(s, d, f"{src.class_name} (identity: {identity}) vs {dst}")
        if average is not None and (average.kernel_size, average.stride, average.padding, average.count_include_pad) \
                != (dst.avg.kernel_size, dst.avg.stride, dst.avg.padding, dst.avg.count_include_pad):
            raise self.fail(f"{s}.rbr_avg", f"{d}.avg", f"{average} vs {dst.avg}")
        self.conv(src.rbr_dense.conv, dst.conv1.conv, f"{s}.rbr_dense.conv", f"{d}.conv1.conv")
        self.bn(src.rbr_dense.bn, dst.conv1.bn, f"{s}.rbr_dense.bn", f"{d}.conv1.bn")
        self.conv(src.rbr_1x1, dst.conv2, f"{s}.rbr_1x1", f"{d}.conv2")
        self.bn(src.bn, dst.bn, f"{s}.bn", f"{d}.bn")
        self.act(src.nonlinearity, dst.act, s, d)

    def rep_block(self, src: Record, dst: nn.Module, s: str, d: str) -> None:
        """Pair YOLOv6's RepBlock (``conv1`` then ``block``) with the plugin's (``m``)."""
        units = [(src.conv1, f"{s}.conv1")]
        units += [(unit, f"{s}.block.{i}") for i, unit in enumerate(src.block if src.block is not None else [])]
        if type(dst) is not RepBlock or len(units) != len(dst.m):
            raise self.fail(s, d, f"{len(units)} units vs {dst if type(dst) is not RepBlock else len(dst.m)}")
        for i, (unit, name) in enumerate(units):
            self.layer(unit, dst.m[i], name, f"{d}.m.{i}")

    def bottle_rep(self, src: Record, dst: nn.Module, s: str, d: str) -> None:
        """Pair YOLOv6's BottleRep / BottleRep3 (``conv1``, ``conv2`` [, ``conv3``], ``alpha``) with the plugin's
        (``cv1``, ``cv2`` [, ``cv3``], ``alpha``)."""
        weighted = src.shortcut and isinstance(src.alpha, torch.Tensor)  # YOLOv6 never reads alpha without shortcut
        expected = BottleRep3 if src.class_name == "BottleRep3" else BottleRep
        if type(dst) is not expected or src.shortcut != dst.add or weighted != isinstance(dst.alpha, torch.Tensor):
            raise self.fail(s, d, f"{src.class_name} (shortcut {src.shortcut}, learned alpha {weighted}) vs {dst}")
        for i in range(1, 4 if expected is BottleRep3 else 3):
            self.layer(getattr(src, f"conv{i}"), getattr(dst, f"cv{i}"), f"{s}.conv{i}", f"{d}.cv{i}")
        if weighted:
            self.put(f"{d}.alpha", src.alpha, f"{s}.alpha")

    def bep_c3(self, src: Record, dst: nn.Module, s: str, d: str) -> None:
        """Pair YOLOv6's BepC3 with the plugin's."""
        if type(dst) is not BepC3 or getattr(src, "concat", True) is not True:
            raise self.fail(s, d, f"BepC3 vs {type(dst).__name__}")
        for name in ("cv1", "cv2", "cv3"):
            self.conv_unit(getattr(src, name), getattr(dst, name), f"{s}.{name}", f"{d}.{name}")
        self.rep_block(src.m, dst.m, f"{s}.m", f"{d}.m")

    def mbla_block(self, src: Record, dst: nn.Module, s: str, d: str) -> None:
        """Pair YOLOv6's MBLABlock with the plugin's: the two 1x1 convolutions, and every branch's BottleRep3 chain."""
        chains = [len(chain) for chain in src.m]
        if type(dst) is not MBLABlock or chains != [len(chain) for chain in dst.m]:
            raise self.fail(s, d, f"MBLABlock with branches of {chains} BottleRep3 units vs {dst}")
        for name in ("cv1", "cv2"):
            self.conv_unit(getattr(src, name), getattr(dst, name), f"{s}.{name}", f"{d}.{name}")
        for i, chain in enumerate(src.m):
            for j, unit in enumerate(chain):
                self.layer(unit, dst.m[i][j], f"{s}.m.{i}.{j}", f"{d}.m.{i}.{j}")

    def sppf(self, src: Record, dst: nn.Module, s: str, d: str) -> None:
        """Pair YOLOv6's SPPF variants with the plugin's (0.4.x holds the layers in ``sppf`` / ``cspsppf``)."""
        csp = src.class_name.endswith("CSPSPPF")
        inner = "cspsppf" if csp else "sppf"
        if hasattr(src, inner):
            src, s = getattr(src, inner), f"{s}.{inner}"
        if not isinstance(dst, CSPSPPF if csp else SimSPPF) or src.m.kernel_size != dst.m.kernel_size:
            raise self.fail(s, d, f"{src.class_name} vs {type(dst).__name__}")
        for name in [f"cv{i}" for i in range(1, 8 if csp else 3)]:
            self.conv_unit(getattr(src, name), getattr(dst, name), f"{s}.{name}", f"{d}.{name}")

    def head(self, src: Record, dst: nn.Module, layout: HeadLayout, s: str, d: str) -> None:
        """Pair YOLOv6's head with the plugin's (``EffiDeHead``, ``LiteEffiDeHead``, ``EffiDeSegHead``): what inference
        reads, level by level."""
        reg_max = layout.inference_reg_max(s)
        head = {"lite": LiteEffiDeHead, "seg": EffiDeSegHead}.get(layout.kind, EffiDeHead)
        shape = (layout.levels, layout.nc, reg_max + 1)
        if type(dst) is not head or (dst.nl, dst.nc, dst.reg_max) != shape:
            found = f"{dst.nl} levels, {dst.nc} classes, reg_max {dst.reg_max - 1}" if type(dst) is head else ""
            raise self.fail(s, d, f"{head.__name__}: {layout.levels} levels, {layout.nc} classes, reg_max {reg_max} vs "
                                  f"{type(dst).__name__} {found}")
        cls, box = layout.inference
        for i in range(dst.nl):  # Conv+BN+SiLU layers (EffiDeHead), or DPBlocks (YOLOv6-Lite: two Convs a branch)
            self.layer(src.stems[i], dst.stems[i], f"{s}.stems.{i}", f"{d}.stems.{i}")
            branches = [("cls_convs", cls, dst.cv3[i], f"{d}.cv3.{i}"), ("reg_convs", box, dst.cv2[i], f"{d}.cv2.{i}")]
            if layout.kind == "seg":
                branches.append(("seg_convs", "seg_preds", dst.cv4[i], f"{d}.cv4.{i}"))
            for convs, preds, branch, index in branches:
                last = len(branch) - 1
                if layout.kind == "lite":
                    self.dp_convs(getattr(src, convs)[i], (branch[0], branch[1]), f"{s}.{convs}.{i}",
                                  (f"{index}.0", f"{index}.1"))
                else:
                    self.layer(getattr(src, convs)[i], branch[0], f"{s}.{convs}.{i}", f"{index}.0")
                self.conv(getattr(src, preds)[i], branch[last], f"{s}.{preds}.{i}", f"{index}.{last}")
        if layout.kind == "seg":
            proto = src.seg_proto[0]
            for name in ("cv1", "cv2", "cv3"):
                self.conv_unit(getattr(proto, name), getattr(dst.proto, name), f"{s}.seg_proto.0.{name}",
                               f"{d}.proto.{name}")
            self.upsample(proto.upsample, dst.proto.upsample, f"{s}.seg_proto.0.upsample", f"{d}.proto.upsample")
        keys = src.state_dict().keys()
        readout = [f"{s}.{key}" for key in keys if key.startswith("proj")]  # proj, proj_conv.weight: fixed 0..reg_max
        if reg_max:  # YOLOv6 reads its bins out with fixed weights 0..reg_max, as EffiDeHead's DFL does
            expected = dst.dfl.conv.weight.reshape(-1)
            for key in readout:
                weight = src.get_parameter(key[len(s) + 1:]).float().reshape(-1)
                if not torch.equal(weight, expected):
                    raise self.fail(key, f"{d}.dfl.conv", f"read-out weights {weight.tolist()} vs {expected.tolist()}")
            self.transfer.used.update(readout)
        unread = tuple(f"{name}." for name in layout.dropped) + (() if reg_max else ("proj",))
        self.transfer.dropped.update(f"{s}.{key}" for key in keys if key.startswith(unread))

    # --- YOLOv6-Lite ----------------------------------------------------------------------------------------------

    def children(self, src: Record, dst: nn.Module, expected: type, names: tuple[str, ...], s: str, d: str) -> None:
        """Pair a YOLOv6-Lite block with the plugin's block of the same child names, child by child."""
        if type(dst) is not expected:
            raise self.fail(s, d, f"{src.class_name} vs {type(dst).__name__}")
        for name in names:
            self.layer(getattr(src, name), getattr(dst, name), f"{s}.{name}", f"{d}.{name}")

    def dp_block(self, src: Record, dst: nn.Module, s: str, d: str) -> None:
        """Pair YOLOv6's DPBlock (convs with bias, separate BNs and Hardswish) with the plugin's (two Convs)."""
        if type(dst) is not DPBlock:
            raise self.fail(s, d, f"DPBlock vs {type(dst).__name__}")
        self.dp_convs(src, (dst.conv_dw_1, dst.conv_pw_1), s, (f"{d}.conv_dw_1", f"{d}.conv_pw_1"))

    def dp_convs(self, src: Record, dst: tuple[nn.Module, nn.Module], s: str, d: tuple[str, str]) -> None:
        """Pair a YOLOv6 DPBlock's two convolutions, BNs and activations with two Ultralytics ``Conv`` layers (a
        ``DPBlock``'s, or the first two of a ``LiteEffiDeHead`` branch)."""
        for (conv, bn, act), layer, target in zip((("conv_dw_1", "bn_1", "act_1"), ("conv_pw_1", "bn_2", "act_2")),
                                                  dst, d):
            if not isinstance(layer, Conv) or not hasattr(layer, "bn"):
                raise self.fail(f"{s}.{conv}", target, f"a Conv+BN layer vs {type(layer).__name__}")
            source = getattr(src, conv)
            self.conv(source, layer.conv, f"{s}.{conv}", f"{target}.conv", bias_into=f"{target}.bn")
            bias = (source.bias, f"{s}.{conv}.bias") if source.bias is not None else None
            self.bn(getattr(src, bn), layer.bn, f"{s}.{bn}", f"{target}.bn", bias)
            self.act(getattr(src, act), layer.act, f"{s}.{act}", f"{target}.act")

    def se_block(self, src: Record, dst: nn.Module, s: str, d: str) -> None:
        """Pair YOLOv6-Lite's SEBlock with the plugin's: two 1x1 convolutions with bias, ReLU and a hard sigmoid."""
        if type(dst) is not SEBlock:
            raise self.fail(s, d, f"SEBlock vs {type(dst).__name__}")
        for name in ("conv1", "conv2"):
            self.conv(getattr(src, name), getattr(dst, name), f"{s}.{name}", f"{d}.{name}")
        for name in ("avg_pool", "relu", "hardsigmoid"):
            if not getattr(src, name).is_instance_of(type(getattr(dst, name))):
                raise self.fail(f"{s}.{name}", f"{d}.{name}", f"{getattr(src, name)} vs {getattr(dst, name)}")

    def upsample(self, src: Record, dst: nn.Module, s: str, d: str) -> None:
        """Check that two nearest-neighbour upsamplings are the same (no tensors)."""
        settings = ("scale_factor", "mode", "size")
        if not (isinstance(dst, nn.Upsample) and all(getattr(src, k, None) == getattr(dst, k) for k in settings)):
            raise self.fail(s, d, f"{src} vs {dst}")

    def layer(self, src: Record, dst: nn.Module, s: str, d: str) -> None:
        """Pair any YOLOv6 layer with its target by the layer's YOLOv6 class."""
        name = src.class_name
        lite = {"Lite_EffiBlockS1": (LiteEffiBlockS1, ("conv_pw_1", "conv_dw_1", "se", "conv_1")),
                "Lite_EffiBlockS2": (LiteEffiBlockS2, ("conv_dw_1", "conv_1", "conv_pw_2", "conv_dw_2", "se",
                                                       "conv_2", "conv_dw_3", "conv_pw_3")),
                "CSPBlock": (LiteCSPBlock, ("conv_1", "conv_2", "conv_3", "blocks")),
                "DarknetBlock": (DarknetBlock, ("conv_1", "conv_2"))}
        if name in lite:
            self.children(src, dst, *lite[name], s, d)
        elif name == "DPBlock":
            self.dp_block(src, dst, s, d)
        elif name == "SEBlock":
            self.se_block(src, dst, s, d)
        elif src.is_instance_of(nn.Upsample):
            self.upsample(src, dst, s, d)
        elif name == "RepVGGBlock":
            self.repvgg(src, dst, s, d)
        elif name in ("QARepVGGBlock", "QARepVGGBlockV2"):
            self.qarepvgg(src, dst, s, d)
        elif name in CONV_UNITS:
            self.conv_unit(src, dst, s, d)
        elif name == "RepBlock":
            self.rep_block(src, dst, s, d)
        elif name in ("BottleRep", "BottleRep3"):
            self.bottle_rep(src, dst, s, d)
        elif name == "MBLABlock":
            self.mbla_block(src, dst, s, d)
        elif name == "BepC3":
            self.bep_c3(src, dst, s, d)
        elif name in ("SimSPPF", "SPPF", "SimCSPSPPF", "CSPSPPF"):
            self.sppf(src, dst, s, d)
        elif name == "Transpose":
            self.conv(src.upsample_transpose, dst, f"{s}.upsample_transpose", d)
        else:
            raise self.fail(s, d, f"no rule for YOLOv6's {name}")


def remap(source: Record, target: nn.Module, form: Form, head: HeadLayout | None = None) -> Transfer:
    """Return the target's tensors made from YOLOv6's, and check that every one is accounted for.

    Args:
        source (Record): YOLOv6's network as ``reader.read_checkpoint`` returns it (inert records).
        target (nn.Module): The Ultralytics model built from ``form.config``, or from ``form.whole_config`` when the
            head is imported too.
        form (Form): The form the architecture was matched to.
        head (HeadLayout, optional): YOLOv6's head layout, to import the head into the target's ``EffiDeHead``; by
            default only the backbone and neck are moved and the target's head is left as it is.

    Returns:
        (Transfer): New tensors for every target backbone and neck tensor (and head tensor), each from YOLOv6 tensors.

    Raises:
        YOLOv6ImportError: A module does not fit its target, or a tensor on either side would be left out.
    """
    pairing = _Pairing(target)
    modules = dict(source.named_modules())
    for path, index in form.layers.items():  # a row, or "row.i": a module of a row that repeats one
        pairing.layer(modules[path], target.model.get_submodule(str(index)), path, f"model.{index}")
    last = len(target.model) - 1
    if head is not None:
        pairing.head(source.detect, target.model[last], head, "detect", f"model.{last}")
    transfer = pairing.transfer
    parts = ("backbone.", "neck.", "detect.") if head is not None else ("backbone.", "neck.")
    left = sorted(k for k in source.state_dict()
                  if k.startswith(parts) and k not in transfer.used and k not in transfer.dropped)
    skipped = f"model.{last}." if head is None else f"model.{last}.dfl."  # a new head; the fixed DFL read-out
    missing = sorted(k for k in pairing.target_state if not k.startswith(skipped) and k not in transfer.state)
    if left or missing:
        raise YOLOv6ImportError(f"{len(left)} YOLOv6 {'/'.join(p[:-1] for p in parts)} tensors have no place in "
                                f"{form.config if head is None else form.whole_config} ({', '.join(left[:3])}) and "
                                f"{len(missing)} of its tensors no source ({', '.join(missing[:3])})")
    return transfer
