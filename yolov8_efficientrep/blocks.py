"""EfficientRep building blocks in Ultralytics' layer dialect (``c1, c2, k, s``; ``forward`` / ``forward_fuse``).

Checkpoints pickle these classes by import path (``yolov8_efficientrep.blocks.<Name>``): keep the names and this
module path stable across releases, or old ``.pt`` files stop loading.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.nn.modules import Conv, RepConv

from .activations import Act, is_activation_name, resolve_act
from .limits import (RestrictedLoadOnly, check_channels, check_folded, check_kernel, check_parameters,
                     check_repeats, check_stored, check_torch_layer)
from .messages import call, printable, quoted, warn_once


def _folded_kernel_bias(branch: Conv) -> tuple[torch.Tensor, torch.Tensor]:
    """Return a Conv branch's kernel and bias with its BatchNorm folded in, in float32.

    Works whether or not the branch's BN was already folded by ``BaseModel.fuse()``, so the fusion order of a parent
    and its children never matters.
    """
    conv = branch.conv
    kernel = conv.weight.float()
    if not hasattr(branch, "bn"):  # BN already folded into conv by Ultralytics
        bias = conv.bias.float() if conv.bias is not None else kernel.new_zeros(kernel.shape[0])
        return kernel, bias
    return _fold_bn(kernel, branch.bn)


def _fold_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d, bias: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold inference-mode BatchNorm statistics into a preceding convolution kernel (and its bias, if any)."""
    scale = bn.weight.float() / (bn.running_var.float() + bn.eps).sqrt()
    mean = bn.running_mean.float() if bias is None else bn.running_mean.float() - bias
    return kernel * scale.reshape(-1, 1, 1, 1), bn.bias.float() - mean * scale


def _branch_conv(branch: nn.Module) -> nn.Conv2d:
    """Return a branch's convolution: the branch itself, or an Ultralytics ``Conv``'s ``conv``."""
    return branch if isinstance(branch, nn.Conv2d) else branch.conv


def check_rep_conv(block: RepConv, owner: str) -> None:
    """Refuse a RepConv-layout block whose stored sizes disagree with its own tensors, before fusion allocates.

    Fusion sizes the identity kernel and the fused convolution with ``c1``, ``c2`` and ``g``; a file can store any
    value there beside honest weights. Held here: each to the 3x3 kernel (``c2 = kernel.shape[0]``, ``c1 =
    kernel.shape[1] * groups``), the branches to one stride (1 or 2) and groups, their kernels, padding and BatchNorms
    to the design, and an identity branch to ``c1 == c2`` at stride 1. Works on fused blocks too (``conv`` only).
    """
    fused = not hasattr(block, "conv1")
    branches = {"conv": block.conv} if fused else {"conv1": block.conv1, "conv2": block.conv2}
    for name, branch in branches.items():
        for part, module in branch.named_modules():
            check_torch_layer(f"{owner} {name}{'.' * bool(part)}{part}", module)
    kernel = _branch_conv(branches["conv" if fused else "conv1"])
    weight = kernel.weight
    check_stored(owner, "kernel_size", kernel.kernel_size, (3, 3), "a Rep block's design")
    check_stored(owner, "padding", kernel.padding, (1, 1), "a Rep block's design")
    check_stored(owner, "dilation", kernel.dilation, (1, 1), "a Rep block's design")
    if kernel.stride not in ((1, 1), (2, 2)):
        check_stored(owner, "stride", kernel.stride, (1, 1), "a Rep block's design (stride 1 or 2)")
    check_stored(owner, "g", block.g, kernel.groups, "its convolution's groups")
    check_stored(owner, "c2", block.c2, weight.shape[0], "its 3x3 kernel")
    check_stored(owner, "c1", block.c1, weight.shape[1] * kernel.groups, "its 3x3 kernel and groups")
    if fused:
        return
    for name in ("conv1", "conv2"):
        branch = getattr(block, name)
        bn = getattr(branch, "bn", None)
        if isinstance(bn, nn.BatchNorm2d):
            check_stored(owner, f"{name}.bn.num_features", bn.num_features, block.c2, "its 3x3 kernel")
    pointwise = _branch_conv(block.conv2)
    for name, expected in (("kernel_size", (1, 1)), ("padding", (0, 0)), ("stride", kernel.stride),
                           ("groups", kernel.groups)):
        check_stored(owner, f"conv2 {name}", getattr(pointwise, name), expected, "its 3x3 branch")
    check_stored(owner, "conv2 weight shape", tuple(pointwise.weight.shape), (*weight.shape[:2], 1, 1),
                 "its 3x3 kernel")
    identity = getattr(block, "has_identity", block.bn is not None)
    if identity is not False:
        check_stored(owner, "identity branch at c1, c2, stride", (block.c1, block.c2, kernel.stride),
                     (block.c2, block.c2, (1, 1)), "an identity branch (c1 == c2, stride 1)")


def _check_batch_norm(owner: str, bn: nn.Module, channels: int) -> None:
    """Refuse a block's own BatchNorm (identity branch, or after the sum) unless it is one over ``channels``."""
    check_stored(owner, "bn type", type(bn).__name__, "BatchNorm2d", "a Rep block's design")
    check_torch_layer(f"{owner} bn", bn)
    check_stored(owner, "bn.num_features", bn.num_features, channels, "its 3x3 kernel")


class RepVGGBlock(RestrictedLoadOnly, RepConv):
    """RepVGG block: 3x3 conv+BN, 1x1 conv+BN and an identity BN, summed, then activated.

    Training uses three branches; ``fuse_convs()`` re-parameterizes them into one 3x3 convolution with bias. The
    identity branch exists only when ``c1 == c2`` and ``s == 1``. Subclassing Ultralytics' ``RepConv`` (same
    ``conv1`` / ``conv2`` / ``bn`` layout) makes every Ultralytics ``model.fuse()`` fuse this block too.

    Attributes:
        conv1 (Conv): 3x3 convolution + BN branch.
        conv2 (Conv): 1x1 convolution + BN branch.
        bn (nn.BatchNorm2d | None): Identity branch.
        conv (nn.Conv2d): The fused 3x3 convolution, present only after ``fuse_convs()``.
        act (nn.Module): Activation after the branch sum.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, act: Act = True, g: int = 1, *,
                 p: int | None = None, d: int = 1):
        """Initialize the block; arguments follow Ultralytics' ``Conv`` up to the stride, then the activation.

        The activation comes fourth so that a YAML row can name it (``[c2, 3, 2, relu]``): padding and dilation have one
        valid value each here and are keyword-only.

        Args:
            c1 (int): Input channels.
            c2 (int): Output channels.
            k (int): Kernel size; must be 3.
            s (int): Stride, 1 or 2.
            act (bool | str | nn.Module): True for ``Conv.default_act`` (the model YAML's ``activation:``), a name
                such as ``"relu"`` or ``"silu"`` (see ``activations.ACTIVATIONS``), a module, or False for none.
            g (int): Groups; must divide ``c1`` and ``c2``.
            p (int, optional): Padding; must be 1 (or None for automatic).
            d (int): Dilation; must be 1.
        """
        name = call(type(self).__name__, c1=c1, c2=c2, k=k, s=s)
        if k != 3 or p not in (None, 1) or d != 1:
            raise ValueError(f"{name}: only a 3x3 kernel with padding 1 and dilation 1 can be re-parameterized "
                             f"(got k={printable(k)}, p={printable(p)}, d={printable(d)}); use k=3, or a Conv row for "
                             f"other kernels")
        if s not in (1, 2):
            raise ValueError(f"{name}: stride must be 1 or 2, got {printable(s)}")
        check_channels(name, c1, c2)
        if not (isinstance(g, int) and g > 0) or c1 % g or c2 % g:
            raise ValueError(f"{name}: channels and groups must be positive integers with c1 and c2 divisible by "
                             f"g={printable(g)}")
        check_parameters(name, c1 * c2 // g * 10)  # the 3x3 and 1x1 branches
        activation = resolve_act(act, name)
        super().__init__(c1, c2, k=3, s=s, p=1, g=g, act=False, bn=c1 == c2 and s == 1)
        # RepConv.default_act ignores the YAML's `activation:`; resolve_act reads Conv.default_act, which carries it
        self.act = activation

    def check_stored(self, owner: str | None = None) -> None:
        """Refuse stored sizes that disagree with the block's own tensors (``check_rep_conv``), naming it ``owner``."""
        owner = owner or type(self).__name__
        check_rep_conv(self, owner)
        if getattr(self, "bn", None) is not None and hasattr(self, "conv1"):
            _check_batch_norm(owner, self.bn, self.c1)

    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the 3x3 kernel and bias equal to the sum of the three branches (float32, BN statistics folded)."""
        kernel, bias = _folded_kernel_bias(self.conv1)
        kernel_1x1, bias_1x1 = _folded_kernel_bias(self.conv2)
        kernel, bias = kernel + F.pad(kernel_1x1, [1, 1, 1, 1]), bias + bias_1x1
        if self.bn is not None:
            kernel_id, bias_id = _fold_bn(self._identity_kernel(), self.bn)
            kernel, bias = kernel + kernel_id, bias + bias_id
        return kernel, bias

    def _identity_kernel(self) -> torch.Tensor:
        """Return the 3x3 kernel that maps each input channel onto itself (grouped layout)."""
        per_group = self.c1 // self.g
        kernel = torch.zeros(self.c1, per_group, 3, 3, device=self.conv1.conv.weight.device)
        kernel[torch.arange(self.c1), torch.arange(self.c1) % per_group, 1, 1] = 1.0
        return kernel

    def fuse_convs(self) -> None:
        """Replace the three branches with one 3x3 convolution; a no-op once fused.

        The algebra runs in float32 and the result is cast back to the branch dtype, so fusing a ``half()`` model
        loses no precision beyond the final cast.
        """
        if hasattr(self, "conv"):
            return
        self.check_stored()  # c1, c2 and g size what follows: a file may store any value beside honest weights
        reference = self.conv1.conv
        kernel, bias = self.get_equivalent_kernel_bias()
        check_folded(type(self).__name__, kernel, bias)
        self.conv = nn.Conv2d(self.c1, self.c2, 3, reference.stride, 1, groups=self.g, bias=True).to(
            device=reference.weight.device, dtype=reference.weight.dtype
        ).requires_grad_(False)
        self.conv.weight.data = kernel.to(reference.weight.dtype)
        self.conv.bias.data = bias.to(reference.weight.dtype)
        del self.conv1, self.conv2, self.bn


class QARepVGGBlock(RepVGGBlock):
    """QARepVGG block (arXiv 2212.01593): 3x3 conv+BN, bare 1x1 conv and identity, summed, then BN and activation.

    RepVGG blocks quantize poorly to INT8: the BNs on the 1x1 and identity branches give the fused kernel a wide,
    outlier-prone range. QARepVGG (the paper's final design) keeps BN on the 3x3 branch only and adds one BN after the
    sum. The fused form is still one 3x3 convolution with bias: the inherited ``fuse_convs()`` builds it from this
    class's ``get_equivalent_kernel_bias()``. Arguments and their checks are ``RepVGGBlock``'s.

    Attributes:
        conv1 (Conv): 3x3 convolution + BN branch.
        conv2 (nn.Conv2d): 1x1 convolution branch, without BN or bias.
        has_identity (bool): Whether the input is added to the branch sum (``c1 == c2`` and ``s == 1``).
        bn (nn.BatchNorm2d): BN after the branch sum (not an identity branch, unlike in ``RepConv``).
        conv (nn.Conv2d): The fused 3x3 convolution, present only after ``fuse_convs()``.
        act (nn.Module): Activation after the BN.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, act: Act = True, g: int = 1, *,
                 p: int | None = None, d: int = 1):
        """Initialize the block; arguments and their checks are ``RepVGGBlock``'s."""
        super().__init__(c1, c2, k, s, act, g, p=p, d=d)
        self.has_identity = c1 == c2 and s == 1
        self.conv2 = nn.Conv2d(c1, c2, 1, s, 0, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)

    def check_stored(self, owner: str | None = None) -> None:
        """Refuse stored sizes that disagree with the block's own tensors; ``has_identity`` too, and the BN after the
        sum (``c2`` channels)."""
        owner = owner or type(self).__name__
        check_rep_conv(self, owner)
        if not hasattr(self, "conv1"):
            return
        _check_batch_norm(owner, self.bn, self.c2)
        stride = self.conv1.conv.stride
        check_stored(owner, "has_identity", self.has_identity, self.c1 == self.c2 and stride == (1, 1),
                     "its channels and stride")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sum the 3x3+BN, 1x1 and identity branches, then apply BN and the activation."""
        y = self.conv1(x) + self.conv2(x)
        return self.act(self.bn(y + x if self.has_identity else y))

    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the 3x3 kernel and bias equal to the whole block before its activation (float32)."""
        kernel, bias = _folded_kernel_bias(self.conv1)
        kernel = kernel + F.pad(self.conv2.weight.float(), [1, 1, 1, 1])
        if self.has_identity:
            kernel = kernel + self._identity_kernel()
        return _fold_bn(kernel, self.bn, bias)


class QARepVGGBlockV2(QARepVGGBlock):
    """QARepVGG block as YOLOv6 0.4 trains it (``training_mode='qarepvggv2'``): QARepVGGBlock plus average pooling.

    Where the identity branch exists (``c1 == c2`` and ``s == 1``), the input's 3x3 average (stride 1, zero padding
    counted) joins the branch sum before the BN. That pooling is a fixed 3x3 convolution of 1/9 per channel, so the
    block still fuses into one 3x3 convolution with bias. Arguments and their checks are ``RepVGGBlock``'s.

    Attributes:
        avg (nn.AvgPool2d | None): The average-pooling branch, present with the identity branch.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, act: Act = True, g: int = 1, *,
                 p: int | None = None, d: int = 1):
        """Initialize the block; arguments and their checks are ``RepVGGBlock``'s."""
        super().__init__(c1, c2, k, s, act, g, p=p, d=d)
        self.avg = nn.AvgPool2d(3, 1, 1) if self.has_identity else None

    def check_stored(self, owner: str | None = None) -> None:
        """``QARepVGGBlock``'s checks, and the pooling branch: present with the identity, a 3x3 window at stride 1."""
        owner = owner or type(self).__name__
        super().check_stored(owner)
        if not hasattr(self, "conv1"):
            return
        pool = self.avg
        window = (pool.kernel_size, pool.stride, pool.padding) if isinstance(pool, nn.AvgPool2d) else None
        check_stored(owner, "avg (kernel, stride, padding)", window, (3, 1, 1) if self.has_identity else None,
                     "its identity branch")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sum the 3x3+BN, 1x1, identity and average-pooling branches, then apply BN and the activation."""
        y = self.conv1(x) + self.conv2(x)
        return self.act(self.bn(y + x + self.avg(x) if self.has_identity else y))

    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the 3x3 kernel and bias equal to the whole block before its activation (float32)."""
        kernel, bias = super().get_equivalent_kernel_bias()
        if self.has_identity:  # the pooling kernel passes through the same BN scale as the other branches
            average = self._identity_kernel()[:, :, 1:2, 1:2].expand(-1, -1, 3, 3) / 9
            kernel = kernel + _fold_bn(average, self.bn)[0]
        return kernel, bias

    def fuse_convs(self) -> None:
        """Fuse like ``QARepVGGBlock`` and drop the pooling branch, which the fused convolution now includes."""
        super().fuse_convs()
        self.avg = None


class ConvBNAct(RestrictedLoadOnly, Conv):
    """Plain convolution + BN + activation with the activation chosen per row: YOLOv6's non-Rep unit.

    YOLOv6-L trains plain 3x3 Conv+BN+SiLU layers where the smaller models train RepVGG blocks
    (``training_mode='conv_silu'``), beside ReLU convolutions in its neck. Ultralytics' ``Conv`` takes its activation
    from the model YAML only; this is that ``Conv`` with a 3x3 default kernel and an ``act`` argument, so it can stand
    wherever a Rep unit does (a row of its own, ``BottleRep``, ``BepC3``, ``RepBlock``). Ultralytics' ``fuse()`` folds
    its BN like any ``Conv``'s.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, act: Act = True, g: int = 1):
        """Initialize the unit.

        Args:
            c1 (int): Input channels.
            c2 (int): Output channels.
            k (int): Kernel size (padding keeps the size at stride 1).
            s (int): Stride.
            act (bool | str | nn.Module): Activation, as ``RepVGGBlock``'s ``act``.
            g (int): Groups.
        """
        owner = call("ConvBNAct", c1=c1, c2=c2, k=k, s=s)
        check_channels(owner, c1, c2)
        check_kernel(owner, k)
        check_parameters(owner, c1 * c2 * k * k // (g if isinstance(g, int) and g > 0 else 1))
        super().__init__(c1, c2, k, s, g=g, act=resolve_act(act, owner))


class BottleRep(RestrictedLoadOnly, nn.Module):
    """YOLOv6's BottleRep: two Rep units in sequence, plus the input scaled by a learnable ``alpha`` when shapes match.

    The shortcut spans both units, so it stays an addition after fusion; each unit fuses on its own.

    Attributes:
        cv1 (nn.Module): First unit, ``c1 -> c2``.
        cv2 (nn.Module): Second unit, ``c2 -> c2``.
        add (bool): Whether the shortcut is used (``c1 == c2``).
        alpha (nn.Parameter | float): Shortcut weight, learnable (initialized to 1) when ``weight`` is True and the
            shortcut is used, else 1.
    """

    def __init__(self, c1: int, c2: int, block: str | type[nn.Module] = "RepVGGBlock", weight: bool = True,
                 act: Act = True):
        """Initialize the unit.

        Args:
            c1 (int): Input channels.
            c2 (int): Output channels.
            block (str | type): The two inner units, by class or by name (a key of ``BASIC_UNITS``).
            weight (bool): Learn the shortcut's weight (YOLOv6 does, in every stage); False fixes it at 1.
            act (bool | str | nn.Module): The units' activation, as ``RepVGGBlock``'s ``act``.
        """
        super().__init__()
        owner = call("BottleRep", c1=c1, c2=c2)
        check_channels(owner, c1, c2)
        check_parameters(owner, (c1 + c2) * c2 * 10)  # two 3x3 + 1x1 layers
        unit = _resolve_unit(block, BASIC_UNITS, owner)
        if not isinstance(weight, bool):
            raise TypeError(f"{owner}: weight must be True or False, got {quoted(weight)}")
        activation = resolve_act(act, owner)
        self.cv1 = unit(c1, c2, act=activation)
        self.cv2 = unit(c2, c2, act=activation)
        self.add = c1 == c2
        # no parameter without a shortcut to weight: an unused one would break DDP without find_unused_parameters
        self.alpha = nn.Parameter(torch.ones(1)) if weight and self.add else 1.0

    def check_stored(self, owner: str | None = None) -> None:
        """Refuse a stored shortcut flag or weight that the forward pass would broadcast into a larger tensor."""
        owner = owner or type(self).__name__
        if not isinstance(self.add, bool):
            check_stored(owner, "add", self.add, bool(self.add), "a shortcut flag (True or False)")
        alpha = self.alpha
        shape = tuple(alpha.shape) if isinstance(alpha, torch.Tensor) else () if isinstance(alpha, float) else None
        check_stored(owner, "alpha shape", shape, (1,) if isinstance(alpha, torch.Tensor) else (),
                     "a shortcut weight (one number)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run both units and add the weighted input when shapes match."""
        y = self.cv2(self.cv1(x))
        return y + self.alpha * x if self.add else y


# Units of one 3x3 layer (Rep, or plain as in YOLOv6-L); BottleRep and BepC3 name one for their inner layers.
BASIC_UNITS: dict[str, type[nn.Module]] = {"RepVGGBlock": RepVGGBlock, "QARepVGGBlock": QARepVGGBlock,
                                       "QARepVGGBlockV2": QARepVGGBlockV2, "ConvBNAct": ConvBNAct}
# Units a RepBlock row may name in its `block` argument.
REP_UNITS: dict[str, type[nn.Module]] = {**BASIC_UNITS, "BottleRep": BottleRep}


def _resolve_unit(block: str | type[nn.Module], choices: dict[str, type[nn.Module]], owner: str) -> type[nn.Module]:
    """Return the unit class named by ``block`` (a key of ``choices``), or ``block`` itself if it is a module class."""
    unit = choices.get(block) if isinstance(block, str) else block
    if is_activation_name(block):
        raise ValueError(f"{owner}: {quoted(block)} is an activation, not a block; name the block first, then the "
                         f"activation (e.g. [c2, RepVGGBlock, {printable(block)}])")
    if not (isinstance(unit, type) and issubclass(unit, nn.Module)):
        raise ValueError(f"{owner}: unknown block {quoted(block)}; choose one of {', '.join(choices)}")
    return unit


class RepBlock(RestrictedLoadOnly, nn.Module):
    """EfficientRep stage: Rep units in sequence, the first ``c1 -> c2``, the rest ``c2 -> c2``.

    With ``RepVGGBlock`` or ``QARepVGGBlock`` units there are ``n`` of them. A ``BottleRep`` unit holds two layers,
    so, as in YOLOv6, ``n`` layers make ``max(n // 2, 1)`` BottleRep units.

    Attributes:
        m (nn.Sequential): The units.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, block: str | type[nn.Module] | bool = "RepVGGBlock",
                 act: Act = True, *, basic_block: str | type[nn.Module] = "RepVGGBlock"):
        """Initialize the stage.

        Args:
            c1 (int): Input channels.
            c2 (int): Output channels.
            n (int): Number of layers (depth-scaled by the parser like C2f's repeats).
            block (str | type): The unit, by class or by name (a key of ``REP_UNITS``). A bool here is C2f's
                ``shortcut`` flag from a row copied off a C2f line; it is accepted and has no effect, because every
                ``c2 -> c2`` RepVGG unit already carries an identity branch.
            act (bool | str | nn.Module): Every unit's activation, as ``RepVGGBlock``'s ``act``.
            basic_block (str | type): The inner units of ``BottleRep`` (a key of ``BASIC_UNITS``); ``BepC3`` sets it.
        """
        super().__init__()
        if isinstance(block, bool):
            warn_once(f"{call('RepBlock', c1=c1, c2=c2, n=n, shortcut=block)}: C2f's 'shortcut' argument has no "
                       f"effect on RepBlock (its RepVGG units already carry identity branches); remove it to silence "
                       f"this")
            block = "RepVGGBlock"
        owner = call("RepBlock", c1=c1, c2=c2, n=n)
        check_channels(owner, c1, c2)
        check_repeats(owner, n)
        check_parameters(owner, n * max(c1, c2) * c2 * 10)  # n 3x3 + 1x1 layers
        unit = _resolve_unit(block, REP_UNITS, owner)
        activation = resolve_act(act, owner)
        if unit is BottleRep:
            make = functools.partial(BottleRep, block=basic_block, weight=True, act=activation)
            self.m = nn.Sequential(*(make(c1 if i == 0 else c2, c2) for i in range(max(n // 2, 1))))
        else:
            self.m = nn.Sequential(*(unit(c1 if i == 0 else c2, c2, act=activation) for i in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the units in sequence."""
        return self.m(x)


