"""YOLOv6's CSP-style stages for larger models (BepC3; MBLABlock of its _mbla models, with BottleRep3), and YOLOv6's
SPPF variants (SimSPPF, CSPSPPF, SimCSPSPPF).

Checkpoints pickle these classes by import path (``yolov8_efficientrep.csp_blocks.<Name>``): keep names and path stable.
Every convolution here is an Ultralytics ``Conv`` or a Rep unit, so Ultralytics' ``model.fuse()`` folds them all.
"""

from __future__ import annotations

import torch
from torch import nn
from ultralytics.nn.modules import Conv

from .activations import Act, resolve_act
from .blocks import BASIC_UNITS, BottleRep, RepBlock
from .limits import (MAX_KERNEL, RestrictedLoadOnly, check_channels, check_kernel, check_parameters, check_repeats,
                     check_stored, stored_attribute_error)
from .messages import call, quoted


def _check_expansion(owner: str, e: float) -> None:
    """Reject hidden-channel ratios outside (0, 1], and bools (a C3 ``shortcut`` flag in the ratio's place)."""
    if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0 < e <= 1:
        raise ValueError(f"{owner}: expansion e must be a number in (0, 1], got {quoted(e)} (a C3-style shortcut flag "
                         f"does not belong here)")


def _checked_stage(name: str, c1: int, c2: int, n: int, e: float, block: str | type[nn.Module], act: Act
                   ) -> tuple[str, nn.Module]:
    """Check a CSP stage's arguments (``BepC3``, ``MBLABlock``) before anything is built; return the owner that names
    it in messages and its resolved activation."""
    owner = call(name, c1=c1, c2=c2, n=n, e=e)
    check_channels(owner, c1, c2)
    check_repeats(owner, n)
    _check_expansion(owner, e)
    if isinstance(block, str) and block not in BASIC_UNITS:
        raise ValueError(f"{owner}: unknown block {quoted(block)}; choose one of {', '.join(BASIC_UNITS)}")
    return owner, resolve_act(act, owner)


def _check_pooling(owner: str, pool: nn.Module) -> None:
    """Refuse a stored pooling window that would not keep the feature map's size (the scales are concatenated)."""
    window = (pool.kernel_size, pool.stride, pool.padding, pool.dilation) if isinstance(pool, nn.MaxPool2d) else pool
    k = window[0] if isinstance(window, tuple) else None
    if not (isinstance(k, int) and k % 2 == 1 and k <= MAX_KERNEL and window == (k, 1, k // 2, 1)):
        raise stored_attribute_error(owner, "m (kernel, stride, padding, dilation)", window,
                                     f"must be a max pooling window that keeps the size: (k, 1, k // 2, 1), k odd, "
                                     f"at most {MAX_KERNEL}")


class BepC3(RestrictedLoadOnly, nn.Module):
    """YOLOv6's CSPStackRep stage: two 1x1 paths to ``c2 * e`` channels, BottleRep units on one, concat, 1x1 to ``c2``.

    Attributes:
        cv1 (Conv): 1x1 convolution into the BottleRep path.
        cv2 (Conv): 1x1 convolution of the bypass path.
        cv3 (Conv): 1x1 convolution after the concatenation.
        m (RepBlock): ``max(n // 2, 1)`` BottleRep units (``n`` Rep layers, as YOLOv6 counts them).
    """

    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5, block: str | type[nn.Module] = "RepVGGBlock",
                 act: Act = True):
        """Initialize the stage.

        Args:
            c1 (int): Input channels.
            c2 (int): Output channels.
            n (int): Rep layers in the BottleRep path (depth-scaled by the parser like C3's repeats).
            e (float): Hidden channels as a fraction of ``c2`` (YOLOv6: 2/3 for M, 1/2 for L).
            block (str | type): Layers inside BottleRep, a key of ``BASIC_UNITS`` (``RepVGGBlock``,
                ``QARepVGGBlock``, ``QARepVGGBlockV2``, or ``ConvBNAct`` for YOLOv6-L's plain layers).
            act (bool | str | nn.Module): Activation of the 1x1 convolutions and the Rep layers, as
                ``RepVGGBlock``'s ``act``.
        """
        super().__init__()
        owner, activation = _checked_stage("BepC3", c1, c2, n, e, block, act)
        c_ = max(int(c2 * e), 1)
        check_parameters(owner, 2 * c1 * c_ + 2 * c_ * c2)  # cv1-cv3; the RepBlock counts its own
        self.cv1 = Conv(c1, c_, 1, 1, act=activation)
        self.cv2 = Conv(c1, c_, 1, 1, act=activation)
        self.cv3 = Conv(2 * c_, c2, 1, 1, act=activation)
        self.m = RepBlock(c_, c_, n, "BottleRep", activation, basic_block=block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the BottleRep path with the bypass path and mix them."""
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SimSPPF(RestrictedLoadOnly, nn.Module):
    """YOLOv6's SimSPPF: SPPF with ReLU activations whatever the model's ``activation:`` (unless ``act`` says otherwise).

    Attributes:
        cv1 (Conv): 1x1 convolution to ``c1 // 2`` channels.
        cv2 (Conv): 1x1 convolution of the four concatenated scales to ``c2``.
        m (nn.MaxPool2d): The max pooling applied three times in sequence.
    """

    def __init__(self, c1: int, c2: int, k: int = 5, act: Act = "relu"):
        """Initialize the layer.

        Args:
            c1 (int): Input channels.
            c2 (int): Output channels.
            k (int): Max-pooling kernel size (5 gives the receptive fields of SPP's 5, 9 and 13).
            act (bool | str | nn.Module): Activation of both convolutions, as ``RepVGGBlock``'s ``act``; ReLU by default.
        """
        super().__init__()
        owner = call("SimSPPF", c1=c1, c2=c2, k=k)
        check_channels(owner, c1, c2)
        check_kernel(owner, k, odd=True)
        check_parameters(owner, c1 * c1 // 2 + 2 * c1 * c2)
        activation = resolve_act(act, owner)
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1, act=activation)
        self.cv2 = Conv(c_ * 4, c2, 1, 1, act=activation)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def check_stored(self, owner: str | None = None) -> None:
        """Refuse a stored pooling window that does not keep the size of the scales it concatenates."""
        _check_pooling(owner or type(self).__name__, self.m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool three times in sequence and mix the four scales."""
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class CSPSPPF(RestrictedLoadOnly, nn.Module):
    """YOLOv6 3.0's CSPSPPF: an SPPF path (with 3x3 convolutions around the pooling) beside a 1x1 bypass, concatenated.

    Its convolutions use the model's ``activation:`` (SiLU unless the YAML says otherwise); ``SimCSPSPPF`` is the ReLU
    form.

    Attributes:
        cv1, cv3, cv4 (Conv): 1x1, 3x3, 1x1 convolutions before the pooling, to ``c2 * e`` channels.
        cv2 (Conv): 1x1 convolution of the bypass path.
        m (nn.MaxPool2d): The max pooling applied three times in sequence.
        cv5, cv6 (Conv): 1x1 and 3x3 convolutions of the four concatenated scales.
        cv7 (Conv): 1x1 convolution of the concatenated paths to ``c2``.
    """

    def __init__(self, c1: int, c2: int, k: int = 5, e: float = 0.5, act: Act = True):
        """Initialize the layer.

        Args:
            c1 (int): Input channels.
            c2 (int): Output channels.
            k (int): Max-pooling kernel size.
            e (float): Hidden channels as a fraction of ``c2``.
            act (bool | str | nn.Module): Activation of every convolution, as ``RepVGGBlock``'s ``act``; True for the
                model's ``activation:``.
        """
        super().__init__()
        owner = call(type(self).__name__, c1=c1, c2=c2, k=k, e=e)
        check_channels(owner, c1, c2)
        check_kernel(owner, k, odd=True)
        _check_expansion(owner, e)
        act = resolve_act(act, owner)
        c_ = max(int(c2 * e), 1)
        check_parameters(owner, 2 * c1 * c_ + 23 * c_ * c_ + 2 * c_ * c2)  # cv1-cv7: two 3x3, five 1x1
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c1, c_, 1, 1, act=act)
        self.cv3 = Conv(c_, c_, 3, 1, act=act)
        self.cv4 = Conv(c_, c_, 1, 1, act=act)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.cv5 = Conv(4 * c_, c_, 1, 1, act=act)
        self.cv6 = Conv(c_, c_, 3, 1, act=act)
        self.cv7 = Conv(2 * c_, c2, 1, 1, act=act)

    def check_stored(self, owner: str | None = None) -> None:
        """Refuse a stored pooling window that does not keep the size of the scales it concatenates."""
        _check_pooling(owner or type(self).__name__, self.m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the pooling path and the bypass, then mix them."""
        y = [self.cv4(self.cv3(self.cv1(x)))]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv7(torch.cat((self.cv2(x), self.cv6(self.cv5(torch.cat(y, 1)))), 1))


class SimCSPSPPF(CSPSPPF):
    """YOLOv6 3.0's SimCSPSPPF: ``CSPSPPF`` with ReLU activations whatever the model's ``activation:``."""

    def __init__(self, c1: int, c2: int, k: int = 5, e: float = 0.5, act: Act = "relu"):
        """Initialize the layer; arguments as ``CSPSPPF``'s, with ReLU as the default activation."""
        super().__init__(c1, c2, k, e, act)


class BottleRep3(BottleRep):
    """YOLOv6's BottleRep3 (inside ``MBLABlock``): ``BottleRep`` with three units in sequence instead of two.

    Attributes:
        cv3 (nn.Module): Third unit, ``c2 -> c2``.
    """

    def __init__(self, c1: int, c2: int, block: str | type[nn.Module] = "RepVGGBlock", weight: bool = True,
                 act: Act = True):
        """Initialize the unit; arguments as ``BottleRep``'s."""
        super().__init__(c1, c2, block, weight, act)
        self.cv3 = type(self.cv2)(c2, c2, act=self.cv2.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the three units and add the weighted input when shapes match."""
        y = self.cv3(self.cv2(self.cv1(x)))
        return y + self.alpha * x if self.add else y


def mbla_branches(n: int) -> list[int]:
    """Return the BottleRep3 units of each branch of an ``MBLABlock`` of ``n`` layers, as YOLOv6 lays them out.

    ``n // 2`` units at most (at least one); a first branch of none, then one (one unit in all) or two more branches:
    ``n // 2`` units, and the largest power of two below it.
    """
    units = max(n // 2, 1)
    if units == 1:
        return [0, 1]
    step = 1
    while step * 2 < units:
        step *= 2
    return [0, step, units]


class MBLABlock(RestrictedLoadOnly, nn.Module):
    """YOLOv6 0.4's MBLABlock (Multi-Branch Layer Aggregation), the stage of its ``_mbla`` models.

    A 1x1 convolution makes one ``c2 * e``-channel map per branch; every branch after the first runs a chain of
    ``BottleRep3`` units on its map, and every intermediate output of every chain joins the concatenation that a 1x1
    convolution mixes to ``c2``: ELAN-style aggregation of many depths at once.

    Attributes:
        c (int): Channels of each branch, ``c2 * e``.
        cv1 (Conv): 1x1 convolution to ``branches * c`` channels.
        cv2 (Conv): 1x1 convolution of the concatenated maps to ``c2``.
        m (nn.ModuleList): One ``nn.Sequential`` of BottleRep3 units per branch after the first (``mbla_branches``).
    """

    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5, block: str | type[nn.Module] = "RepVGGBlock",
                 act: Act = True):
        """Initialize the stage.

        Args:
            c1 (int): Input channels.
            c2 (int): Output channels.
            n (int): Layers, as YOLOv6 counts them (depth-scaled by the parser like C3's repeats): ``n // 2``
                BottleRep3 units in the longest branch.
            e (float): Channels of each branch as a fraction of ``c2`` (YOLOv6's MBLA models: 1/2).
            block (str | type): Layers inside BottleRep3, a key of ``BASIC_UNITS`` (YOLOv6's MBLA models train plain
                3x3 Conv+BN+SiLU layers: ``ConvBNAct``).
            act (bool | str | nn.Module): Activation of the 1x1 convolutions and the layers, as ``RepVGGBlock``'s.
        """
        super().__init__()
        owner, activation = _checked_stage("MBLABlock", c1, c2, n, e, block, act)
        lengths = mbla_branches(n)
        self.c = max(int(c2 * e), 1)
        concatenated = (sum(lengths) + len(lengths)) * self.c
        check_parameters(owner, c1 * len(lengths) * self.c + concatenated * c2)  # the units count their own
        self.cv1 = Conv(c1, len(lengths) * self.c, 1, 1, act=activation)
        self.cv2 = Conv(concatenated, c2, 1, 1, act=activation)
        self.m = nn.ModuleList(nn.Sequential(*(BottleRep3(self.c, self.c, block, True, activation) for _ in range(k)))
                               for k in lengths[1:])

    def check_stored(self, owner: str | None = None) -> None:
        """Refuse a stored branch width that does not split ``cv1``'s output into one map per branch."""
        owner = owner or type(self).__name__
        check_stored(owner, "c * branches", self.c * (len(self.m) + 1) if isinstance(self.c, int) else self.c,
                     self.cv1.conv.out_channels, "cv1's output channels")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Split into branches, run each chain, and mix every map and every intermediate output."""
        first, *branches = self.cv1(x).split(self.c, 1)
        outputs = [first]
        for branch, chain in zip(branches, self.m):
            outputs.append(branch)
            for unit in chain:
                outputs.append(unit(outputs[-1]))
        return self.cv2(torch.cat(outputs, 1))
