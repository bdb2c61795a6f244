"""YOLOv6-Lite's blocks in Ultralytics' layer dialect (``c1, c2, k, s``): depthwise stages with Hardswish for CPUs.

YOLOv6-Lite (YOLOv6 0.4.0, ``configs/yolov6_lite``) replaces RepVGG's dense 3x3 convolutions, which lose on phones and
ARM CPUs, with ShuffleNet-style blocks: 1x1 convolutions, 3x3 (and, in its neck and head, 5x5) depthwise convolutions,
a squeeze-and-excitation gate and Hardswish. Nothing here re-parameterizes: every convolution is an Ultralytics
``Conv`` (conv + BN + activation, YOLOv6's ``ConvBNHS`` / ``ConvBN``), so Ultralytics' ``fuse()`` folds each BN into
its convolution and the deploy form is the same graph without BN. The child names are YOLOv6's, so that a YOLOv6-Lite
checkpoint maps onto these blocks layer for layer.

Checkpoints pickle these classes by import path (``yolov8_efficientrep.lite_blocks.<Name>``): keep names and path stable.
"""

from __future__ import annotations

import torch
from torch import nn
from ultralytics.nn.modules import Conv

from .activations import Act, resolve_act
from .limits import RestrictedLoadOnly, check_channels, check_kernel, check_parameters
from .messages import call, printable

HARDSWISH = "hardswish"  # YOLOv6-Lite's activation everywhere but the squeeze-and-excitation gate


def _check_halves(owner: str, **channels: int) -> None:
    """Refuse odd channel counts where a block splits or concatenates two equal halves."""
    odd = {name: value for name, value in channels.items() if value % 2}
    if odd:
        raise ValueError(f"{owner}: {', '.join(odd)} must be even (the block works on two halves of its channels)")


class SEBlock(RestrictedLoadOnly, nn.Module):
    """YOLOv6-Lite's squeeze-and-excitation gate: global average, 1x1 conv to ``c // 4`` with ReLU, 1x1 conv back,
    hard sigmoid, and the input scaled channel by channel.

    Attributes:
        avg_pool (nn.AdaptiveAvgPool2d): The global average.
        conv1 (nn.Conv2d): 1x1 convolution with bias, ``c -> c // reduction``.
        relu (nn.ReLU): Its activation.
        conv2 (nn.Conv2d): 1x1 convolution with bias back to ``c``.
        hardsigmoid (nn.Hardsigmoid): The gate.
    """

    def __init__(self, c: int, reduction: int = 4):
        """Initialize the gate for ``c`` channels, squeezed to ``c // reduction`` (at least one)."""
        super().__init__()
        hidden = max(c // reduction, 1)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = nn.Conv2d(c, hidden, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(hidden, c, 1)
        self.hardsigmoid = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel of ``x`` by its gate."""
        return x * self.hardsigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups (ShuffleNet): data movement only, exact."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class DPBlock(RestrictedLoadOnly, nn.Module):
    """YOLOv6-Lite's DPBlock: a depthwise ``k x k`` convolution, then a 1x1 convolution, each with BN and Hardswish.

    Its neck's downsampling and its head's stems and branches (``k=5``).

    Attributes:
        conv_dw_1 (Conv): Depthwise ``k x k`` convolution (stride ``s``), ``c1`` groups.
        conv_pw_1 (Conv): Pointwise convolution, ``c1 -> c2``.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, act: Act = HARDSWISH):
        """Initialize the block.

        Args:
            c1 (int): Input channels (the depthwise convolution keeps them).
            c2 (int): Output channels.
            k (int): Depthwise kernel size, odd (padding keeps the size at stride 1).
            s (int): Stride of the depthwise convolution.
            act (bool | str | nn.Module): Activation of both convolutions, as ``RepVGGBlock``'s ``act``; Hardswish by
                default, as YOLOv6-Lite's.
        """
        super().__init__()
        owner = call("DPBlock", c1=c1, c2=c2, k=k, s=s)
        check_channels(owner, c1, c2)
        check_kernel(owner, k, odd=True)
        if s not in (1, 2):
            raise ValueError(f"{owner}: stride must be 1 or 2, got {printable(s)}")
        check_parameters(owner, c1 * k * k + c1 * c2)
        activation = resolve_act(act, owner)
        self.conv_dw_1 = Conv(c1, c1, k, s, g=c1, act=activation)
        self.conv_pw_1 = Conv(c1, c2, 1, 1, act=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the depthwise, then the pointwise convolution."""
        return self.conv_pw_1(self.conv_dw_1(x))


class DarknetBlock(RestrictedLoadOnly, nn.Module):
    """YOLOv6-Lite's DarknetBlock, inside ``LiteCSPBlock``: a 1x1 convolution, then a ``DPBlock``.

    Attributes:
        conv_1 (Conv): 1x1 convolution to ``c2 * e`` channels.
        conv_2 (DPBlock): ``k x k`` depthwise and 1x1 convolution to ``c2``.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, e: float = 0.5, act: Act = HARDSWISH):
        """Initialize the block; ``e`` is the hidden channels' fraction of ``c2``."""
        super().__init__()
        hidden = max(int(c2 * e), 1)
        activation = resolve_act(act, call("DarknetBlock", c1=c1, c2=c2, k=k, e=e))
        self.conv_1 = Conv(c1, hidden, 1, 1, act=activation)
        self.conv_2 = DPBlock(hidden, c2, k, 1, act=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run both layers."""
        return self.conv_2(self.conv_1(x))


class LiteCSPBlock(RestrictedLoadOnly, nn.Module):
    """YOLOv6-Lite's neck stage (its ``CSPBlock``): two 1x1 paths to ``c2 * e`` channels, a ``DarknetBlock`` on one,
    concatenated (DarknetBlock path first), then a 1x1 convolution to ``c2``.

    Attributes:
        conv_1 (Conv): 1x1 convolution into the DarknetBlock path.
        conv_2 (Conv): 1x1 convolution of the bypass path.
        conv_3 (Conv): 1x1 convolution after the concatenation.
        blocks (DarknetBlock): The DarknetBlock (hidden ratio 1).
    """

    def __init__(self, c1: int, c2: int, k: int = 5, e: float = 0.5, act: Act = HARDSWISH):
        """Initialize the stage.

        Args:
            c1 (int): Input channels.
            c2 (int): Output channels.
            k (int): Kernel of the DarknetBlock's depthwise convolution, odd (YOLOv6-Lite: 5).
            e (float): Hidden channels as a fraction of ``c2``, in (0, 1].
            act (bool | str | nn.Module): Activation of every convolution; Hardswish by default.
        """
        super().__init__()
        owner = call("LiteCSPBlock", c1=c1, c2=c2, k=k, e=e)
        check_channels(owner, c1, c2)
        check_kernel(owner, k, odd=True)
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0 < e <= 1:
            raise ValueError(f"{owner}: expansion e must be a number in (0, 1], got {printable(e)}")
        hidden = max(int(c2 * e), 1)
        check_parameters(owner, 2 * c1 * hidden + 2 * hidden * c2 + hidden * (2 * hidden + k * k))
        activation = resolve_act(act, owner)
        self.conv_1 = Conv(c1, hidden, 1, 1, act=activation)
        self.conv_2 = Conv(c1, hidden, 1, 1, act=activation)
        self.conv_3 = Conv(2 * hidden, c2, 1, 1, act=activation)
        self.blocks = DarknetBlock(hidden, hidden, k, 1.0, act=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the DarknetBlock path with the bypass path and mix them."""
        return self.conv_3(torch.cat((self.blocks(self.conv_1(x)), self.conv_2(x)), 1))


class LiteEffiBlockS1(RestrictedLoadOnly, nn.Module):
    """YOLOv6-Lite's stride-1 block (``Lite_EffiBlockS1``): half the channels pass through, the other half go through
    a 1x1 convolution to ``c_mid``, a 3x3 depthwise convolution (BN, no activation), a squeeze-and-excitation gate and
    a 1x1 convolution back; the halves are concatenated and their channels interleaved.

    Attributes:
        conv_pw_1 (Conv): 1x1 convolution of the second half to ``c_mid``.
        conv_dw_1 (Conv): 3x3 depthwise convolution, no activation.
        se (SEBlock): The gate.
        conv_1 (Conv): 1x1 convolution to ``c2 // 2``.
    """

    def __init__(self, c1: int, c2: int, c_mid: int, act: Act = HARDSWISH):
        """Initialize the block.

        Args:
            c1 (int): Input channels, even and equal to ``c2``.
            c2 (int): Output channels.
            c_mid (int): Channels of the depthwise stage (YOLOv6-Lite: half the stage's output, rounded to 8).
            act (bool | str | nn.Module): Activation of the 1x1 convolutions; Hardswish by default.
        """
        super().__init__()
        owner = call("LiteEffiBlockS1", c1=c1, c2=c2, c_mid=c_mid)
        check_channels(owner, c1, c2, c_mid)
        if c1 != c2:
            raise ValueError(f"{owner}: c1 must equal c2 (half the channels pass through unchanged); a stage changes "
                             f"its channels in its LiteEffiBlockS2 row")
        _check_halves(owner, c1=c1)
        check_parameters(owner, c1 // 2 * c_mid + 9 * c_mid + c_mid * c_mid // 2 + c_mid * c2 // 2)
        activation = resolve_act(act, owner)
        self.conv_pw_1 = Conv(c1 // 2, c_mid, 1, 1, act=activation)
        self.conv_dw_1 = Conv(c_mid, c_mid, 3, 1, g=c_mid, act=False)
        self.se = SEBlock(c_mid)
        self.conv_1 = Conv(c_mid, c2 // 2, 1, 1, act=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transform the second half, concatenate it after the first, and interleave the two."""
        x1, x2 = x.chunk(2, 1)
        y = self.conv_1(self.se(self.conv_dw_1(self.conv_pw_1(x2))))
        return channel_shuffle(torch.cat((x1, y), 1), 2)


class LiteEffiBlockS2(RestrictedLoadOnly, nn.Module):
    """YOLOv6-Lite's downsampling block (``Lite_EffiBlockS2``): two stride-``s`` branches to ``c2 // 2`` channels each,
    concatenated, then a 3x3 depthwise and a 1x1 convolution.

    Branch 1: 3x3 depthwise convolution (BN, no activation), 1x1 convolution. Branch 2: 1x1 convolution to
    ``c_mid // 2``, 3x3 depthwise convolution (BN, no activation), a squeeze-and-excitation gate, 1x1 convolution.

    Attributes:
        conv_dw_1, conv_1 (Conv): Branch 1.
        conv_pw_2, conv_dw_2 (Conv), se (SEBlock), conv_2 (Conv): Branch 2.
        conv_dw_3 (Conv): 3x3 depthwise convolution of the concatenation.
        conv_pw_3 (Conv): 1x1 convolution, ``c2 -> c2``.
    """

    def __init__(self, c1: int, c2: int, c_mid: int, s: int = 2, act: Act = HARDSWISH):
        """Initialize the block.

        Args:
            c1 (int): Input channels.
            c2 (int): Output channels, even.
            c_mid (int): The stage's middle channels; branch 2 works at ``c_mid // 2``.
            s (int): Stride of both branches (YOLOv6-Lite: 2).
            act (bool | str | nn.Module): Activation of the 1x1 convolutions and the last depthwise one; Hardswish by
                default.
        """
        super().__init__()
        owner = call("LiteEffiBlockS2", c1=c1, c2=c2, c_mid=c_mid, s=s)
        check_channels(owner, c1, c2, c_mid)
        _check_halves(owner, c2=c2, c_mid=c_mid)
        if s not in (1, 2):
            raise ValueError(f"{owner}: stride must be 1 or 2, got {printable(s)}")
        half = c_mid // 2
        check_parameters(owner, 9 * c1 + c1 * c2 // 2 + c1 * half + 9 * half + half * half // 2 + half * c2 // 2
                         + 9 * c2 + c2 * c2)
        activation = resolve_act(act, owner)
        self.conv_dw_1 = Conv(c1, c1, 3, s, g=c1, act=False)
        self.conv_1 = Conv(c1, c2 // 2, 1, 1, act=activation)
        self.conv_pw_2 = Conv(c1, half, 1, 1, act=activation)
        self.conv_dw_2 = Conv(half, half, 3, s, g=half, act=False)
        self.se = SEBlock(half)
        self.conv_2 = Conv(half, c2 // 2, 1, 1, act=activation)
        self.conv_dw_3 = Conv(c2, c2, 3, 1, g=c2, act=activation)
        self.conv_pw_3 = Conv(c2, c2, 1, 1, act=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run both branches, concatenate them (branch 1 first), and mix them."""
        x1 = self.conv_1(self.conv_dw_1(x))
        x2 = self.conv_2(self.se(self.conv_dw_2(self.conv_pw_2(x))))
        return self.conv_pw_3(self.conv_dw_3(torch.cat((x1, x2), 1)))


class SplitAdd(RestrictedLoadOnly, nn.Module):
    """The sum of its input's two channel halves: after a ``Concat`` of two maps, their element-wise sum.

    Ultralytics' rows have no sum of two inputs; YOLOv6-Lite's P6 level is one (two DPBlocks, on the neck's reduced P5
    map and on its P5 output, added), written as ``Concat`` then ``SplitAdd``.
    """

    def __init__(self, c1: int, c2: int):
        """Initialize the layer: ``c1`` input channels, twice its ``c2`` output channels."""
        super().__init__()
        owner = call("SplitAdd", c1=c1, c2=c2)
        check_channels(owner, c1, c2)
        if c1 != 2 * c2:
            raise ValueError(f"{owner}: the input must have twice the output's channels (a Concat of two maps of c2 "
                             f"channels each)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add the first half of the channels to the second."""
        first, second = x.chunk(2, 1)
        return first + second
