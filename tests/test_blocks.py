"""The Rep units (RepVGGBlock, QARepVGGBlock, QARepVGGBlockV2) and RepBlock: the fused form computes what the branches
compute."""

import copy
import logging

import pytest
import torch
from torch import nn
from ultralytics.utils import LOGGER
from ultralytics.utils.torch_utils import fuse_conv_and_bn

from yolov8_efficientrep import QARepVGGBlock, RepBlock, RepVGGBlock
from yolov8_efficientrep.blocks import QARepVGGBlockV2

from helpers import RTOL, relative_difference

REP_UNITS = (RepVGGBlock, QARepVGGBlock, QARepVGGBlockV2)


def fuse_block(block: nn.Module) -> nn.Module:
    """Fuse every Rep unit inside ``block`` the way Ultralytics' ``model.fuse()`` does."""
    for unit in block.modules():
        if isinstance(unit, RepVGGBlock):
            unit.fuse_convs()
            unit.forward = unit.forward_fuse
    return block


@pytest.mark.parametrize("unit", REP_UNITS, ids=lambda unit: unit.__name__)
@pytest.mark.parametrize("c1, c2, s, g",
                         [(16, 16, 1, 1), (16, 32, 1, 1), (16, 32, 2, 1), (16, 16, 2, 1), (16, 16, 1, 4)])
def test_rep_unit_fused_equals_unfused(unit, c1, c2, s, g, randomize_bn):
    block = randomize_bn(unit(c1, c2, 3, s, g=g, act=nn.ReLU()))
    identity = c1 == c2 and s == 1  # the identity branch (and QARepVGGBlockV2's pooling branch) only then
    assert getattr(block, "has_identity", block.bn is not None) == identity
    assert getattr(block, "avg", None) is None or identity
    x = torch.randn(2, c1, 20, 20)
    with torch.no_grad():
        unfused = block(x)
        fused_block = fuse_block(copy.deepcopy(block))
        fused = fused_block(x)
    difference = relative_difference(fused, unfused)
    print(f"{unit.__name__}({c1}, {c2}, s={s}, g={g}) max relative |diff| = {difference:.2e}")
    assert difference < RTOL
    assert fused.shape == (2, c2, 20 // s, 20 // s)
    assert [type(m) for m in fused_block.children()] == [nn.ReLU, nn.Conv2d]  # no BN, no branch, no pooling left


def test_fused_block_is_one_plain_conv_and_fusing_twice_changes_nothing(randomize_bn):
    block = fuse_block(randomize_bn(RepVGGBlock(8, 8)))
    assert [type(m) for m in block.children()] == [nn.SiLU, nn.Conv2d]  # default act: Conv.default_act
    assert block.conv.kernel_size == (3, 3) and block.conv.bias is not None
    weight = block.conv.weight.clone()
    fuse_block(block)
    assert torch.equal(block.conv.weight, weight)


@pytest.mark.parametrize("unit", REP_UNITS, ids=lambda unit: unit.__name__)
def test_fusion_does_not_depend_on_branch_bn_being_folded_first(unit, randomize_bn):
    """Folding each branch's Conv+BN before re-parameterizing (a child-first walker's order, a classic ordering bug)
    must give the same block; fusing it a second time changes nothing."""
    block = randomize_bn(unit(8, 8))
    x = torch.randn(1, 8, 12, 12)
    with torch.no_grad():
        unfused = block(x)
        branches = [branch for branch in (block.conv1, block.conv2) if hasattr(branch, "bn")]  # QARepVGG: 3x3 only
        assert branches
        for branch in branches:
            branch.conv = fuse_conv_and_bn(branch.conv, branch.bn)
            del branch.bn
            branch.forward = branch.forward_fuse
        fused = fuse_block(block)(x)
        assert relative_difference(fused, unfused) < RTOL
        weight = block.conv.weight.clone()
        fuse_block(block)
        assert torch.equal(block.conv.weight, weight) and torch.equal(block(x), fused)


def test_repblock_stacks_n_units_and_fuses(randomize_bn):
    stage = randomize_bn(RepBlock(16, 32, n=3))
    units = list(stage.m)
    assert len(units) == 3 and all(isinstance(u, RepVGGBlock) for u in units)
    assert (units[0].c1, units[0].c2, units[0].bn) == (16, 32, None)  # first unit changes channels: no identity
    assert all(u.c1 == u.c2 == 32 and u.bn is not None for u in units[1:])
    x = torch.randn(2, 16, 16, 16)
    with torch.no_grad():
        difference = relative_difference(fuse_block(copy.deepcopy(stage))(x), stage(x))
    print(f"RepBlock(16, 32, n=3) max relative |diff| = {difference:.2e}")
    assert difference < RTOL


def test_repblock_accepts_c2f_shortcut_flag_with_a_warning():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    LOGGER.addHandler(handler)  # Ultralytics' logger does not propagate to pytest's caplog
    try:
        stage = RepBlock(8, 24, 2, True)
    finally:
        LOGGER.removeHandler(handler)
    assert len(stage.m) == 2 and all(isinstance(u, RepVGGBlock) for u in stage.m)
    assert any("'shortcut' argument has no effect" in r.getMessage() for r in records)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 5}, "only a 3x3 kernel"),
        ({"k": 1}, "only a 3x3 kernel"),
        ({"s": 3}, "stride must be 1 or 2"),
        ({"d": 2}, "dilation"),
        ({"g": 3}, "divisible by g=3"),
        ({"act": "rleu"}, "unknown activation 'rleu'"),
        ({"act": 3}, "act must be an activation name"),
    ],
)
def test_repvgg_block_rejects_bad_arguments_by_name(kwargs, message):
    with pytest.raises((ValueError, TypeError), match="RepVGGBlock") as error:
        RepVGGBlock(8, 16, **kwargs)
    assert message in str(error.value)


def test_repblock_rejects_unknown_unit_and_bad_repeats():
    with pytest.raises(ValueError, match="unknown block 'Nope'.*RepVGGBlock"):
        RepBlock(8, 8, 2, "Nope")
    with pytest.raises(ValueError, match="repeats n must be a positive integer"):
        RepBlock(8, 8, 0)
