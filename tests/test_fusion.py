"""fuse_model and the fused-vs-unfused check: duck-typed, idempotent, float32 before half, and able to fail."""

import copy
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from ultralytics import YOLO

from yolov8_efficientrep import FusionCheckError, QARepVGGBlock, RepBlock, RepVGGBlock, fuse_model
from yolov8_efficientrep.fusion import TOLERANCE, check_fusion, is_fused, rep_blocks, sample_image
from yolov8_efficientrep.graphs import onnx_unfused_nodes


class TwinConv(nn.Module):
    """A Rep block that is no RepConv: two parallel 3x3 convs, summed; it fuses by adding the kernels."""

    def __init__(self, c: int):
        super().__init__()
        self.a, self.b = nn.Conv2d(c, c, 3, 1, 1), nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return F.relu(self.a(x) + self.b(x))

    def forward_fuse(self, x):
        return F.relu(self.conv(x))

    def fuse_convs(self):
        if hasattr(self, "conv"):
            return
        self.conv = nn.Conv2d(self.a.in_channels, self.a.out_channels, 3, 1, 1)
        self.conv.weight.data = self.a.weight.float() + self.b.weight.float()
        self.conv.bias.data = self.a.bias.float() + self.b.bias.float()
        del self.a, self.b


def test_fuse_model_fuses_a_copy_of_every_rep_block_and_checks_it(randomize_bn, ultralytics_log):
    model = randomize_bn(YOLO("yolov8n-efficientrep.yaml").model)
    fused = fuse_model(model, imgsz=96)
    assert fused is not model and all(not is_fused(b) for b in rep_blocks(model))  # the trainable model is kept
    blocks = rep_blocks(fused)
    assert len(blocks) == 19 and all(is_fused(b) and isinstance(b.conv, nn.Conv2d) for b in blocks)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())  # Conv+BN folded too
    line = next(line for line in ultralytics_log if "fused 19 Rep blocks, max |diff| = " in line)
    print(line)
    assert float(re.search(r"\((\S+) relative", line)[1]) < TOLERANCE[torch.float32]
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(fused) < count(model)


def test_fuse_model_is_idempotent_and_fuses_in_float32_before_half(randomize_bn):
    model = randomize_bn(YOLO("yolov8n-efficientrep.yaml").model)
    fused32 = fuse_model(model, imgsz=64)
    again = fuse_model(fused32, imgsz=64)  # nothing left to fuse: same weights
    assert all(torch.equal(a, b) for a, b in zip(fused32.state_dict().values(), again.state_dict().values()))

    fused16 = fuse_model(copy.deepcopy(model).half(), check=False)
    assert next(fused16.parameters()).dtype == torch.float16
    # the algebra ran in float32: the half model's weights are the float32 fusion of the same (half) weights, rounded
    reference = fuse_model(copy.deepcopy(model).half().float(), check=False).half()
    for (name, a), b in zip(fused16.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name


def test_walk_is_duck_typed_over_any_block_with_fuse_convs(randomize_bn):
    """A block that is no RepConv subclass, and the package's other units, are fused by the same walk."""
    network = randomize_bn(nn.Sequential(TwinConv(8), RepVGGBlock(8, 16, s=2), QARepVGGBlock(16, 16),
                                         RepBlock(16, 16, 4, "BottleRep")))
    x = torch.rand(2, 8, 32, 32, generator=torch.Generator().manual_seed(0))
    fused = fuse_model(network, image=x)
    assert all(is_fused(b) for b in rep_blocks(fused)) and len(rep_blocks(fused)) == 7  # 3 + 2 BottleRep x 2 units
    assert not hasattr(fused[0], "a") and isinstance(fused[0].conv, nn.Conv2d)
    with pytest.raises(ValueError, match="pass image="):
        fuse_model(network)


def test_check_fails_on_a_classic_fusion_bug(randomize_bn):
    """Re-parameterizing without the identity branch (a YOLOv6 user's bug) is caught, with the numbers."""
    model = randomize_bn(YOLO("yolov8n-efficientrep.yaml").model)
    fused = fuse_model(model, check=False)
    block = next(b for b in rep_blocks(model) if b.bn is not None)
    name = next(n for n, m in model.named_modules() if m is block)
    kernel = block._identity_kernel()
    scale = (block.bn.weight / (block.bn.running_var + block.bn.eps).sqrt()).reshape(-1, 1, 1, 1)
    fused.get_submodule(name).conv.weight.data -= kernel * scale  # drop the identity branch's kernel
    with pytest.raises(FusionCheckError, match=r"max \|diff\| = .* tolerance 1e-04"):
        check_fusion(fused, model, sample_image(64, 64))


def test_half_weights_are_checked_at_the_half_tolerance(randomize_bn):
    model = randomize_bn(YOLO("yolov8n-efficientrep.yaml").model)
    result = check_fusion(fuse_model(model, check=False).half(), model, sample_image(64, 64))
    print(f"float16 fused weights vs float32 unfused: relative {result.max_rel:.2e}")
    # float16 rounding alone exceeds the float32 bound: the check must not judge it by that bound
    assert result.tolerance == TOLERANCE[torch.float16] and TOLERANCE[torch.float32] < result.max_rel


def test_export_callback_stops_an_export_whose_fusion_is_wrong(tmp_path, monkeypatch):
    """The callback compares Ultralytics' fused export model with the caller's unfused one, and stops on a mismatch."""

    class ForgetfulRepVGGBlock(RepVGGBlock):
        def get_equivalent_kernel_bias(self):
            kernel, bias = super().get_equivalent_kernel_bias()
            return kernel * 0.5, bias

    monkeypatch.chdir(tmp_path)
    model = YOLO("yolov8n-efficientrep.yaml")
    model.model.model[2].m[1].__class__ = ForgetfulRepVGGBlock
    with pytest.raises(FusionCheckError, match="fused export model differs"):
        model.export(format="torchscript", imgsz=64)
    assert not list(tmp_path.glob("*.torchscript"))  # stopped before anything was written
    assert all(not is_fused(b) for b in rep_blocks(model.model))  # the caller's model is untouched


def test_onnx_check_finds_unfused_branches(tmp_path, randomize_bn):
    network = randomize_bn(nn.Sequential(RepVGGBlock(8, 8), RepVGGBlock(8, 16, s=2)))
    x = torch.rand(1, 8, 16, 16)
    for name, module in (("unfused", network), ("fused", fuse_model(network, image=x))):
        torch.onnx.export(module, x, tmp_path / f"{name}.onnx", dynamo=False)
    assert onnx_unfused_nodes(tmp_path / "unfused.onnx")  # the identity BN and the two branch sums
    assert onnx_unfused_nodes(tmp_path / "fused.onnx") == []
