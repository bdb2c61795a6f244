"""A checkpoint's stored attributes never size an allocation: fusion holds each to the module's own tensors first.

A pickled module carries attributes beside its tensors (a block's ``c1`` and ``g``, a convolution's ``padding``, a
model's ``stride``, a YAML's ``channels``) and fusion, its check image and the check's forward pass allocate by them.
Each payload here keeps every tensor honest and alters one attribute. One child process, with an address-space limit
set before each attempt, runs the fusion on every payload's file with the defence, which must refuse each in one line
naming the module, fast and without growing memory; then switches the defence off (the checks replaced by no-ops, the
code path they guard as it was) and runs every payload again, each of which must try to allocate gigabytes (the
overflow: reach the comparison that blamed the fusion algebra), proving it live. Each test asserts on its own payload.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from ultralytics.nn.modules import RepConv

from yolov8_efficientrep import BepC3, BottleRep, ConvBNAct, EffiDeHead, QARepVGGBlockV2, RepBlock, RepVGGBlock
from yolov8_efficientrep.csp_blocks import CSPSPPF, SimSPPF
from yolov8_efficientrep.fusion import check_image, check_stored_attributes, fuse_model, fuse_rep_blocks
from yolov8_efficientrep.limits import LimitError, StoredAttributeError, WeightsOverflowError

from helpers import REPO

HEADROOM = 1 << 30  # address space an attempt may add once its file is loaded: every payload here asks for more
GROWTH = 64 << 20  # peak memory a refusal may add to the loaded model

# Fuses each payload (argv[2]: JSON [name, file, action] rows) with the defence, then all again with it switched off
# for good; prints {name: [defended, undefended]} as JSON. Each attempt loads its own file, then runs its action
# measured by limited.py, with argv[1] bytes of address space above the process as it is then.
CHILD = """
import json, sys, torch, ultralytics
import yolov8_efficientrep.blocks as blocks, yolov8_efficientrep.fusion as fusion
from yolov8_efficientrep.rows import plugin_classes
from limited import measured

def attempt(path, action):
    model = torch.load(path, weights_only=False)
    return measured(lambda: eval(action, globals(), {"model": model}), int(sys.argv[1]))

def switch_off_the_defence():
    for cls in plugin_classes():
        cls.check_stored = lambda self, owner=None: None
    noop = lambda *args, **kwargs: None
    fusion.check_stored_attributes = fusion._check_fused_weights = fusion._check_reference_outputs = noop
    blocks.check_folded = noop
    for name in ("check_stride", "check_image_channels", "check_stored", "check_torch_layer"):
        setattr(fusion, name, noop)

payloads = json.loads(sys.argv[2])
defended = {name: attempt(path, action) for name, path, action in payloads}
switch_off_the_defence()
print(json.dumps({name: [defended[name], attempt(path, action)] for name, path, action in payloads}))
"""


def tried_to_allocate(outcome: dict) -> int:
    """The bytes an allocation refused by the address-space limit asked for (torch's and OpenCV's messages)."""
    sizes = re.findall(r"allocate (\d+) bytes", outcome.get("message", ""))
    return max(map(int, sizes), default=0)


def refused_in_one_line(outcome: dict, error: type[Exception], *named: str) -> str:
    """Assert a quick, small, one-line refusal of type ``error`` naming ``named``; return its message."""
    message = outcome["message"]
    assert outcome["outcome"] == error.__name__, outcome
    assert len(message.splitlines()) == 1 and len(message) <= 300 and all(part in message for part in named), message
    assert outcome["seconds"] < 3 and outcome["growth"] <= GROWTH, outcome  # loaded 2-core VM: ~0.2-1 s
    return message


@pytest.fixture(scope="module")
def detection_model():
    """A yolov8n-efficientrep DetectionModel with measured-looking BN statistics (its imgsz 64 check takes a second)."""
    from ultralytics import YOLO

    with torch.random.fork_rng():  # the weights, and so whether an activation overflows, must not follow test order
        torch.manual_seed(0)
        model = YOLO("yolov8n-efficientrep.yaml").model.eval()
    generator = torch.Generator().manual_seed(0)
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_var.uniform_(0.5, 2, generator=generator)
            bn.weight.data.uniform_(0.5, 1.5, generator=generator)
    return model


def saved(model: nn.Module, path: Path, alter) -> Path:
    """Save a copy of ``model`` with ``alter(copy)`` applied, pickled whole as Ultralytics' checkpoints are."""
    model = copy.deepcopy(model)
    alter(model)
    torch.save(model, path)
    return path


def overflow(model: nn.Module) -> None:
    """Make ``model.4.m.2.conv1``'s folded kernel overflow float32 while every stored tensor stays finite."""
    bn = model.model[4].m[2].conv1.bn
    model.model[4].m[2].conv1.conv.weight.data.fill_(1e37)
    bn.weight.data.fill_(1e3)
    bn.running_var.fill_(1e-6)


@pytest.fixture(scope="module")
def payloads(tmp_path_factory, detection_model) -> dict[str, tuple[Path, str]]:
    """Each test's crafted file, by name, with the fusion (Python, on ``model`` loaded from it) the child runs."""
    folder = tmp_path_factory.mktemp("payloads")
    depthwise = nn.Sequential(RepVGGBlock(8192, 8192, g=8192)).eval()
    return {
        "depthwise": (saved(depthwise, folder / "depthwise.pt", lambda m: setattr(m[0], "g", 1)),
                      "fusion.fuse_model(model, check=False)"),
        "wide": (saved(detection_model, folder / "wide.pt", lambda m: setattr(m.model[2].m[1], "c1", 20_000)),
                 "model.fuse(verbose=False)"),
        "padded": (saved(detection_model, folder / "padded.pt",
                         lambda m: setattr(m.model[-1].cv3[0][0].conv, "padding", (9000, 9000))),
                   "fusion.fuse_model(model, imgsz=64)"),
        "stride": (saved(detection_model, folder / "stride.pt",
                         lambda m: setattr(m, "stride", torch.tensor([8.0, 16.0, 32768.0]))),
                   "fusion.check_image(model, 640)"),
        "channels": (saved(detection_model, folder / "channels.pt", lambda m: m.yaml.update(channels=5000)),
                     "fusion.check_image(model, 640)"),
        "overflow": (saved(detection_model, folder / "overflow.pt", overflow), "fusion.fuse_model(model, imgsz=64)"),
    }


@pytest.fixture(scope="module")
def fused(payloads, run_fresh) -> dict[str, tuple[dict, dict]]:
    """Each payload's outcome with the defence and without it (see ``CHILD``), by name, from one limited child."""
    rows = [(name, str(path), action) for name, (path, action) in payloads.items()]
    result = run_fresh(sys.executable, "-c", CHILD, HEADROOM, json.dumps(rows), timeout=300,
                       env={"YOLOV8_EFFICIENTREP_HOOK": "0", "PYTHONPATH": str(REPO / "tests")})  # limited.py
    return {name: tuple(outcomes) for name, outcomes in json.loads(result.stdout.strip().splitlines()[-1]).items()}


def test_a_depthwise_block_storing_one_group_would_allocate_its_dense_identity(payloads, fused):
    """Honest depthwise tensors (8192 channels, 600 KB), ``g`` stored as 1: the identity kernel becomes 8192 x 8192."""
    assert payloads["depthwise"][0].stat().st_size < 1 << 20
    defended, undefended = fused["depthwise"]
    refused_in_one_line(defended, StoredAttributeError, "0 (RepVGGBlock)", "stored g = 1", "8192")
    assert tried_to_allocate(undefended) >= 8192 * 8192 * 9 * 4, undefended


def test_ultralytics_own_fuse_refuses_a_block_storing_a_false_input_width(fused):
    """What predict and val call (``model.fuse()``): ``c1`` stored as 20000 beside a 32-channel block's tensors."""
    defended, undefended = fused["wide"]
    refused_in_one_line(defended, StoredAttributeError, "RepVGGBlock", "stored c1 = 20000", "(32)")
    assert tried_to_allocate(undefended) >= 20_000 * 20_000 * 9 * 4, undefended


def test_a_convolution_storing_a_huge_padding_would_blow_up_the_checks_forward_pass(fused):
    defended, undefended = fused["padded"]
    refused_in_one_line(defended, StoredAttributeError, "model.22.cv3.0.0.conv (Conv2d)", "stored padding")
    assert tried_to_allocate(undefended) >= 1 << 32, undefended


@pytest.mark.parametrize("name, error, named", [("stride", LimitError, "stride"),
                                                ("channels", LimitError, "yaml channels")], ids=["stride", "channels"])
def test_the_check_image_is_not_sized_by_a_stored_stride_or_channel_count(fused, name, error, named):
    defended, undefended = fused[name]
    refused_in_one_line(defended, error, named)
    assert tried_to_allocate(undefended) >= 3 << 30, undefended


def test_yaml_channels_must_match_the_first_convolution(detection_model):
    model = copy.deepcopy(detection_model)
    model.yaml["channels"] = 4
    with pytest.raises(StoredAttributeError, match=r"stored yaml channels = 4 disagrees with the input channels of "
                                                   r"its first convolution \(3\)"):
        check_image(model, 64, "best.pt")


def test_weights_that_overflow_when_folded_name_the_block_not_the_fusion_algebra(payloads, fused):
    """Finite in the file: a 3x3 kernel of 1e37 under a BN scale of 3e4. Unchecked, the check blamed the algebra."""
    path = payloads["overflow"][0]
    assert all(bool(torch.isfinite(t).all()) for t in torch.load(path, weights_only=False).state_dict().values())
    defended, undefended = fused["overflow"]
    message = refused_in_one_line(defended, WeightsOverflowError, "model.4.m.2: RepVGGBlock", "overflow float32",
                                  "use the one training wrote")
    assert "algebra" not in message
    assert undefended["outcome"] == "FusionCheckError" and "fusion algebra is wrong" in undefended["message"]


def test_weights_that_overflow_when_run_name_the_first_layer_that_does(detection_model):
    """A kernel of 3e38 folds to a finite one (BN scale 0.01) but its sum over 9 x 32 ReLU outputs overflows when run."""
    model = copy.deepcopy(detection_model)
    model.model[2].m[1].conv1.conv.weight.data.fill_(3e38)
    model.model[2].m[1].conv1.bn.weight.data.fill_(1e-2)
    with pytest.raises(WeightsOverflowError, match=r"unfused model: model\.2\.m\.1\.conv1\.conv \(Conv2d\) computes "
                                                   r"NaN or infinite values on a \(1, 3, 64, 64\) image"):
        fuse_model(model, imgsz=64)


def test_ultralytics_folded_batchnorm_overflow_is_named_too(detection_model):
    """A plain Conv's BN, folded by Ultralytics' own fuse(): the fused weights are checked before the comparison."""
    model = copy.deepcopy(detection_model)
    model.model[-1].cv2[1][0].bn.weight.data.fill_(3e38)
    model.model[-1].cv2[1][0].bn.running_var.data.fill_(1e-4)
    with pytest.raises(WeightsOverflowError, match=r"fused model: tensor model\.22\.cv2\.1\.0\.conv\.\w+ is NaN or "
                                                   r"infinite after folding"):
        fuse_model(model, imgsz=64)


def test_qarepvgg_identity_and_pooling_flags_are_held_to_the_shapes():
    block = QARepVGGBlockV2(16, 32).eval()  # no identity branch: c1 != c2
    block.has_identity = True
    with pytest.raises(StoredAttributeError, match="stored identity branch at c1, c2, stride"):
        fuse_rep_blocks(nn.Sequential(block))
    block = QARepVGGBlockV2(16, 16).eval()
    block.avg = nn.AvgPool2d(11, 1, 5)
    with pytest.raises(StoredAttributeError, match=r"0: QARepVGGBlockV2: its stored avg \(kernel, stride, padding\)"):
        fuse_rep_blocks(nn.Sequential(block))


@pytest.mark.parametrize("build, alter, named", [
    (lambda: BottleRep(8, 8), lambda m: setattr(m, "alpha", nn.Parameter(torch.ones(10**4))), "alpha shape"),
    (lambda: SimSPPF(16, 16), lambda m: setattr(m.m, "kernel_size", 4001), "m (kernel, stride, padding"),
    (lambda: CSPSPPF(16, 16), lambda m: setattr(m.m, "stride", 2), "m (kernel, stride, padding"),
    (lambda: EffiDeHead(80, 16, ch=(16, 32)), lambda m: setattr(m, "nc", 1000), "stored nc = 1000"),
    (lambda: EffiDeHead(80, 0, ch=(16, 32)), lambda m: setattr(m, "nl", 9), "stored nl = 9"),
    (lambda: ConvBNAct(8, 8), lambda m: setattr(m.bn, "num_features", 10**6), "stored num_features = 1000000"),
    (lambda: RepConv(8, 8, bn=True), lambda m: setattr(m, "c1", 10**5), "stored c1 = 100000"),
    (lambda: nn.Upsample(None, 2), lambda m: setattr(m, "scale_factor", 4000.0), "stored scale_factor = 4000.0"),
], ids=["BottleRep alpha", "SimSPPF kernel", "CSPSPPF stride", "EffiDeHead nc", "EffiDeHead nl", "BN features",
        "Ultralytics RepConv c1", "Upsample factor"])
def test_every_layer_kind_holds_its_stored_sizes(build, alter, named):
    module = build().eval()
    check_stored_attributes(nn.Sequential(module))  # as built: consistent
    alter(module)
    with pytest.raises(StoredAttributeError) as refused:
        check_stored_attributes(nn.Sequential(module))
    message = str(refused.value)
    assert message.startswith("0") and named in message and len(message.splitlines()) == 1, message


def test_every_block_as_built_passes_and_stays_fusable(randomize_bn):
    network = randomize_bn(nn.Sequential(RepVGGBlock(8, 16, s=2), RepBlock(16, 16, 2, "QARepVGGBlockV2"),
                                         BepC3(16, 16, 2), SimSPPF(16, 16), CSPSPPF(16, 16),
                                         RepVGGBlock(16, 16, g=4)))
    fused = fuse_model(network, image=torch.rand(1, 8, 32, 32))
    check_stored_attributes(fused)  # the fused form is consistent too
