"""Edge formats, each in its own runtime: a trained plugin checkpoint exported, fused, run, and compared with PyTorch.

For NCNN, MNN, LiteRT and ExecuTorch: ``YOLO(best.pt).export(format=...)`` at 64 px logs the plugin's passed fusion
check; the exported graph (read with ``benchmarks/lib/format_graphs.py``, as the deployment benchmark reads it) holds
the fused model's conv count and no BatchNorm; Ultralytics' backend for the format runs it on the generated
validation images and its raw outputs and its detections after NMS match the fused PyTorch model's. A format whose
runtime is not installed is skipped with the extra to install (``pip install -e ".[formats]"``).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from lib import format_checks, format_graphs  # noqa: E402  (benchmarks/lib, the deployment benchmark's readers)


IMGSZ = 64
# format -> (modules its export and runtime need, largest raw relative difference from the fused PyTorch model).
# NCNN runs with its defaults, as Ultralytics' backend does: half-precision storage, and half-precision arithmetic on
# CPUs with AVX512-FP16 or ARMv8.2 (docs/deployment.md: NCNN's precision), hence its looser bound.
FORMATS = {
    "ncnn": (("ncnn", "pnnx"), 2e-2),
    "mnn": (("MNN", "aliyun"), 1e-3),  # aliyun: pip install --no-deps aliyun-log-python-sdk (setup.cfg)
    "litert": (("litert_torch", "ai_edge_litert"), 1e-4),
    "executorch": (("executorch",), 1e-4),
}


def missing(fmt: str) -> list[str]:
    """The modules of a format that do not import here."""
    return [name for name in FORMATS[fmt][0] if importlib.util.find_spec(name) is None]


@pytest.fixture(scope="module")
def reference(trained_checkpoint):
    """The trained checkpoint's fused float32 PyTorch model and its conv count."""
    from ultralytics import YOLO

    from yolov8_efficientrep import fuse_model

    model = fuse_model(YOLO(str(trained_checkpoint)).model.float().eval(), inplace=False)
    return model, format_graphs.fused_conv_count(model)


@pytest.mark.slow  # exports through pnnx, MNNConvert, litert-torch or ExecuTorch: 9-71 s each on 2 cores
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_format_exports_fused_and_matches_pytorch(fmt, trained_checkpoint, shapes_data, reference, tmp_path,
                                                  ultralytics_log):
    if missing(fmt):
        how = " and ".join(step for step, needed in (("pip install -e '.[formats]'", set(missing(fmt)) - {"aliyun"}),
                                                     ("pip install --no-deps aliyun-log-python-sdk",
                                                      "aliyun" in missing(fmt))) if needed)
        pytest.skip(f"{fmt}: {', '.join(missing(fmt))} not installed ({how})")
    from ultralytics import YOLO
    from ultralytics.nn.autobackend import AutoBackend

    model, convs = reference
    checkpoint = shutil.copy(trained_checkpoint, tmp_path / "best.pt")
    path = Path(YOLO(checkpoint).export(format=fmt, imgsz=IMGSZ, batch=1))
    assert any("EfficientRep:" in line and "fused 19 blocks" in line and "within the relative tolerance" in line
               for line in ultralytics_log), f"{fmt}: no passed fusion check in the export log"

    graph = format_graphs.read(fmt, path)
    assert (graph.convs, graph.norms) == (convs, 0), f"{fmt} graph {graph.source}: {graph}, fused model {convs} convs"

    images = format_checks.validation_images(shapes_data.parent, 8)
    batch = format_checks.image_batch(images)
    backend = AutoBackend(str(path), device=torch.device("cpu"))
    with torch.inference_mode():
        ref = [format_checks.first_output(model(batch[i:i + 1])) for i in range(len(batch))]
        out = [format_checks.first_output(backend(batch[i:i + 1])) for i in range(len(batch))]
    raw = format_checks.raw_difference(ref, out)
    assert raw.worst_rel < FORMATS[fmt][1], f"{fmt} raw outputs differ from PyTorch's: {raw}"

    # detections after NMS: Ultralytics' predictor on both; Ultralytics' validation threshold, where the one-epoch
    # model finds boxes
    predict = {"imgsz": IMGSZ, "conf": 0.001, "verbose": False, "device": "cpu"}
    theirs = YOLO(checkpoint).predict([str(p) for p in images], **predict)
    mine = YOLO(str(path), task="detect").predict([str(p) for p in images], **predict)
    detections = format_checks.detection_difference(theirs, mine, conf=predict["conf"])
    assert detections.boxes > 0, "PyTorch found no box to compare"
    assert detections.matches, f"{fmt} detections differ from PyTorch's: {detections}"


def test_fusion_check_follows_the_edge_tpu_head_decoder(trained_checkpoint):
    """``format=edgetpu`` of a plugin model: its fusion check must compare like with like (needs no TensorFlow)."""
    import copy

    from ultralytics import YOLO
    from ultralytics.nn.modules import Detect
    from ultralytics.utils.export.tensorflow import tf_wrapper

    from yolov8_efficientrep.fusion import check_fusion, fuse_rep_blocks, sample_image

    source = YOLO(str(trained_checkpoint)).model.float().eval()
    model = copy.deepcopy(source).fuse(verbose=False)
    fuse_rep_blocks(model)
    for module in model.modules():  # as Ultralytics' exporter configures its copy for format=edgetpu
        if isinstance(module, Detect):
            module.export, module.format = True, "edgetpu"
    check_fusion(tf_wrapper(model), source, sample_image(IMGSZ, IMGSZ), what="export model")


def test_deployment_report_has_one_row_per_format(tmp_path):
    """The committed measurements render into the benchmark's report: 22 format rows of 9 cells, escaped errors."""
    import json
    import subprocess

    from lib.formats import FORMATS

    results = BENCHMARKS / "results" / "RESULTS_FORMATS-xeon-amx.json"
    shutil.copy(results, tmp_path / "formats.json")
    subprocess.run([sys.executable, str(BENCHMARKS / "deployment_formats.py"), "--report-only", "--out",
                    str(tmp_path / "formats.md")], check=True, capture_output=True, timeout=120)
    report = (tmp_path / "formats.md").read_text()
    section = report.split("## Formats")[1].split("## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line.split("|")[1]]
    assert [row.split("|")[1].split("`")[1] for row in rows] == [f.arg for f in FORMATS]
    assert all(len(row.replace("\\|", "").strip("|").split("|")) == 9 for row in rows)
    assert len(json.loads(results.read_text())["formats"]) == len(FORMATS) == 22
