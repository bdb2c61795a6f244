"""Per-row activations: a plugin row may name its activation, whatever the YAML's ``activation:`` key says."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from ultralytics import YOLO
from ultralytics.nn.modules import Conv

from yolov8_efficientrep import YAMLRowError
from yolov8_efficientrep.activations import resolve_act
from yolov8_efficientrep.fusion import fuse_model

ROWS = [  # one row per plugin block that takes `act`, each naming an activation unlike the YAML's
    [-1, 1, "RepVGGBlock", [32, 3, 2, "silu"]],  # 0
    [-1, 2, "RepBlock", [32, "RepVGGBlock", "relu"]],  # 1
    [-1, 1, "QARepVGGBlock", [64, 3, 2, "nn.SiLU()"]],  # 2: Ultralytics' spelling of the YAML key works too
    [-1, 2, "RepBlock", [64, "BottleRep", "silu"]],  # 3
    [-1, 1, "BottleRep", [64, "RepVGGBlock", True, "relu"]],  # 4
    [-1, 2, "BepC3", [64, 0.5, "RepVGGBlock", "silu"]],  # 5
    [-1, 1, "SimSPPF", [64, 5, "silu"]],  # 6
    [-1, 1, "CSPSPPF", [64, 5, 0.5, "relu"]],  # 7
    [-1, 1, "RepVGGBlock", [64]],  # 8: no act: the YAML's activation
]
EXPECTED = [nn.SiLU, nn.ReLU, nn.SiLU, nn.SiLU, nn.ReLU, nn.SiLU, nn.SiLU, nn.ReLU, nn.Hardswish]


def build(tmp_path: Path, rows: list, activation: str | None = "nn.Hardswish()", name: str = "actsn.yaml"
          ) -> nn.Module:
    """Build a detection model from backbone rows and a Detect head, with the given YAML ``activation:``, if any."""
    spec = {"nc": 2, **({"activation": activation} if activation else {}), "scales": {"n": [1.0, 0.25, 1024]},
            "backbone": rows, "head": [[[len(rows) - 1], 1, "Detect", ["nc"]]]}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return YOLO(path).model


def activations_of(layer: nn.Module) -> set[type[nn.Module]]:
    """Return the activation types of a layer's units (a Rep block's branches have none)."""
    return {type(m.act) for m in layer.modules() if isinstance(getattr(m, "act", None), nn.Module)} - {nn.Identity}


def test_each_row_uses_its_own_activation_and_the_rest_the_yaml_key(tmp_path):
    layers = build(tmp_path, copy.deepcopy(ROWS)).model
    assert [activations_of(layers[i]) for i in range(len(ROWS))] == [{cls} for cls in EXPECTED]
    assert type(layers[-1].cv2[0][0].act) is nn.Hardswish  # Ultralytics' own head follows the key, as before


def test_mixed_activation_model_fuses_and_exports_with_equal_outputs(tmp_path, randomize_bn):
    import onnxruntime

    model = randomize_bn(build(tmp_path, copy.deepcopy(ROWS)))
    image = torch.rand(1, 3, 64, 64)
    fused = fuse_model(model, check=False)
    with torch.no_grad():
        expected, actual = model(image)[0], fused(image)[0]
    assert (actual - expected).abs().max() <= 1e-4 * expected.abs().max()
    path = tmp_path / "mixed.onnx"
    torch.onnx.export(fused, image, path, input_names=["images"], dynamo=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    onnx_out = torch.from_numpy(session.run(None, {"images": image.numpy()})[0])
    assert (onnx_out - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize("row, message", [
    ([-1, 1, "RepVGGBlock", [32, 3, 2, "rleu"]], "unknown activation 'rleu'; use one of relu, silu"),
    ([-1, 2, "RepBlock", [32, "relu"]], "'relu' is an activation, not a block"),
    ([-1, 1, "SimSPPF", [64, 5, "swish"]], "unknown activation 'swish'"),
])
def test_unknown_activation_names_the_row(tmp_path, row, message):
    with pytest.raises(YAMLRowError) as error:
        build(tmp_path, [[-1, 1, "RepVGGBlock", [32, 3, 2]], row], activation=None, name="badactn.yaml")
    text = str(error.value)
    assert "badactn.yaml" in text and "backbone row 1" in text and message in text and "act" in text


def test_resolve_act_spellings():
    assert type(resolve_act("ReLU", "x")) is nn.ReLU and type(resolve_act("nn.SiLU()", "x")) is nn.SiLU
    assert type(resolve_act(False, "x")) is nn.Identity and resolve_act(True, "x") is Conv.default_act


def test_a_yaml_that_fails_leaves_the_default_activation_as_it_was(tmp_path):
    before = Conv.default_act
    with pytest.raises(YAMLRowError):
        build(tmp_path, [[-1, 1, "RepVGGBlock", [32, 3, 2, "rleu"]]], activation="nn.Hardswish()", name="failsn.yaml")
    assert Conv.default_act is before
    assert type(YOLO("yolov8n.yaml").model.model[0].act) is nn.SiLU  # the next model is built as without the failure
