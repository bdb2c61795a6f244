"""INT8 export: fused before calibration, quantized graphs checked, run in their runtimes.

The plugin's ONNX INT8 route runs through the plain ``yolo`` CLI in a fresh process, as a user types it; Ultralytics'
ONNX settings and the OpenVINO INT8 export go through the same exporter in this process (``YOLO.export``), and so do
the stock models, compared with a fresh process without the plugin.

``format=onnx quantize=8`` of a plugin model takes the plugin's ONNX Runtime route (``yolov8_efficientrep.quantize``);
``format=openvino quantize=8`` is Ultralytics' NNCF path, checked. Stock Ultralytics models export exactly as they do
without the plugin.
"""

import re
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from ultralytics import YOLO

from yolov8_efficientrep.checkpoints import load_checkpoint
from yolov8_efficientrep.graphs import onnx_int8_graph, openvino_int8_graph
from yolov8_efficientrep.quantize import ORT_INT8_ROUTE_VARIABLE, ort_int8_route

from helpers import script_function

# INT8 vs the unfused float32 model, on the images the ranges were calibrated on. Every activation is rounded to one of
# 256 steps of its calibrated range, every weight to one of 127 (7-bit, per channel); on this barely trained model,
# whose outputs vary little, that comes to 5e-4 of the box coordinates in ONNX Runtime and 1e-5 in OpenVINO. 2e-2
# leaves room for other data and still fails the defects met while building the route: 8-bit weights whose products
# saturate ONNX Runtime's 16-bit pair sums on CPUs without VNNI (boxes 26% off here through the DFL conv), a wrong
# scale or zero point (off by the whole range).
INT8_TOLERANCE = 2e-2
FUSED_LOG = re.compile(r"fused (\d+) blocks, max \|diff\| = \S+ \((\S+) relative")
CALIBRATION_LOG = "collecting INT8 calibration images"


@pytest.fixture
def model_copy(trained_checkpoint, tmp_path):
    """The trained checkpoint in this test's own directory (the export is written next to it)."""
    return shutil.copy(trained_checkpoint, tmp_path / "best.pt")


def check_fused_before_calibration(log: str) -> None:
    """The plugin fused and checked all 19 Rep blocks before Ultralytics collected calibration images."""
    fused = FUSED_LOG.search(log)
    assert fused and int(fused[1]) == 19 and float(fused[2]) < 1e-4, log[-3000:]
    assert fused.start() < log.index(CALIBRATION_LOG), "fusion must come before calibration"


def yolo_export_int8(run_fresh, model_path, data, fmt: str) -> tuple[Path, str]:
    """Run ``yolo export ... quantize=8`` at 64 px in a fresh process; return the exported path and the log."""
    result = run_fresh("yolo", "export", f"model={model_path}", f"format={fmt}", "quantize=8", f"data={data}",
                       "imgsz=64")
    log = result.stdout + result.stderr
    check_fused_before_calibration(log)
    return Path(re.findall(r"saved as '([^']+)'", log)[-1].rstrip("/")), log  # absolute, like the model path


def export_int8(model_path, data, fmt: str, ultralytics_log: list[str]) -> tuple[Path, str]:
    """``YOLO.export(..., quantize=8)`` at 64 px in this process; return the exported path and the log."""
    path = Path(YOLO(model_path).export(format=fmt, quantize=8, data=str(data), imgsz=64))
    log = "\n".join(ultralytics_log)
    check_fused_before_calibration(log)
    return path, log


def fused_convs(model_path) -> int:
    """Number of convolutions of the fused model: one per fused Rep block and per folded Conv."""
    return sum(isinstance(m, torch.nn.Conv2d) for m in YOLO(model_path).model.fuse(verbose=False).modules())


def calibration_images(data) -> list[torch.Tensor]:
    """The generated validation images (the calibration set), as 1x3x64x64 RGB tensors in [0, 1]."""
    files = sorted((data.parent / "images" / "val").glob("*.png"))[:4]
    return [torch.from_numpy(cv2.imread(str(f))[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
            for f in files]


def int8_difference(run, model_path, images: list[torch.Tensor]) -> float:
    """Largest difference between ``run(image)`` and the unfused float32 model over ``images``.

    Per image: the boxes' max |diff| relative to the largest coordinate, and the class scores' max |diff|.
    """
    model, _ = load_checkpoint(model_path)
    worst = 0.0
    for image in images:
        with torch.no_grad():
            reference = model(image)[0].numpy()
        output = run(image.numpy())
        boxes = np.abs(output[:, :4] - reference[:, :4]).max() / np.abs(reference[:, :4]).max()
        worst = max(worst, float(boxes), float(np.abs(output[:, 4:] - reference[:, 4:]).max()))
    return worst


@pytest.mark.slow
def test_onnx_int8_export_quantizes_every_fused_conv_after_fusing(run_fresh, model_copy, shapes_data, installed_hook,
                                                                  ultralytics_log, monkeypatch):
    import onnxruntime

    plugin = yolo_export_int8(run_fresh, model_copy, shapes_data, "onnx")  # the stock script, through the hook
    (model_copy.parent / "ultralytics-settings").mkdir()  # the export is written next to the checkpoint
    ultralytics_copy = shutil.copy(model_copy, model_copy.parent / "ultralytics-settings" / "best.pt")
    monkeypatch.setenv(ORT_INT8_ROUTE_VARIABLE, "ultralytics")
    ultralytics = export_int8(ultralytics_copy, shapes_data, "onnx", ultralytics_log)
    path, log = plugin
    assert "yolov8-efficientrep's route" in log and "run in float32" not in log
    graph = onnx_int8_graph(path)
    convs = fused_convs(model_copy)
    assert graph.convs == convs and graph.leftovers == []  # one conv per fused block, no BatchNorm, no Rep branch
    assert graph.quantized == graph.runtime_quantized == convs - 1  # QDQ around each, each a QLinearConv ...
    assert graph.runtime_float == ["/model.22/dfl/conv/Conv"]  # ... except the DFL's expectation, kept float
    assert f"{graph.summary()} (the fused model has {convs} convs)" in log

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    difference = int8_difference(lambda x: session.run(None, {"images": x})[0], model_copy,
                                 calibration_images(shapes_data))
    print(f"INT8 ONNX (ONNX Runtime) vs unfused PyTorch: max difference {difference:.2e}")
    assert difference < INT8_TOLERANCE

    # Ultralytics' own settings, on request: int8 activations, which ONNX Runtime's x86 kernels leave mostly float
    path, log = ultralytics
    graph = onnx_int8_graph(path)
    assert "yolov8-efficientrep's route" not in log
    assert graph.quantized == graph.convs > graph.runtime_quantized
    assert f"{graph.quantized - graph.runtime_quantized} quantized convs run in float32" in log


@pytest.mark.slow
def test_openvino_int8_export_quantizes_every_fused_conv_after_fusing(model_copy, shapes_data, ultralytics_log):
    import openvino

    path, log = export_int8(model_copy, shapes_data, "openvino", ultralytics_log)
    xml = next(path.glob("*.xml"))
    graph = openvino_int8_graph(xml)
    convs = fused_convs(model_copy)
    assert graph.convs == convs and graph.leftovers == []
    assert graph.quantized == graph.runtime_quantized == convs - 1  # u8/i8 in OpenVINO's CPU plugin ...
    assert len(graph.runtime_float) == 1 and ".dfl." in graph.runtime_float[0]  # ... but Ultralytics' float DFL
    assert "INT8 best_int8_openvino_model in OpenVINO's CPU plugin" in log

    # f32: the float parts in float32, not the bf16 OpenVINO's CPU plugin picks on CPUs that have it
    compiled = openvino.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    difference = int8_difference(lambda x: compiled(x)[0], model_copy, calibration_images(shapes_data))
    print(f"INT8 OpenVINO (CPU) vs unfused PyTorch: max difference {difference:.2e}")
    assert difference < INT8_TOLERANCE


# Run as a script in a fresh process without the plugin, and its function called in this process, which has it
STOCK_EXPORT = """
import sys
import torch
from ultralytics import YOLO

def export_int8(data):
    for cfg in ("yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml"):
        torch.manual_seed(0)  # the same weights in both processes
        YOLO(cfg).export(format="onnx", quantize=8, imgsz=64, data=data)

if __name__ == "__main__":
    export_int8(sys.argv[1])
    print("plugin loaded:", "yolov8_efficientrep" in sys.modules)
"""


@pytest.mark.slow
def test_stock_models_export_int8_exactly_as_without_the_plugin(run_fresh, tmp_path, shapes_data, ultralytics_log,
                                                                monkeypatch):
    import onnx

    for folder in ("without", "with"):
        (tmp_path / folder).mkdir()  # a model built from a YAML exports into the working directory
    stock = run_fresh(sys.executable, "-c", STOCK_EXPORT, shapes_data, cwd=tmp_path / "without",
                      env={"YOLOV8_EFFICIENTREP_HOOK": "0"})
    assert "plugin loaded: False" in stock.stdout
    monkeypatch.chdir(tmp_path / "with")
    script_function(STOCK_EXPORT, "export_int8")(str(shapes_data))  # the same code in this process, with the plugin
    for log in (stock.stdout + stock.stderr, "\n".join(ultralytics_log)):
        assert "yolov8-efficientrep's route" not in log and "EfficientRep:" not in log  # no route, no INT8 check
    for name in ("yolov8n", "yolo11n", "yolo26n"):
        without, plugin = (onnx.load(str(tmp_path / folder / f"{name}_int8.onnx")) for folder in ("without", "with"))
        assert without.graph.SerializeToString() == plugin.graph.SerializeToString(), name
        assert [p.key for p in without.metadata_props] == [p.key for p in plugin.metadata_props]


@pytest.mark.parametrize("value, plugin_model, expected", [
    (None, True, "plugin"), (None, False, "ultralytics"), ("auto", False, "ultralytics"), ("", True, "plugin"),
    ("plugin", False, "plugin"), ("Ultralytics", True, "ultralytics")])
def test_int8_route_follows_the_environment_variable(monkeypatch, value, plugin_model, expected):
    if value is None:
        monkeypatch.delenv(ORT_INT8_ROUTE_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(ORT_INT8_ROUTE_VARIABLE, value)
    assert ort_int8_route(plugin_model) == expected


def test_int8_route_refuses_an_unknown_value(monkeypatch):
    monkeypatch.setenv(ORT_INT8_ROUTE_VARIABLE, "fast")
    with pytest.raises(ValueError, match="use one of auto, plugin, ultralytics"):
        ort_int8_route(True)
