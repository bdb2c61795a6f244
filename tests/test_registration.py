"""Plugin rows in Ultralytics' parser: channels, scaling, repeats, errors; Ultralytics' own models unchanged."""

import inspect
import json
import math
import os
import re
import subprocess
import sys

import pytest
import yaml
from torch import nn
from ultralytics import YOLO
from ultralytics.nn import tasks
from ultralytics.nn.modules import Conv, RepConv

import yolov8_efficientrep
from yolov8_efficientrep import RepBlock, RepVGGBlock, YAMLRowError
from yolov8_efficientrep.rows import CONV, REPEAT, ROWS
from yolov8_efficientrep.versions import SUPPORTED_ULTRALYTICS

from helpers import REPO

CFG = REPO / "cfg" / "yolov8-efficientrep.yaml"
SCALES = yaml.safe_load(CFG.read_text())["scales"]


def build(spec: dict, tmp_path, name: str = "model.yaml") -> nn.Module:
    """Build a detection model from a YAML dict written to ``tmp_path / name``."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return YOLO(path).model


def tiny_spec(backbone: list, **extra) -> dict:
    """A minimal detector: the given backbone rows, then Detect on the last row."""
    n = len(backbone)
    return {"nc": 2, **extra, "backbone": backbone, "head": [[[n - 1], 1, "Detect", ["nc"]]]}


@pytest.mark.parametrize("scale", list(SCALES))
def test_every_scale_builds_with_scaled_channels_and_repeats(scale):
    depth, width, max_channels = SCALES[scale]
    model = YOLO(f"yolov8{scale}-efficientrep.yaml", verbose=False).model  # bundled, found from any directory
    rows = yaml.safe_load(CFG.read_text())["backbone"]
    previous = 3
    for layer, (_, repeats, module, args) in zip(model.model, rows):
        channels = math.ceil(min(args[0], max_channels) * width / 8) * 8
        if module == "RepVGGBlock":
            assert isinstance(layer, RepVGGBlock) and (layer.c1, layer.c2) == (previous, channels)
        elif module == "RepBlock":
            assert isinstance(layer, RepBlock)
            assert len(layer.m) == max(round(repeats * depth), 1)
            assert (layer.m[0].c1, layer.m[-1].c2) == (previous, channels)
        previous = channels
    x = next(model.parameters()).new_zeros(1, 3, 64, 64)
    model.eval()(x)  # the head accepts what the backbone produces


def yolov6n_efficientrep_shapes() -> list:
    """Conv weight shapes and strides of YOLOv6-N's EfficientRep backbone, from YOLOv6's own config and rules.

    YOLOv6-N: channels [64, 128, 256, 512, 1024], repeats [1, 6, 12, 18, 6], depth 0.33, width 0.25; channels
    round up to multiples of 8, repeats are max(round(n * depth), 1) for n > 1. Every RepVGGBlock has a 3x3 and a 1x1
    conv; SimSPPF has two 1x1 convs (c -> c/2, 2c -> c).
    """
    channels = [math.ceil(c * 0.25 / 8) * 8 for c in (64, 128, 256, 512, 1024)]
    repeats = [max(round(n * 0.33), 1) if n > 1 else n for n in (1, 6, 12, 18, 6)]

    def repvgg(c1, c2, s):
        return [((c2, c1, 3, 3), (s, s)), ((c2, c1, 1, 1), (s, s))]

    shapes = repvgg(3, channels[0], 2)
    for c1, c2, n in zip(channels, channels[1:], repeats[1:]):
        shapes += repvgg(c1, c2, 2)
        for _ in range(n):
            shapes += repvgg(c2, c2, 1)
    c = channels[-1]
    return shapes + [((c // 2, c, 1, 1), (1, 1)), ((c, 2 * c, 1, 1), (1, 1))]


def test_scale_n_backbone_has_yolov6n_efficientrep_shapes():
    backbone = YOLO(REPO / "cfg" / "yolov8n-efficientrep.yaml").model.model[:10]
    convs = [(tuple(m.weight.shape), m.stride) for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    assert convs == yolov6n_efficientrep_shapes()
    in_stages = {id(u) for stage in backbone if isinstance(stage, RepBlock) for u in stage.m}
    assert len(in_stages) == 2 + 4 + 6 + 2
    for unit in (m for m in backbone.modules() if isinstance(m, RepVGGBlock)):  # identity iff stride 1, c1 == c2
        assert (unit.bn is not None) == (id(unit) in in_stages)
    assert all(type(u.act) is nn.ReLU for u in backbone.modules() if isinstance(u, RepVGGBlock))
    assert type(backbone[9].cv1.act) is type(backbone[9].cv2.act) is nn.ReLU  # SPPF with ReLU: YOLOv6's SimSPPF


@pytest.mark.slow
def test_every_builtin_yaml_builds_as_without_the_plugin(tmp_path):
    """Each Ultralytics model YAML, in one fresh interpreter before and after importing the plugin: the same task,
    layers and parameters; five built for real, the same weights too (builtin_models.py)."""
    out = tmp_path / "builtin.json"
    subprocess.run([sys.executable, str(REPO / "tests" / "builtin_models.py"), str(out)], check=True,
                   capture_output=True, env=os.environ)  # the start-up hook off (conftest.py)
    result = json.loads(out.read_text())
    assert result["registered"] and result["with"] == result["without"]
    layers = result["without"]["layers"]
    assert len(layers) >= 50 and not [name for name, built in layers.items() if isinstance(built, str)]  # all build
    tasks = {name: built[0] for name, built in result["without"]["built"].items()}
    assert tasks == {"yolov8n.yaml": "detect", "yolo11n.yaml": "detect", "yolo26n.yaml": "detect",
                     "yolo26n-sem.yaml": "semantic", "yolo26n-depth.yaml": "depth"}


def test_repconv_and_repvgg_rows_get_conv_channel_handling(tmp_path):
    spec = tiny_spec(
        [[-1, 1, "RepConv", [64, 3, 2]], [-1, 1, "RepVGGBlock", [2048, 3, 2]], [-1, 2, "RepBlock", [128]]],
        scales={"n": [0.5, 0.25, 1024]},
    )
    rep_conv, repvgg, stage = build(spec, tmp_path, "tinyn.yaml").model[:3]
    assert type(rep_conv) is RepConv and (rep_conv.c1, rep_conv.c2) == (3, 16)
    assert (repvgg.c1, repvgg.c2) == (16, 256)  # min(2048, max_channels 1024) * 0.25
    assert len(stage.m) == 1 and (stage.m[0].c1, stage.m[0].c2) == (256, 32)  # round(2 * 0.5) repeats


@pytest.mark.parametrize("activation, expected", [(None, nn.SiLU), ("nn.ReLU()", nn.ReLU), ("nn.LeakyReLU(0.1)", nn.LeakyReLU)])
def test_repvgg_activation_follows_the_yaml_activation_key(tmp_path, activation, expected):
    extra = {"activation": activation} if activation else {}
    model = build(tiny_spec([[-1, 1, "RepVGGBlock", [16, 3, 2]], [-1, 2, "RepBlock", [16]]], **extra), tmp_path)
    units = [m for m in model.modules() if isinstance(m, RepVGGBlock)]
    assert len(units) == 3 and all(type(u.act) is expected for u in units)
    assert type(Conv.default_act) is nn.SiLU  # parse_model restores the process-wide default


def test_blog_style_rows_copied_from_c2f_lines_build(tmp_path):
    rows = [[-1, 1, "RepVGGBlock", [64, 3, 2]], [-1, 3, "RepBlock", [64, True]], [-1, 1, "RepBlock", [64, False]]]
    model = build(tiny_spec(rows), tmp_path)
    assert [len(m.m) for m in model.model[1:3]] == [3, 1]


@pytest.mark.parametrize(
    "row, message",
    [
        ([-1, 1, "RepVGGBlock", [64, 5, 2]], "only a 3x3 kernel"),
        ([-1, 1, "RepVGGBlock", [64, 3, 3]], "stride must be 1 or 2"),
        ([-1, 1, "RepVGGBlock", []], "args is empty; RepVGGBlock needs at least c2"),
        ([-1, 2, "RepBlock", [64, "RepVGG"]], "unknown block 'RepVGG'"),
        ([-1, 2, "RepBlock", [64, "RepVGGBlock", 0.5]], "act must be an activation name"),
        ([-1, 2, "RepBlock", [64, "RepVGGBlock", "relu", 1]], "positional argument"),
    ],
)
def test_bad_plugin_rows_name_the_file_row_and_fix(tmp_path, row, message):
    spec = tiny_spec([[-1, 1, "Conv", [16, 3, 2]], row])
    with pytest.raises(YAMLRowError) as error:
        build(spec, tmp_path, "broken.yaml")
    text = str(error.value)
    assert "broken.yaml" in text and f"backbone row 1 {row}" in text and message in text
    usage = {"RepVGGBlock": "[c2, k=3, s=1, act]",
             "RepBlock": "[c2, block=RepVGGBlock|QARepVGGBlock|QARepVGGBlockV2|ConvBNAct|BottleRep, act]"}
    assert f"{row[2]} args are {usage[row[2]]}" in text


def test_register_is_idempotent():
    installed = tasks.parse_model
    yolov8_efficientrep.register()
    yolov8_efficientrep.register()
    assert tasks.parse_model is installed
    assert tasks.RepVGGBlock is RepVGGBlock and tasks.RepBlock is RepBlock


def test_scale_letter_picks_the_scale_from_a_relative_path(monkeypatch):
    monkeypatch.chdir(REPO)
    n = YOLO("cfg/yolov8n-efficientrep.yaml").model
    s = YOLO("cfg/yolov8s-efficientrep.yaml").model
    assert n.model[0].c2 == 16 and s.model[0].c2 == 32


def test_unsupported_ultralytics_version_fails_at_import_with_range():
    code = "import ultralytics; ultralytics.__version__ = '8.0.0'; import yolov8_efficientrep"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "ultralytics 8.0.0" in result.stderr
    assert SUPPORTED_ULTRALYTICS in result.stderr


def documented(args: str) -> list[tuple[str, str | None]]:
    """A row's args as its usage line writes them (``[c2, k=3, s=1, act]``): ``(name, default or None)`` each."""
    items = re.sub(r"\s*\(.*?\)", "", args).strip("[]").split(", ")  # without remarks in brackets
    return [(item.partition("=")[0], item.partition("=")[2] or None) for item in items]


def test_every_row_documents_the_arguments_its_class_takes_in_order_with_their_defaults():
    """The usage line a failing row prints (row_errors) names the class's own parameters, as the YAML row passes them:
    after c1 (Conv-like and repeat rows) and with the repeat count n taken out (repeat rows)."""
    assert len({row.name for row in ROWS}) == len(ROWS)
    for row in ROWS:
        parameters = {name: parameter for name, parameter in inspect.signature(row.cls).parameters.items()
                      if parameter.kind is parameter.POSITIONAL_OR_KEYWORD}
        passed = [name for name in parameters if not (name == "c1" and row.kind in (CONV, REPEAT))
                  and not (name == "n" and row.kind == REPEAT)]
        args = documented(row.args)
        assert [name for name, _ in args] == passed[:len(args)], row
        for name, default in args:
            if default is not None:  # "block=RepVGGBlock|QARepVGGBlock|...": the first choice is the default
                assert default.split("|")[0] == str(parameters[name].default), (row, name)
