"""Real YOLOv6 networks for the import tests, saved as YOLOv6's ``strip_optimizer`` saves them.

PyPI's ``yolov6detect`` packages YOLOv6's ``yolov6`` package as of YOLOv6 release 0.3.0. Networks are built with its
``build_model`` from config dicts copied from YOLOv6's ``configs/`` (numbers of each release's yolov6{n,t,s,m,l}.py),
and every BatchNorm, BottleRep weight and conv bias gets non-trivial values. How each release's naming is produced:

- 0.3.x: YOLOv6 0.3.0's own code, unchanged (v3.0 configs of tag 0.3.0).
- 0.2.x: the v2.0 configs (tag 0.2.0) built with the same 0.3.0 code. ``git diff 0.2.0 0.3.0 -- yolov6/layers
  yolov6/models`` adds classes and arguments (P2 fusion, CSPSPPF, BiFusion, P6) but changes no module that the v2.0
  networks use, so the tree and its names are 0.2.x's. (The detection head differs; it is not imported.)
- QARepVGGBlock (0.3.1, YOLOv6's published ``_qa`` models): a stand-in reproducing 0.3.1's class as read from
  ``git show 0.3.1:yolov6/layers/common.py``: YOLOv6's RepVGGBlock with a bare 1x1 ``rbr_1x1``, an ``nn.Identity``
  ``rbr_identity`` and a ``bn`` after the branch sum. It is passed to YOLOv6's own stage code as the block.
- 0.4.x: renaming rules read from ``git show 0.4.0:yolov6/layers/common.py``, applied to a network built with the 0.3.0
  code: ``SimConv`` / ``Conv`` / ``Conv_C3`` become ``ConvBNReLU`` / ``ConvBNSiLU`` around a ``ConvModule(conv, bn,
  act)``; ``ConvWrapper`` becomes ``ConvBNSiLU`` without its conv bias; ``SimSPPF`` / ``SPPF`` hold ``sppf =
  SPPFModule(cv1, cv2, m)``, ``SimCSPSPPF`` / ``CSPSPPF`` hold ``cspsppf = CSPSPPFModule(cv1..cv7, m)``; RepVGG branches
  are ``ConvModule(conv, bn)``. ``QARepVGGBlockV2`` is 0.4.x's QARepVGG with ``rbr_avg`` (3x3 average pooling) beside
  the identity. The stand-ins compute with YOLOv6 0.3.0's own ``forward`` where one exists (SPPF modules); the rest
  are one-line ``forward``s written from the 0.4.0 source. Files are pickled under 0.4.x's class paths, with 0.4.x's
  extra checkpoint entries (``scheduler``, numpy ``results``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import nn

from yolov6.layers import common
from yolov6.models import yolo as yolov6_yolo

BACKBONE = {"num_repeats": [1, 6, 12, 18, 6], "out_channels": [64, 128, 256, 512, 1024]}
NECK = {"num_repeats": [12, 12, 12, 12], "out_channels": [256, 128, 128, 256, 256, 512]}
SIZES = {"n": (0.33, 0.25), "t": (0.33, 0.375), "s": (0.33, 0.50), "m": (0.60, 0.75), "l": (1.0, 1.0)}


class Config(dict):
    """YOLOv6's config object as ``build_network`` reads it: attribute access and ``.get``."""

    __getattr__ = dict.__getitem__


def _config(value):
    return Config({k: _config(v) for k, v in value.items()}) if isinstance(value, dict) else value


def yolov6_config(generation: str, design: str, size: str, mode: str = "repvgg", dfl: bool | None = None) -> Config:
    """Return a YOLOv6 config of ``generation`` ("v2" or "v3") for the ``design`` of one of its sizes at ``size``.

    ``design``: "n" (EfficientRep + RepPAN/RepBiFPAN, as N/T/S), "m" (CSPBep e=2/3, as M) or "l" (CSPBep e=1/2 with
    conv_silu layers, as L); ``size`` sets depth and width. ``mode`` is YOLOv6's ``training_mode``. ``dfl`` sets the
    head's ``use_dfl`` (with ``reg_max`` 16, else 0); by default the design's (N: no DFL; M, L: DFL). The configs of
    YOLOv6 3.0 N/S say to set it for distillation, the runs that made the released N/S weights.
    """
    depth, width = SIZES[size]
    v3 = generation == "v3"
    backbone, neck = dict(BACKBONE), dict(NECK)
    if design == "n":
        backbone.update(type="EfficientRep", fuse_P2=v3, cspsppf=v3)
        neck.update(type="RepBiFPANNeck" if v3 else "RepPANNeck")
    else:
        e = 2 / 3 if design == "m" else 1 / 2
        backbone.update(type="CSPBepBackbone", csp_e=e, fuse_P2=v3)
        neck.update(type="CSPRepBiFPANNeck" if v3 else "CSPRepPANNeck", csp_e=e)
        mode = "conv_silu" if design == "l" else mode
    dfl = design != "n" if dfl is None else dfl
    head = dict(type="EffiDeHead", in_channels=[128, 256, 512], num_layers=3, anchors=1, strides=[8, 16, 32],
                use_dfl=dfl, reg_max=16 if dfl else 0,
                anchors_init=[[10, 13, 19, 19, 33, 23], [30, 61, 59, 59, 59, 119], [116, 90, 185, 185, 373, 326]])
    return _config(dict(training_mode=mode, model=dict(depth_multiple=depth, width_multiple=width, backbone=backbone,
                                                         neck=neck, head=head)))


# --- stand-ins for classes the 0.3.0 package lacks -------------------------------------------------------------------


def _named(cls: type, name: str) -> type:
    """Give a stand-in class the YOLOv6 class path it is pickled under."""
    cls.__module__, cls.__qualname__, cls.__name__ = "yolov6.layers.common", name, name
    return cls


class QARepVGGBlock(common.RepVGGBlock):
    """YOLOv6 0.3.1's QARepVGGBlock (arXiv 2212.01593): RepVGGBlock, bare 1x1, identity, BN after the sum."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, dilation=1, groups=1,
                 padding_mode="zeros", deploy=False, use_se=False):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode,
                         deploy, use_se)
        self.bn = nn.BatchNorm2d(out_channels)
        self.rbr_1x1 = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, groups=groups, bias=False)
        self.rbr_identity = nn.Identity() if out_channels == in_channels and stride == 1 else None

    def forward(self, x):
        identity = 0 if self.rbr_identity is None else self.rbr_identity(x)
        return self.nonlinearity(self.bn(self.se(self.rbr_dense(x) + self.rbr_1x1(x) + identity)))


class QARepVGGBlockV2(QARepVGGBlock):
    """YOLOv6 0.4.x's QARepVGGBlockV2: QARepVGGBlock plus ``rbr_avg``, a 3x3 average pooling beside the identity."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, **kwargs)
        self.rbr_avg = nn.AvgPool2d(kernel_size, stride, padding) if self.rbr_identity is not None else None

    def forward(self, x):
        extra = 0 if self.rbr_identity is None else self.rbr_identity(x) + self.rbr_avg(x)
        return self.nonlinearity(self.bn(self.se(self.rbr_dense(x) + self.rbr_1x1(x) + extra)))


class ConvModule(nn.Module):
    """0.4.x's ConvModule: conv, bn and, unless ``activation_type`` is None, act."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, act: nn.Module | None, activation_type: str | None):
        super().__init__()
        self.conv, self.bn, self.activation_type = conv, bn, activation_type
        if act is not None:
            self.act = act

    def forward(self, x):
        y = self.bn(self.conv(x))
        return y if self.activation_type is None else self.act(y)


class _Wrapper(nn.Module):
    """0.4.x's ConvBNReLU / ConvBNSiLU: a ConvModule as ``block``."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x):
        return self.block(x)


class _SPPFModule(nn.Module):
    """0.4.x's SPPFModule / CSPSPPFModule: 0.3.0's SimSPPF / SimCSPSPPF layers and forward."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        for name, child in layer.named_children():
            setattr(self, name, child)


class SPPFModule(_SPPFModule):
    forward = common.SimSPPF.forward


class CSPSPPFModule(_SPPFModule):
    forward = common.SimCSPSPPF.forward


class _Holder(nn.Module):
    """0.4.x's SimSPPF / SPPF (``sppf``) and SimCSPSPPF / CSPSPPF (``cspsppf``): the module layers one level down."""

    def __init__(self, name: str, inner: nn.Module):
        super().__init__()
        self.inner_name = name
        setattr(self, name, inner)

    def forward(self, x):
        return getattr(self, self.inner_name)(x)


STAND_INS = {name: _named(type(name, (base,), {}), name) for name, base in (
    ("ConvModule", ConvModule), ("ConvBNReLU", _Wrapper), ("ConvBNSiLU", _Wrapper), ("SPPFModule", SPPFModule),
    ("CSPSPPFModule", CSPSPPFModule), ("SimSPPF", _Holder), ("SPPF", _Holder), ("SimCSPSPPF", _Holder),
    ("CSPSPPF", _Holder))}
STAND_INS["QARepVGGBlock"] = _named(QARepVGGBlock, "QARepVGGBlock")
STAND_INS["QARepVGGBlockV2"] = _named(QARepVGGBlockV2, "QARepVGGBlockV2")


def _conv_module(layer: nn.Module, act: nn.Module | None) -> nn.Module:
    kind = None if act is None else "relu" if isinstance(act, nn.ReLU) else "silu"
    return STAND_INS["ConvModule"](layer.conv, layer.bn, act, kind)


def _renamed_04(module: nn.Module) -> nn.Module:
    """Return ``module`` (built by 0.3.0 code) with 0.4.x's module tree and class names, children first."""
    for name, child in list(module.named_children()):
        setattr(module, name, _renamed_04(child))
    kind = type(module)
    if kind in (common.SimConv, common.Conv, common.Conv_C3):
        wrapper = "ConvBNReLU" if isinstance(module.act, nn.ReLU) else "ConvBNSiLU"
        return STAND_INS[wrapper](_conv_module(module, module.act))
    if kind in (common.ConvWrapper, common.SimConvWrapper):  # its block is converted already; 0.4.x has no conv bias
        module.block.block.conv.bias = None
        return module.block
    if kind in (common.SimSPPF, common.SPPF):
        return STAND_INS[kind.__name__]("sppf", STAND_INS["SPPFModule"](module))
    if kind in (common.SimCSPSPPF, common.CSPSPPF):
        return STAND_INS[kind.__name__]("cspsppf", STAND_INS["CSPSPPFModule"](module))
    if kind is nn.Sequential and [name for name, _ in module.named_children()] == ["conv", "bn"]:  # RepVGG branch
        return _conv_module(module, None)
    return module


# --- building and saving ---------------------------------------------------------------------------------------------


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-trivial statistics and affine values, every BottleRep weight and conv bias a random value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i, m in enumerate(model.modules()):
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.5, 0.5, generator=generator)
                m.num_batches_tracked.fill_(1000 + i)
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
                m.bias.uniform_(-0.5, 0.5, generator=generator)
            alpha = getattr(m, "alpha", None)
            if isinstance(alpha, nn.Parameter):
                alpha.uniform_(0.5, 1.5, generator=generator)
    return model


PREDICTIONS = ("cls_preds", "reg_preds", "reg_preds_lrtb", "cls_preds_af", "reg_preds_af", "cls_preds_ab",
               "reg_preds_ab")  # the head's 1x1 prediction ModuleLists, whose weights YOLOv6 initializes to zero


def randomize_head(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give the head's predictions trained-looking values, where YOLOv6's initialization leaves zero weights.

    Class logits spread around a low prior, so that a photo gives some confident boxes and many weak ones; plain
    distances stay positive (a few grid cells), DFL bins get random logits.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in PREDICTIONS:
            for conv in getattr(model.detect, name, None) or ():
                classes = name.startswith("cls")
                conv.weight.normal_(0, 0.05 if classes else 0.03, generator=generator)
                if classes:
                    conv.bias.uniform_(-5, -2, generator=generator)
                elif conv.out_channels == 4:
                    conv.bias.uniform_(0.5, 3, generator=generator)
                else:
                    conv.bias.normal_(0, 1, generator=generator)
    return model


def calibrate_bn(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Set every BN's running statistics to those of its own input on ``images``, as training leaves them.

    Random statistics alone leave deep features almost independent of the input (the random means dominate); measured
    ones make the head's scores follow the photo, as a trained model's do. Each BN measures its input in eval mode, in
    the order the forward reaches it, so that every later layer sees the normalized features it will see at inference.
    The BN affine values stay random.
    """

    def measure(bn: nn.BatchNorm2d, args: tuple) -> None:
        bn.running_mean.copy_(args[0].mean((0, 2, 3)))
        bn.running_var.copy_(args[0].var((0, 2, 3)))

    hooks = [m.register_forward_pre_hook(measure) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        model.eval()(images)
    for hook in hooks:
        hook.remove()
    return model.half().float().eval()  # float16 values, as the saved file holds


def build(config: Config, naming: str = "0.3", distill_ns: bool = False, seed: int = 0, fuse_ab: bool = False
          ) -> nn.Module:
    """Build a YOLOv6 network with YOLOv6's ``build_model``, randomize it, and give it ``naming``'s module tree.

    ``distill_ns`` / ``fuse_ab`` pick the head class as YOLOv6's engine does for distillation runs of N/S and for
    ``--fuse_ab`` runs. The returned network holds float16 values (as the saved file will), in float32, in eval mode.
    """
    units = {"qarepvgg": STAND_INS["QARepVGGBlock"], "qarepvggv2": STAND_INS["QARepVGGBlockV2"]}
    get_block = yolov6_yolo.get_block
    with mock.patch.object(yolov6_yolo, "get_block", lambda mode: units.get(mode) or get_block(mode)), \
            torch.random.fork_rng():  # YOLOv6's initialization draws from torch's global generator: seed it
        torch.manual_seed(seed)
        model = yolov6_yolo.build_model(config, 80, "cpu", distill_ns=distill_ns, fuse_ab=fuse_ab)
    model = randomize_head(randomize(model, seed), seed)
    if naming == "0.4":
        model = _renamed_04(model)
    return model.half().float().eval()


@contextlib.contextmanager
def _pickled_names(naming: str):
    """Let pickle find the stand-ins under their YOLOv6 class paths (0.4.x's where names differ) while saving."""
    names = STAND_INS if naming == "0.4" else {k: STAND_INS[k] for k in ("QARepVGGBlock", "QARepVGGBlockV2")}
    with mock.patch.multiple(common, create=True, **names):
        yield


def save(model: nn.Module, path: Path, naming: str = "0.3") -> Path:
    """Save ``model`` as YOLOv6's ``strip_optimizer`` leaves a checkpoint: float16 ``model``, no ``ema``/optimizer.

    The network is converted to float16 for saving and back to float32 after (its values are float16 values already).
    """
    model.half()
    for p in model.parameters():
        p.requires_grad = False
    checkpoint = {"model": model, "ema": None, "updates": None, "optimizer": None, "epoch": 299}
    if naming == "0.4":  # 0.4.x's engine also keeps the scheduler's state and the last evaluation (numpy floats)
        checkpoint.update(scheduler={"base_lrs": [0.01], "last_epoch": 300},
                          results=(np.float64(0.61), np.float64(0.45)))
    with _pickled_names(naming):
        torch.save(checkpoint, path)
    model.float()
    return path


def inference(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Run YOLOv6's own model in eval mode; return its output (batch, anchors, 5 + nc): xywh, objectness 1, scores."""
    with torch.no_grad():
        return model(image)[0]


def features(model: nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    """Run YOLOv6's own backbone and neck; return the backbone outputs, then the neck outputs."""
    with torch.no_grad():
        backbone = model.backbone(image)
        return [*backbone, *model.neck(backbone)]
