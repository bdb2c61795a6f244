"""The layers YOLOv6 0.4.x's QA models and YOLOv6-L need: QARepVGGBlockV2 adds a pooling branch (its fusion is checked
with the other Rep units in test_blocks.py), ConvBNAct takes its activation per row, and both build as YAML rows and as
the units of BottleRep, RepBlock and BepC3."""

import copy

import pytest
import torch
import yaml
from torch import nn
from ultralytics import YOLO
from ultralytics.nn.modules import Conv, RepConv

from yolov8_efficientrep.blocks import BottleRep, ConvBNAct, QARepVGGBlock, QARepVGGBlockV2, RepBlock
from yolov8_efficientrep.rows import plugin_classes
from yolov8_efficientrep.csp_blocks import BepC3

from helpers import RTOL, relative_difference


def test_qarepvgg_v2_adds_the_average_pooling_branch_to_qarepvgg(randomize_bn):
    v1, v2 = QARepVGGBlock(8, 8), QARepVGGBlockV2(8, 8)
    v2.load_state_dict(randomize_bn(v1).state_dict())  # same tensors: the pooling branch has none
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        expected = v1.act(v1.bn(v1.conv1(x) + v1.conv2(x) + x + nn.functional.avg_pool2d(x, 3, 1, 1)))
        assert torch.allclose(v2.eval()(x), expected, atol=1e-6)
    assert isinstance(v2, RepConv)  # so Ultralytics' own fuse() re-parameterizes it


def test_conv_bn_act_takes_its_activation_by_name_and_is_3x3_by_default():
    unit = ConvBNAct(8, 16, act="silu")
    assert isinstance(unit, Conv) and unit.conv.kernel_size == (3, 3) and type(unit.act) is nn.SiLU
    assert type(ConvBNAct(8, 16, 1, 2, "relu").act) is nn.ReLU and ConvBNAct(8, 16, 1, 2).conv.stride == (2, 2)
    with pytest.raises(ValueError, match=r"ConvBNAct\(c1=8, c2=16, k=3, s=1\): unknown activation 'swish'"):
        ConvBNAct(8, 16, act="swish")


def test_both_stand_as_units_of_bottlerep_repblock_and_bepc3():
    assert all(type(m) is QARepVGGBlockV2 for m in (BottleRep(8, 8, "QARepVGGBlockV2").cv1,
                                                     *RepBlock(8, 8, 2, "QARepVGGBlockV2").m))
    stage = BepC3(16, 16, 4, 0.5, "ConvBNAct", "silu")
    units = [layer for unit in stage.m.m for layer in (unit.cv1, unit.cv2)]
    assert len(units) == 4 and all(type(m) is ConvBNAct and type(m.act) is nn.SiLU for m in units)
    assert type(stage.cv1.act) is nn.SiLU


def test_rows_build_with_conv_like_channels_and_fuse_exactly(tmp_path, randomize_bn):
    spec = {"nc": 2, "activation": "nn.ReLU()", "scales": {"n": [0.5, 0.25, 1024]},
            "backbone": [[-1, 1, "ConvBNAct", [64, 3, 2, "silu"]], [-1, 1, "QARepVGGBlockV2", [64, 3, 1]],
                         [-1, 4, "BepC3", [128, 0.5, "ConvBNAct", "silu"]],
                         [-1, 2, "RepBlock", [128, "QARepVGGBlockV2"]]],
            "head": [[[3], 1, "Detect", ["nc"]]]}
    path = tmp_path / "rowsn.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    model = randomize_bn(YOLO(path).model)
    layers = model.model
    assert (layers[0].conv.out_channels, type(layers[0].act)) == (16, nn.SiLU)
    assert type(layers[1]) is QARepVGGBlockV2 and layers[1].avg is not None and type(layers[1].act) is nn.ReLU
    assert layers[2].cv3.conv.out_channels == 32 and type(layers[3].m[0]) is QARepVGGBlockV2
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        unfused = model(x)[0]
        fused_model = copy.deepcopy(model).fuse(verbose=False)
        assert relative_difference(fused_model(x)[0], unfused) < RTOL
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.AvgPool2d)) for m in fused_model.modules())


def test_restricted_loading_allow_lists_both():
    assert {QARepVGGBlockV2, ConvBNAct} <= set(plugin_classes())
