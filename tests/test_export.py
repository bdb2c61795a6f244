"""Deployment of a trained plugin model, checked in each format's own runtime.

The ONNX export runs through the plain ``yolo`` CLI in a fresh process, as a user types it; the other formats and
options go through the same exporter in this process (``YOLO.export``, what the CLI calls). ONNX Runtime, TorchScript
and OpenVINO outputs are compared with the unfused PyTorch model. Also: fused checkpoints, and TensorRT's message on a
machine without a GPU.
"""

import hashlib
import re
import shutil
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from ultralytics import YOLO

from yolov8_efficientrep import cli
from yolov8_efficientrep.checkpoints import load_checkpoint
from yolov8_efficientrep.fusion import rep_blocks, sample_image
from yolov8_efficientrep.graphs import onnx_unfused_nodes

from helpers import RTOL

FUSED_LOG = re.compile(r"fused (\d+) blocks, max \|diff\| = (\S+) \((\S+) relative")


@pytest.fixture
def model_copy(trained_checkpoint, tmp_path):
    """The trained checkpoint copied into this test's own directory (exports are written next to it)."""
    return shutil.copy(trained_checkpoint, tmp_path / "best.pt")


def unfused(path, *shape):
    """Return the unfused float32 PyTorch model of a checkpoint and its decoded output on the sample image."""
    model, _ = load_checkpoint(path)
    assert rep_blocks(model) and not any(b.forward == b.forward_fuse for b in rep_blocks(model))
    batch, _, height, width = shape or (1, 3, 64, 64)
    image = sample_image(height, width).repeat(batch, 1, 1, 1)
    with torch.no_grad():
        return model, image, model(image)[0].numpy()


def detection_difference(output: np.ndarray, reference: np.ndarray) -> float:
    """Return the larger of the boxes' max |diff| relative to the largest coordinate and the scores' max |diff|.

    Class scores are probabilities in [0, 1]: their difference is taken as it is.
    """
    boxes = np.abs(output[:, :4] - reference[:, :4]).max() / np.abs(reference[:, :4]).max()
    return float(max(boxes, np.abs(output[:, 4:] - reference[:, 4:]).max()))


def check_fusion_log(log: str) -> None:
    """The plugin's log line: all 19 Rep blocks fused before the export, and checked within the tolerance."""
    match = FUSED_LOG.search(log)
    assert match, log[-3000:]
    assert int(match[1]) == 19 and float(match[3]) < RTOL and "tolerance 1e-04" in log


def export(model_path, ultralytics_log: list[str], **options) -> Path:
    """Export in this process as ``yolo export`` does; check the plugin's fusion log line; return the exported path."""
    exported = YOLO(model_path).export(**options)
    check_fusion_log("\n".join(ultralytics_log))
    return Path(exported)


def onnx_convs(path) -> int:
    """Number of Conv nodes in an ONNX graph."""
    import onnx

    return sum(node.op_type == "Conv" for node in onnx.load(str(path)).graph.node)


def run_onnx(path, image: torch.Tensor) -> np.ndarray:
    """Run an ONNX file in ONNX Runtime on CPU; return its first output."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: image.numpy()})[0]


def test_yolo_export_onnx_is_one_conv_per_block_and_matches_unfused_pytorch(run_fresh, model_copy, installed_hook):
    """The stock ``yolo`` script in a fresh process, which gets the plugin from the installed start-up hook and loads
    the trained best.pt anew."""
    result = run_fresh("yolo", "export", f"model={model_copy}", "format=onnx", "imgsz=64")
    log = result.stdout + result.stderr
    check_fusion_log(log)
    onnx_file = Path(re.findall(r"saved as '([^']+)'", log)[-1])  # absolute, like the model path
    assert onnx_unfused_nodes(onnx_file) == []  # no BatchNormalization, no branch Add
    model, image, reference = unfused(model_copy)
    fused = YOLO(model_copy).model.fuse(verbose=False)
    assert onnx_convs(onnx_file) == sum(isinstance(m, torch.nn.Conv2d) for m in fused.modules())  # one per block
    output = run_onnx(onnx_file, image)
    assert output.shape == (1, 4 + 4, 84)  # 4 box coordinates + 4 shape classes, for 8x8 + 4x4 + 2x2 anchors
    difference = detection_difference(output, reference)
    print(f"ONNX Runtime vs unfused PyTorch: max relative |diff| = {difference:.2e}")
    assert difference < RTOL


def test_fp16_onnx_is_fused_in_float32_before_conversion(model_copy, ultralytics_log):
    """quantize=16 on CPU: fusion and its check happen on the float32 model, the FP16 conversion after."""
    onnx_file = export(model_copy, ultralytics_log, format="onnx", imgsz=64, quantize=16)  # checked at 1e-4: float32
    assert onnx_unfused_nodes(onnx_file) == []
    _, image, reference = unfused(model_copy)
    difference = detection_difference(run_onnx(onnx_file, image), reference)
    print(f"FP16 ONNX vs unfused PyTorch (float32): max relative |diff| = {difference:.2e}")
    assert difference < 1e-2


def test_dynamic_simplified_onnx_runs_at_other_sizes_and_batches(model_copy, ultralytics_log):
    onnx_file = export(model_copy, ultralytics_log, format="onnx", imgsz=96, dynamic=True, simplify=True)
    assert onnx_unfused_nodes(onnx_file) == []
    for shape in ((1, 3, 96, 96), (2, 3, 64, 128)):
        _, image, reference = unfused(model_copy, *shape)
        output = run_onnx(onnx_file, image)
        assert output.shape == reference.shape
        difference = detection_difference(output, reference)
        print(f"dynamic simplified ONNX {shape} vs unfused PyTorch: max relative |diff| = {difference:.2e}")
        assert difference < RTOL


def test_onnx_with_nms_gives_the_detections_of_unfused_pytorch(model_copy, ultralytics_log):
    from ultralytics.utils.nms import non_max_suppression

    conf = 0.0005  # a one-epoch model is unsure of everything: keep a few boxes to compare
    onnx_file = export(model_copy, ultralytics_log, format="onnx", imgsz=64, nms=True, conf=conf)
    assert onnx_unfused_nodes(onnx_file) == []
    _, image, reference = unfused(model_copy)
    detections = run_onnx(onnx_file, image)[0]
    detections = detections[detections[:, 4] > 0]  # rows past the last detection are zero
    expected = non_max_suppression(torch.from_numpy(reference), conf_thres=conf, iou_thres=0.7)[0].numpy()
    assert len(detections) == len(expected) > 0
    detections, expected = (d[np.argsort(-d[:, 4], kind="stable")] for d in (detections, expected))
    difference = detection_difference(detections, expected)
    print(f"ONNX with NMS vs unfused PyTorch + NMS ({len(expected)} boxes): max relative |diff| = {difference:.2e}")
    assert difference < RTOL


def test_torchscript_export_matches_unfused_pytorch(model_copy, ultralytics_log):
    scripted = torch.jit.load(str(export(model_copy, ultralytics_log, format="torchscript", imgsz=64)))
    _, image, reference = unfused(model_copy)
    with torch.no_grad():
        output = scripted(image)
    difference = detection_difference(output.numpy(), reference)
    print(f"TorchScript vs unfused PyTorch: max relative |diff| = {difference:.2e}")
    assert difference < RTOL


def test_openvino_export_matches_unfused_pytorch(model_copy, ultralytics_log):
    import openvino  # a test extra

    folder = export(model_copy, ultralytics_log, format="openvino", imgsz=64)
    # f32: OpenVINO's CPU plugin otherwise picks bf16 on CPUs that have it (measured: 1e-3 relative here)
    compiled = openvino.Core().compile_model(str(folder / "best.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    _, image, reference = unfused(model_copy)
    difference = detection_difference(compiled(image.numpy())[0], reference)
    print(f"OpenVINO (CPU, f32) vs unfused PyTorch: max relative |diff| = {difference:.2e}")
    assert difference < RTOL


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_tensorrt_export_on_cpu_stops_with_ultralytics_message(model_copy):
    with pytest.raises(ValueError, match=r"Invalid CUDA 'device=0' requested") as error:
        YOLO(model_copy).export(format="engine", imgsz=64)
    innermost = traceback.extract_tb(error.tb)[-1].filename  # the error is raised by Ultralytics, not the plugin
    assert "yolov8_efficientrep" not in innermost and "ultralytics" in innermost, innermost


def test_fuse_command_writes_a_checkpoint_that_ultralytics_predicts_validates_and_exports(model_copy, shapes_data,
                                                                                        capsys, ultralytics_log):
    digest = hashlib.sha256(model_copy.read_bytes()).hexdigest()
    assert cli.main(["fuse", str(model_copy)]) == 0
    printed = capsys.readouterr().out
    print(printed)
    fused_file = model_copy.with_name("best-fused.pt")
    assert fused_file.is_file() and hashlib.sha256(model_copy.read_bytes()).hexdigest() == digest
    params = [int(p.replace(",", "")) for p in re.search(r"parameters ([\d,]+) -> ([\d,]+)", printed).groups()]
    fused_model, _ = load_checkpoint(fused_file)
    assert params[1] == sum(p.numel() for p in fused_model.parameters()) < params[0]
    assert all(b.forward == b.forward_fuse for b in rep_blocks(fused_model))

    images = shapes_data.parent / "images" / "val"
    predicted = YOLO(fused_file).predict(images, imgsz=64, conf=0.0005, device="cpu", verbose=False)
    assert len(predicted) == len(list(images.glob("*.png"))) and any(len(result.boxes) for result in predicted)
    validated = YOLO(fused_file).val(data=str(shapes_data), imgsz=64, batch=8, plots=False, device="cpu",
                                     project=str(model_copy.parent), name="val")
    assert any(re.match(r"\s+all\s+8\s", line) for line in ultralytics_log) and 0 <= validated.box.map <= 1
    onnx_file = YOLO(fused_file).export(format="onnx", imgsz=64)
    assert any("were fused before export" in line for line in ultralytics_log)
    assert onnx_unfused_nodes(onnx_file) == []
    _, image, reference = unfused(model_copy)
    difference = detection_difference(run_onnx(onnx_file, image), reference)
    print(f"ONNX of the fused checkpoint vs unfused PyTorch: max relative |diff| = {difference:.2e}")
    assert difference < RTOL


def test_fuse_command_never_overwrites(model_copy, capsys):
    from yolov8_efficientrep import fuse_checkpoint

    target = model_copy.with_name("best-fused.pt")
    target.write_bytes(b"mine")
    assert cli.main(["fuse", str(model_copy)]) == 1
    assert "best-fused.pt exists" in capsys.readouterr().err and target.read_bytes() == b"mine"
    with pytest.raises(ValueError, match="refusing to overwrite the source"):
        fuse_checkpoint(model_copy, model_copy, overwrite=True)
    assert fuse_checkpoint(model_copy, overwrite=True).path == target and target.read_bytes() != b"mine"
    with pytest.raises(ValueError, match="already fused"):
        fuse_checkpoint(target, model_copy.with_name("twice.pt"))


def test_yolo_train_from_a_fused_checkpoint_stops_with_a_clear_error(run_fresh, model_copy, shapes_data,
                                                                     installed_hook):
    from yolov8_efficientrep import fuse_checkpoint

    fused_file = fuse_checkpoint(model_copy).path
    result = run_fresh("yolo", "train", f"model={fused_file}", f"data={shapes_data}", "epochs=1", "imgsz=64",
                       f"project={model_copy.parent}", check=False)
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert "is a deploy checkpoint (19 Rep blocks fused" in log, log[-3000:]
    assert f"train from a model YAML or the checkpoint it was fused from ({model_copy})" in log
    error = [line for line in log.splitlines() if "is a deploy checkpoint" in line]
    assert len(error) == 1 and error[0].startswith("yolov8-efficientrep (yolo): error: ") and "Traceback" not in log
    assert not (model_copy.parent / "train").exists()  # refused before Ultralytics made the run's folder
