"""The YOLOv6 family: the new blocks fuse exactly, and every shipped config builds as its task, takes a training step,
fuses with equal outputs and exports to ONNX that ONNX Runtime runs to the same numbers; one config per head type trains
through Ultralytics' trainer. The Rep units' own fusion algebra is in test_blocks.py."""

import copy
import csv
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import yaml
from torch import nn
from ultralytics import YOLO
from ultralytics.data.utils import load_dataset_cache_file
from ultralytics.nn import tasks
from ultralytics.nn.modules import Conv, RepConv

from yolov8_efficientrep import (
    CSPSPPF,
    BepC3,
    BottleRep,
    QARepVGGBlock,
    RepBlock,
    SimCSPSPPF,
    SimSPPF,
    YAMLRowError,
)
from yolov8_efficientrep.configs import scaled_name
from yolov8_efficientrep.fusion import rep_blocks
from yolov8_efficientrep.rows import is_plugin_class
from yolov8_efficientrep.shapes import make_task_dataset

from helpers import REPO, RTOL, relative_difference, shipped_model_yamls

CONFIGS = {  # every model YAML in cfg/: the task Ultralytics must recognise
    "yolov8-efficientrep": "detect",
    "yolov8-efficientrep-relu": "detect",
    "yolov8-reppan": "detect",
    "yolov8-cspbep": "detect",
    "yolov8-qarepvgg": "detect",
    "yolov8-efficientrep-seg": "segment",
    "yolov8-efficientrep-pose": "pose",
    "yolov8-efficientrep-obb": "obb",
    "yolov8-efficientrep-cls": "classify",
    "yolo11-efficientrep": "detect",
    "yolo26-efficientrep": "detect",
    "yolo26-efficientrep-seg": "segment",
    "yolov8-repbifpan": "detect",
    "yolov8-cspbifpan": "detect",
    "yolov8-cspbifpan-silu": "detect",
    "yolov8-cspbep-silu": "detect",
    "yolov6-reppan": "detect",  # the YOLOv6 configs: the rows above them, with YOLOv6's EffiDeHead
    "yolov6-cspbep": "detect",
    "yolov6-cspbep-silu": "detect",
    "yolov6-repbifpan": "detect",
    "yolov6-cspbifpan": "detect",
    "yolov6-cspbifpan-silu": "detect",
}
# Shipped model YAMLs whose builds, training, fusion and exports their own test files prove (YOLOv6's P6, Lite, MBLA
# and Seg models, semantic segmentation and depth): stem -> (task, that file).
COVERED_ELSEWHERE = {
    **{f"yolov{v}-{design}-p6": ("detect", "test_yolov6_p6.py") for v in (8, 6)
       for design in ("repbifpan", "cspbifpan", "cspbifpan-silu")},
    **{f"yolov{v}-lite-{size}": ("detect", "test_yolov6_lite.py") for v in (8, 6) for size in "sml"},
    **{f"yolov{v}-mbla": ("detect", "test_yolov6_mbla.py") for v in (8, 6)},
    **{f"yolov{v}-{design}-seg": ("segment", "test_yolov6_seg.py") for v in (8, 6)
       for design in ("repbifpan", "cspbifpan", "cspbifpan-silu")},
    "yolo26-efficientrep-sem": ("semantic", "test_dense_tasks.py"),
    "yolo26-efficientrep-depth": ("depth", "test_dense_tasks.py"),
}


def first_tensor(output) -> torch.Tensor:
    """Return the first tensor of a model output (heads return tensors nested in tuples outside training)."""
    while isinstance(output, (tuple, list)):
        output = output[0]
    return output


def conv_shapes(module: nn.Module) -> list:
    """Weight shapes and strides of every (transposed) convolution in ``module``, in module order."""
    convs = (m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    return [(tuple(m.weight.shape), m.stride) for m in convs]


# --- the new blocks ---------------------------------------------------------------------------------------------------


def test_qarepvgg_block_has_bn_only_on_the_3x3_branch_and_after_the_sum():
    block = QARepVGGBlock(8, 8)
    assert isinstance(block, RepConv)  # so Ultralytics' own fuse() re-parameterizes it
    assert isinstance(block.conv1, Conv) and isinstance(block.conv1.bn, nn.BatchNorm2d)
    assert type(block.conv2) is nn.Conv2d and block.conv2.kernel_size == (1, 1) and block.conv2.bias is None
    assert isinstance(block.bn, nn.BatchNorm2d) and block.bn.num_features == 8
    assert sum(isinstance(m, nn.BatchNorm2d) for m in block.modules()) == 2


def test_bottlerep_adds_a_learnable_weighted_shortcut_only_when_shapes_match():
    same, wider, fixed = BottleRep(16, 16), BottleRep(16, 32, "QARepVGGBlock"), BottleRep(16, 16, weight=False)
    assert same.add and isinstance(same.alpha, nn.Parameter) and same.alpha.item() == 1.0
    assert not wider.add and wider.alpha == 1.0 and isinstance(wider.cv1, QARepVGGBlock)  # no unused parameter
    assert fixed.add and fixed.alpha == 1.0
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        same.alpha.fill_(0.25)
        assert torch.allclose(same.eval()(x), same.cv2(same.cv1(x)) + 0.25 * x)


@pytest.mark.parametrize("n, units", [(1, 1), (2, 1), (3, 1), (6, 3)])
def test_repblock_of_bottlerep_has_n_over_2_units_like_yolov6(n, units):
    stage = RepBlock(8, 16, n, "BottleRep")
    assert len(stage.m) == units and all(type(u) is BottleRep for u in stage.m)
    assert (stage.m[0].cv1.c1, stage.m[-1].cv2.c2) == (8, 16)
    assert [type(u) for u in RepBlock(8, 8, 2, "QARepVGGBlock").m] == [QARepVGGBlock, QARepVGGBlock]


def test_bepc3_splits_to_c2_times_e_and_stacks_bottlerep_units():
    stage = BepC3(32, 48, n=6, e=2 / 3, block="QARepVGGBlock")
    assert (stage.cv1.conv.out_channels, stage.cv2.conv.out_channels, stage.cv3.conv.in_channels) == (32, 32, 64)
    assert len(stage.m.m) == 3 and all(isinstance(u.cv1, QARepVGGBlock) for u in stage.m.m)
    assert stage(torch.randn(1, 32, 8, 8)).shape == (1, 48, 8, 8)


def test_sppf_variants_keep_shapes_and_their_activations():
    x = torch.randn(1, 32, 10, 10)
    for block in (SimSPPF(32, 24), CSPSPPF(32, 24), SimCSPSPPF(32, 24, 5, 0.25)):
        assert block(x).shape == (1, 24, 10, 10)
    assert all(type(m.act) is nn.ReLU for m in SimSPPF(32, 24).modules() if isinstance(m, Conv))
    assert all(type(m.act) is nn.ReLU for m in SimCSPSPPF(32, 24).modules() if isinstance(m, Conv))
    assert all(m.act is Conv.default_act for m in CSPSPPF(32, 24).modules() if isinstance(m, Conv))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: BepC3(8, 8, 2, True), "expansion e must be a number in (0, 1]"),
        (lambda: BepC3(8, 8, 2, 0.5, "BottleRep"), "unknown block 'BottleRep'; choose one of RepVGGBlock, QARep"),
        (lambda: CSPSPPF(8, 8, 5, 1.5), "expansion e must be a number in (0, 1]"),
        (lambda: BottleRep(8, 8, "RepConv"), "unknown block 'RepConv'"),
        (lambda: RepBlock(8, 8, 2, "Bottle"),
         "choose one of RepVGGBlock, QARepVGGBlock, QARepVGGBlockV2, ConvBNAct, BottleRep"),
        (lambda: QARepVGGBlock(8, 8, 5), "QARepVGGBlock(c1=8, c2=8, k=5, s=1): only a 3x3 kernel"),
    ],
)
def test_new_blocks_reject_bad_arguments_by_name(build, message):
    with pytest.raises((ValueError, TypeError)) as error:
        build()
    assert message in str(error.value)


# --- the new blocks as YAML rows --------------------------------------------------------------------------------------

ROWS = [  # every new row, with what the parser must make of it at depth 0.5, width 0.25
    [-1, 1, "QARepVGGBlock", [64, 3, 2]],  # 0: Conv-like, 16 channels
    [-1, 4, "RepBlock", [64, "BottleRep"]],  # 1: 2 layers -> 1 BottleRep unit
    [-1, 6, "BepC3", [128, 0.5]],  # 2: 32 channels, 3 layers -> 1 unit
    [-1, 1, "BottleRep", [128]],  # 3
    [-1, 2, "RepBlock", [128, "QARepVGGBlock"]],  # 4: 1 layer
    [-1, 1, "SimSPPF", [256, 5]],  # 5: 64 channels
    [-1, 1, "CSPSPPF", [256, 5, 0.5]],  # 6
    [-1, 1, "SimCSPSPPF", [256]],  # 7
]


def build_rows(tmp_path: Path, rows: list, name: str = "rows.yaml", **extra) -> nn.Module:
    """Build a detection model of the given backbone rows and a Detect head from a YAML written to ``tmp_path``."""
    spec = {"nc": 2, "scales": {"n": [0.5, 0.25, 1024]}, **extra, "backbone": rows,
            "head": [[[len(rows) - 1], 1, "Detect", ["nc"]]]}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return YOLO(path).model


def test_new_rows_get_conv_like_channels_and_depth_scaled_repeats(tmp_path):
    layers = build_rows(tmp_path, copy.deepcopy(ROWS), "rowsn.yaml").model
    assert (layers[0].c1, layers[0].c2) == (3, 16) and isinstance(layers[0], QARepVGGBlock)
    assert len(layers[1].m) == 1 and (layers[1].m[0].cv1.c1, layers[1].m[0].cv2.c2) == (16, 16)
    assert layers[2].cv1.conv.in_channels == 16 and layers[2].cv3.conv.out_channels == 32 and len(layers[2].m.m) == 1
    assert (layers[3].cv1.c1, layers[3].cv2.c2) == (32, 32) and layers[3].add
    assert [type(u) for u in layers[4].m] == [QARepVGGBlock]
    assert [layers[i].cv1.conv.in_channels for i in (5, 6, 7)] == [32, 64, 64]
    assert [layers[i].cv2.conv.out_channels for i in (5, 6)] == [64, 32] and layers[7].cv7.conv.out_channels == 64
    assert type(layers[5].cv1.act) is nn.ReLU and type(layers[6].cv1.act) is nn.SiLU  # SimSPPF is ReLU regardless


def test_ultralytics_fuse_reparameterizes_every_new_row_exactly(tmp_path, randomize_bn):
    model = randomize_bn(build_rows(tmp_path, copy.deepcopy(ROWS), "rowsn.yaml", activation="nn.ReLU()"))
    fused_model = copy.deepcopy(model).fuse(verbose=False)
    outputs = {}
    for name, net in (("unfused", model), ("fused", fused_model)):  # every row's own output, through forward hooks
        hooks = [layer.register_forward_hook(lambda _m, _i, out, i=i, name=name: outputs.__setitem__((name, i), out))
                 for i, layer in enumerate(net.model[: len(ROWS)])]
        with torch.no_grad():
            net(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
        for hook in hooks:
            hook.remove()
    for i in range(len(ROWS)):
        difference = relative_difference(outputs["fused", i], outputs["unfused", i])
        print(f"row {i} {ROWS[i][2]}: fused vs unfused max relative |diff| = {difference:.2e}")
        assert difference < RTOL, ROWS[i]
    assert fused_model.is_fused()
    rows = fused_model.model[: len(ROWS)].modules()
    assert not any(isinstance(m, nn.BatchNorm2d) or hasattr(m, "conv1") for m in rows)


@pytest.mark.parametrize(
    "row, message",
    [
        ([-1, 3, "BepC3", [64, True]],
         "BepC3 args are [c2, e=0.5, block=RepVGGBlock|QARepVGGBlock|QARepVGGBlockV2|ConvBNAct, act]"),
        ([-1, 2, "RepBlock", [64, "QARepVGG"]], "unknown block 'QARepVGG'"),
        ([-1, 1, "BottleRep", [64, "BottleRep"]],
         "BottleRep args are [c2, block=RepVGGBlock|QARepVGGBlock|QARepVGGBlockV2|ConvBNAct, weight"),
        ([-1, 1, "SimCSPSPPF", [64, 5, 2.0]], "expansion e must be a number in (0, 1]"),
    ],
)
def test_bad_new_rows_name_the_file_row_and_the_args(tmp_path, row, message):
    with pytest.raises(YAMLRowError) as error:
        build_rows(tmp_path, [[-1, 1, "Conv", [16, 3, 2]], row], "broken.yaml")
    text = str(error.value)
    assert "broken.yaml" in text and f"backbone row 1 {row}" in text and message in text


# --- the shipped configs ----------------------------------------------------------------------------------------------


def test_every_shipped_model_config_is_covered_and_says_what_it_reproduces():
    models = {path.stem for path in shipped_model_yamls()}
    assert models == set(CONFIGS) | set(COVERED_ELSEWHERE)
    assert all((REPO / "tests" / test_file).is_file() for _, test_file in COVERED_ELSEWHERE.values())
    for stem in models:
        text = (REPO / "cfg" / f"{stem}.yaml").read_text()
        assert text.startswith(f"# {stem}:") and "\n# Reproduces: " in text
        scales = yaml.safe_load(text).get("scales")
        if "-lite-" in stem:  # one file per released size: Lite's channel rounding is not a width scale
            assert scales is None
        else:
            assert list(scales) == list("nsmlx")


def yolov6_shapes(width: float, depth: float, e: float | None = None, neck: bool = True) -> list:
    """Conv shapes of YOLOv6 v1/v2's backbone and neck, from YOLOv6's own config numbers and scaling rules.

    ``e=None``: EfficientRep + Rep-PAN (YOLOv6-N/S); otherwise CSPBep + CSP Rep-PAN with BepC3 ratio ``e`` (YOLOv6-M/L).
    Channels round up to multiples of 8; repeats are max(round(n * depth), 1) for n > 1; a RepVGG layer is a 3x3 and
    a 1x1 conv; a BepC3 is three 1x1 convs then n // 2 BottleRep units of two RepVGG layers; SimSPPF is two 1x1 convs.
    """
    b = [math.ceil(c * width / 8) * 8 for c in (64, 128, 256, 512, 1024)]
    c = [math.ceil(ch * width / 8) * 8 for ch in (256, 128, 128, 256, 256, 512)]  # neck channels, channels_list[5:]
    rb = [max(round(n * depth), 1) if n > 1 else n for n in (1, 6, 12, 18, 6)]
    rn = max(round(12 * depth), 1)

    def conv(c1, c2, k, s=1):
        return [((c2, c1, k, k), (s, s))]

    def repvgg(c1, c2, s=1):
        return conv(c1, c2, 3, s) + conv(c1, c2, 1, s)

    def stage(c1, c2, n):
        if e is None:  # RepBlock
            return repvgg(c1, c2) + [shape for _ in range(n - 1) for shape in repvgg(c2, c2)]
        hidden = int(c2 * e)  # BepC3
        units = [shape for _ in range(max(n // 2, 1)) for shape in repvgg(hidden, hidden) * 2]
        return conv(c1, hidden, 1) + conv(c1, hidden, 1) + conv(2 * hidden, c2, 1) + units

    shapes = repvgg(3, b[0], 2)
    for c1, c2, n in zip(b, b[1:], rb[1:]):
        shapes += repvgg(c1, c2, 2) + stage(c2, c2, n)
    shapes += conv(b[4], b[4] // 2, 1) + conv(b[4] // 2 * 4, b[4], 1)  # SimSPPF
    if not neck:
        return shapes
    transpose = [((c[0], c[0], 2, 2), (2, 2))], [((c[1], c[1], 2, 2), (2, 2))]
    shapes += conv(b[4], c[0], 1) + transpose[0] + stage(b[3] + c[0], c[0], rn)  # reduce_layer0, upsample0, Rep_p4
    shapes += conv(c[0], c[1], 1) + transpose[1] + stage(b[2] + c[1], c[1], rn)  # reduce_layer1, upsample1, Rep_p3
    shapes += conv(c[1], c[2], 3, 2) + stage(c[1] + c[2], c[3], rn)  # downsample2, Rep_n3
    return shapes + conv(c[3], c[4], 3, 2) + stage(c[0] + c[4], c[5], rn)  # downsample1, Rep_n4


@pytest.mark.parametrize("cfg, rows, expected", [
    ("yolov8n-reppan.yaml", 24, yolov6_shapes(0.25, 0.33)),  # YOLOv6-N
    ("yolov8s-reppan.yaml", 24, yolov6_shapes(0.50, 0.33)),  # YOLOv6-S
    ("yolov8n-qarepvgg.yaml", 24, yolov6_shapes(0.25, 0.33)),  # YOLOv6-N, QARepVGG layers
    ("yolov8m-cspbep.yaml", 24, yolov6_shapes(0.75, 0.60, e=2 / 3)),  # YOLOv6-M
    ("yolov8n-efficientrep-seg.yaml", 10, yolov6_shapes(0.25, 0.33, neck=False)),  # EfficientRep of YOLOv6-N
    ("yolov8n-efficientrep-pose.yaml", 10, yolov6_shapes(0.25, 0.33, neck=False)),
    ("yolov8n-efficientrep-obb.yaml", 10, yolov6_shapes(0.25, 0.33, neck=False)),
    ("yolov8n-efficientrep-cls.yaml", 9, yolov6_shapes(0.25, 0.33, neck=False)[:-2]),  # no SPPF before Classify
])
def test_config_reproduces_yolov6_layer_shapes(cfg, rows, expected):
    layers, _ = tasks.parse_model(tasks.yaml_model_load(cfg), ch=3, verbose=False)  # the layers YOLO(cfg) builds
    assert conv_shapes(layers[:rows]) == expected


def output_tensors(output) -> list[torch.Tensor]:
    """Every tensor of a model output, however nested (training outputs differ by head)."""
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in output_tensors(item)]
    return [output] if isinstance(output, torch.Tensor) else []


# One config per head type trains through Ultralytics' trainer and exports with `yolo`'s exporter below; the others take
# one training step and export in-process. YOLOv8's Detect head trains with yolov8-efficientrep in conftest.py (the
# suite's shared checkpoint, exported in test_export.py); the yolov6-* configs are the yolov8-* rows with EffiDeHead
# last, which test_yolov6_head.py trains through `yolo train` and runs in ONNX Runtime.
TRAINED = ("yolo26-efficientrep", "yolov8-efficientrep-seg", "yolo26-efficientrep-seg", "yolov8-efficientrep-pose",
           "yolov8-efficientrep-obb", "yolov8-efficientrep-cls")


def run_onnx(onnx_file: str | Path, x: np.ndarray) -> np.ndarray:
    """The first output of an ONNX file in ONNX Runtime on CPU."""
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("stem", list(CONFIGS))
def test_config_builds_as_its_task_trains_a_step_and_ultralytics_fuse_keeps_its_outputs(
        stem, scale_n_model, randomize_bn, tmp_path, monkeypatch):
    yolo = scale_n_model(stem)  # the scale letter picks scale n of the shipped file
    assert yolo.task == CONFIGS[stem] and yolo.model.yaml["scale"] == "n"
    model = copy.deepcopy(yolo.model).train()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    loss = sum(t.float().square().mean() for t in output_tensors(model(x)))  # one training step's forward, backward
    loss.backward()
    # every branch of every plugin layer before the head learns (EffiDeHead starts with zero prediction weights, so
    # its stems get a zero gradient on the first step, as in YOLOv6)
    layers = {id(p): p for m in model.model[:-1].modules() if is_plugin_class(type(m)) for p in m.parameters()}
    assert math.isfinite(loss.item()) and layers
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in layers.values())

    model = randomize_bn(model)
    with torch.no_grad():
        unfused = first_tensor(model(x))
        fused_model = copy.deepcopy(model).fuse(verbose=False)
        fused = first_tensor(fused_model(x))
        state = copy.deepcopy(fused_model.state_dict())
        for block in rep_blocks(fused_model):  # fusing again, directly or through Ultralytics, is a no-op
            block.fuse_convs()
        fused_model.fuse(verbose=False)
        assert torch.equal(first_tensor(fused_model(x)), fused)
    difference = relative_difference(fused, unfused)
    print(f"{scaled_name(stem, 'n')} fused vs unfused: max relative |diff| = {difference:.2e}")
    assert difference < RTOL
    assert not any(isinstance(m, nn.BatchNorm2d) or hasattr(m, "conv1") for m in fused_model.modules())
    assert all(torch.equal(state[k], v) for k, v in fused_model.state_dict().items())

    if stem in TRAINED or stem.startswith("yolov6-") or stem == "yolov8-efficientrep":
        return  # exported by Ultralytics after training, below or in the files named above TRAINED
    monkeypatch.chdir(tmp_path)  # a model built from a YAML exports into the working directory
    exported = copy.deepcopy(yolo)
    exported.model = model  # with its random BN statistics: fusion has work to do
    onnx_file = exported.export(format="onnx", imgsz=64, device="cpu", simplify=False)
    image = x[:1].numpy()
    difference = relative_difference(run_onnx(onnx_file, image), first_tensor(model(x[:1])).detach().numpy())
    print(f"{scaled_name(stem, 'n')} ONNX Runtime vs unfused PyTorch: max relative |diff| = {difference:.2e}")
    assert difference < RTOL
    assert onnx_convs(onnx_file) == sum(isinstance(m, nn.Conv2d) for m in fused_model.modules())


def onnx_convs(onnx_file: str | Path) -> int:
    """Conv nodes in an ONNX graph; the graph has no BatchNormalization node (asserted)."""
    graph = onnx.load(str(onnx_file)).graph
    assert not any(node.op_type == "BatchNormalization" for node in graph.node)
    return sum(node.op_type == "Conv" for node in graph.node)


@pytest.fixture(scope="session")
def task_data(tmp_path_factory):
    """Return a function giving the tiny generated data set of a task (4 train images: one batch; made once)."""
    made = {}

    def data(task: str) -> Path:
        if task not in made:
            train, val = (8, 4) if task == "classify" else (4, 2)  # crops need a few images to hold every class
            made[task] = make_task_dataset(tmp_path_factory.mktemp(task), task, train=train, val=val, imgsz=64)
        return made[task]

    return data


@pytest.mark.slow
@pytest.mark.parametrize("stem", TRAINED)
def test_config_trains_one_batch_and_exports_to_onnx_that_onnxruntime_agrees_with(stem, task_data, tmp_path):
    task = CONFIGS[stem]
    data = task_data(task)
    model = YOLO(REPO / "cfg" / scaled_name(stem, "n"))
    model.train(data=str(data), epochs=1, imgsz=64, batch=32, workers=0, device="cpu", plots=False, val=False,
                project=str(tmp_path), name="run", exist_ok=True, seed=0, deterministic=True)
    run = tmp_path / "run"
    rows = list(csv.DictReader((run / "results.csv").open()))
    losses = {k.strip(): float(v) for k, v in rows[0].items() if "loss" in k and "val" not in k}
    assert losses and all(math.isfinite(v) for v in losses.values()) and sum(losses.values()) > 0, losses
    if task != "classify":  # Ultralytics checked every generated label and kept it
        labels = load_dataset_cache_file(Path(data).parent / "labels" / "train.cache")
        assert labels["results"][3] == 0 and labels["results"][0] == 4  # corrupt, found

    best = YOLO(run / "weights" / "best.pt")
    assert best.task == task
    onnx_file = best.export(format="onnx", imgsz=64, device="cpu")
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    exported = run_onnx(onnx_file, x)
    trained = YOLO(run / "weights" / "best.pt").model.float().eval()  # saved in training form: Rep blocks' branches
    assert rep_blocks(trained) and all(hasattr(b, "conv1") for b in rep_blocks(trained))
    assert any(isinstance(m, nn.BatchNorm2d) for m in trained.modules())  # and BNs
    with torch.no_grad():
        expected = first_tensor(trained(torch.from_numpy(x))).numpy()
    assert exported.shape == expected.shape
    difference = relative_difference(exported, expected)
    print(f"{scaled_name(stem, 'n')} ONNX Runtime vs the trained PyTorch model: max relative |diff| = {difference:.2e}")
    assert difference < RTOL
    fused_model = trained.fuse(verbose=False)  # exported re-parameterized: one Conv node per conv of the fused model
    assert onnx_convs(onnx_file) == sum(isinstance(m, nn.Conv2d) for m in fused_model.modules())
