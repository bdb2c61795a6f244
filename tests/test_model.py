"""The whole EfficientRep YOLOv8: Ultralytics' own fuse() re-parameterizes it exactly (its training: test_cli.py)."""

import copy

import torch
from torch import nn
from ultralytics import YOLO

from yolov8_efficientrep import RepBlock, RepVGGBlock

RTOL = 1e-4  # max |fused - unfused| relative to max |unfused|, float32


def test_ultralytics_fuse_reparameterizes_every_block_exactly(randomize_bn):
    model = randomize_bn(YOLO("yolov8n-efficientrep.yaml").model)
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        unfused = model(x)[0]
        fused_model = copy.deepcopy(model).fuse(verbose=False)
        fused = fused_model(x)[0]
        difference = ((fused - unfused).abs().max() / unfused.abs().max()).item()
        print(f"yolov8n-efficientrep fused vs unfused: max relative |diff| = {difference:.2e}")
        assert difference < RTOL

        blocks = [m for m in fused_model.modules() if isinstance(m, RepVGGBlock)]
        assert len(blocks) == 19  # 5 stride-2 blocks + 2 + 4 + 6 + 2 stage units
        assert all(not hasattr(b, "conv1") and isinstance(b.conv, nn.Conv2d) for b in blocks)
        stages = [m for m in fused_model.modules() if isinstance(m, (RepVGGBlock, RepBlock))]
        assert not any(isinstance(m, nn.BatchNorm2d) for stage in stages for m in stage.modules())

        state = copy.deepcopy(fused_model.state_dict())
        for block in blocks:  # fusing again, directly or through Ultralytics, is a no-op
            block.fuse_convs()
        fused_model.fuse(verbose=False)
        assert all(torch.equal(state[k], v) for k, v in fused_model.state_dict().items())
        assert torch.equal(fused_model(x)[0], fused)
