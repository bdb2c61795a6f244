"""The plugin's Rep blocks train exactly as YOLOv6's own: same forward, same gradients, same BN statistics.

Checked against YOLOv6's code (PyPI ``yolov6detect``: YOLOv6's ``yolov6`` package as of its 0.3.0 release) in training
mode, so a slow learner cannot be blamed on a difference in the block itself (issue 13's first suspect).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from yolov8_efficientrep import BottleRep, RepVGGBlock

common = pytest.importorskip("yolov6.layers.common", reason="yolov6detect (the test extra) is not installed")


def copy_repvgg(theirs: nn.Module, ours: RepVGGBlock) -> list[tuple[str, str]]:
    """Copy YOLOv6 RepVGGBlock tensors into ours; return the (their name, our name) pairs of parameters and buffers."""
    names = {"rbr_dense.conv": "conv1.conv", "rbr_dense.bn": "conv1.bn", "rbr_1x1.conv": "conv2.conv",
             "rbr_1x1.bn": "conv2.bn", "rbr_identity": "bn"}
    pairs = []
    ours_state = ours.state_dict()
    for name, tensor in theirs.state_dict().items():
        prefix, _, leaf = name.rpartition(".")
        ours_name = f"{names[prefix]}.{leaf}"
        ours_state[ours_name].copy_(tensor)
        pairs.append((name, ours_name))
    assert len(pairs) == len(ours_state)
    return pairs


@pytest.mark.parametrize("c1, c2, s", [(16, 16, 1), (8, 16, 2), (16, 32, 1)])
def test_repvgg_block_trains_as_yolov6s(c1, c2, s):
    torch.manual_seed(0)
    theirs, ours = common.RepVGGBlock(c1, c2, 3, s), RepVGGBlock(c1, c2, 3, s, act="relu")
    pairs = copy_repvgg(theirs, ours)
    for module in (*theirs.modules(), *ours.modules()):  # momentum as both YOLOv6 and Ultralytics initialize it
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.03
    x = torch.randn(4, c1, 12, 12)
    upstream = torch.randn(4, c2, 12 // s, 12 // s)
    outputs = []
    for block in (theirs.train(), ours.train()):
        y = block(x)
        (y * upstream).sum().backward()
        outputs.append(y)
    assert torch.equal(outputs[0], outputs[1])
    theirs_params, ours_params = dict(theirs.named_parameters()), dict(ours.named_parameters())
    theirs_state, ours_state = theirs.state_dict(), ours.state_dict()
    for their_name, our_name in pairs:
        if their_name in theirs_params:
            assert torch.equal(theirs_params[their_name].grad, ours_params[our_name].grad), our_name
        else:  # running statistics after one training step
            assert torch.equal(theirs_state[their_name], ours_state[our_name]), our_name


def test_bottlerep_shortcut_weight_trains_as_yolov6s():
    torch.manual_seed(0)
    theirs = common.BottleRep(16, 16, basic_block=common.RepVGGBlock, weight=True)
    ours = BottleRep(16, 16, "RepVGGBlock", weight=True, act="relu")
    copy_repvgg(theirs.conv1, ours.cv1)
    copy_repvgg(theirs.conv2, ours.cv2)
    ours.alpha.data.copy_(theirs.alpha.data)
    x = torch.randn(2, 16, 8, 8)
    outputs = []
    for block in (theirs.train(), ours.train()):
        y = block(x)
        y.square().sum().backward()
        outputs.append(y)
    assert torch.equal(outputs[0], outputs[1])
    assert torch.equal(theirs.alpha.grad, ours.alpha.grad)
