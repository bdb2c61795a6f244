"""Quantization-aware training (``quantize=8``) trains plugin models fused: the INT8 graph is the fused network.

Real Ultralytics QAT (NVIDIA ModelOpt, on CPU), real training on generated data, exports run in ONNX Runtime and
OpenVINO. The QAT run trains its first epoch in this process; one fresh process then resumes it, exports its best.pt
and reloads and predicts with it, through the CLI's entry point, under Ultralytics' restricted loader (the float
model's export, for comparison, runs in this one). The QAT starts from the session's one-epoch checkpoint: its
accuracy says nothing (the benchmarks measure that); the graphs and the round trips are what is checked.
"""

from __future__ import annotations

import collections
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from ultralytics import YOLO

from helpers import script_function, ultralytics_messages

pytestmark = [pytest.mark.slow,  # every test trains; ModelOpt is imported when one does (seconds), not at collection
              pytest.mark.skipif(importlib.util.find_spec("modelopt") is None,
                                 reason="QAT needs NVIDIA ModelOpt: pip install -e '.[qat]'")]

IMGSZ = 64
RESUME_EXPORT_RELOAD = """
import sys
from ultralytics import YOLO
from ultralytics.cfg import entrypoint
from ultralytics.utils import ASSETS
from yolov8_efficientrep.fusion import fused_rep_blocks

last, best, imgsz = sys.argv[1:]
entrypoint(f"yolo train resume model={last}")  # what the yolo console script runs for these arguments
entrypoint(f"yolo export model={best} format=onnx imgsz={imgsz} device=cpu")
model = YOLO(best)
print("fused", *fused_rep_blocks(model.model))
model.predict(ASSETS / "bus.jpg", imgsz=imgsz, device="cpu", verbose=False)
"""
# Run as a script in a fresh process without the plugin, and its function called in this process, which has it
STOCK_QAT = """
import sys
from ultralytics import YOLO

def qat_onnx(data, project):
    model = YOLO("yolov8n.yaml")
    model.train(data=data, epochs=1, imgsz=64, batch=8, workers=0, device="cpu", plots=False, quantize=8,
                project=project, name="run", seed=0, deterministic=True)
    return model.export(format="onnx", imgsz=64, device="cpu")

if __name__ == "__main__":
    print(qat_onnx(*sys.argv[1:]))
"""


class Stop(Exception):
    """Raised by a callback to interrupt training the way a crash would."""


def stop(trainer):
    """``on_fit_epoch_end`` callback: interrupted after its first epoch, when last.pt is saved."""
    raise Stop


def onnx_counts(path: Path) -> dict:
    """Op counts of an ONNX file, and its op sequence."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    ops = collections.Counter(node.op_type for node in nodes)
    return {**{op: ops[op] for op in ("Conv", "BatchNormalization", "QuantizeLinear", "Add")},
            "sequence": [node.op_type for node in nodes]}


@pytest.fixture(scope="module")
def qat_epoch(trained_checkpoint, shapes_data, tmp_path_factory) -> Path:
    """The first epoch of a two-epoch QAT run of the float checkpoint, distilled from it (Ultralytics'
    ``distill_model=``: the unfused float model teaches the fused network that deploys), interrupted after it."""
    project = tmp_path_factory.mktemp("qat")
    source = shutil.copy(trained_checkpoint, project / "float.pt")
    model = YOLO(source)
    model.add_callback("on_fit_epoch_end", stop)
    with ultralytics_messages() as log, pytest.raises(Stop):
        model.train(data=str(shapes_data), epochs=2, imgsz=IMGSZ, batch=8, workers=0, device="cpu", plots=False,
                    quantize=8, distill_model=str(source), project=str(project), name="qat", seed=0)
    run = project / "qat"
    assert (run / "weights" / "last.pt").is_file()
    # left at optimizer=auto, fused QAT trains with the plugin's SGD settings, and the run's args.yaml says so
    assert any("fused QAT trains with optimizer=SGD lr0=0.001" in message for message in log)
    assert "optimizer: SGD" in (run / "args.yaml").read_text()
    assert any("19 Rep blocks fused into single 3x3 convolutions before quantization-aware training" in message
               for message in log)
    return run


@pytest.fixture(scope="module")
def qat_run(qat_epoch, run_fresh) -> tuple[Path, Path, str]:
    """The QAT run resumed for its second epoch by ``yolo train resume`` (the console script's entry point), its
    best.pt exported to ONNX by ``yolo export``, then reloaded and run on an image, all in one fresh process that gets
    the plugin from the start-up hook and loads with Ultralytics' restricted loader (``ULTRALYTICS_SAFE_LOAD=1``): the
    run, the ONNX file and the process's log."""
    weights = qat_epoch / "weights"
    done = run_fresh(sys.executable, "-c", RESUME_EXPORT_RELOAD, weights / "last.pt", weights / "best.pt", IMGSZ,
                     env={"ULTRALYTICS_SAFE_LOAD": "1"})
    return qat_epoch, weights / "best.onnx", done.stdout + done.stderr


def test_qat_of_a_plugin_model_trains_and_exports_the_fused_network(qat_run, trained_checkpoint):
    run, onnx_file, log = qat_run
    rows = (run / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # a header and both epochs: the resumed run finished epoch 2
    losses = [dict(zip(rows[0].split(","), row.split(",")))["train/dis_loss"] for row in rows[1:]]
    assert all(float(loss) > 0 for loss in losses)  # the distillation loss was part of both epochs
    assert "quantization-aware model trained fused: its 19 Rep blocks are single 3x3 convolutions" in log
    qat = onnx_counts(onnx_file)
    floating = shutil.copy(trained_checkpoint, run / "float.pt")  # exported in this process (test_export: CLI)
    fused_float = onnx_counts(YOLO(floating).export(format="onnx", imgsz=IMGSZ, device="cpu"))
    # the fused float model's convolutions, no BatchNorm, no Add beyond the fused model's own, and quantized
    assert qat["Conv"] == fused_float["Conv"] and qat["Add"] == fused_float["Add"] and qat["BatchNormalization"] == 0
    assert qat["QuantizeLinear"] > qat["Conv"]
    assert f"(the fused model has {qat['Conv']} convs)" in log and "no BatchNorm, no Rep branch" in log


def test_the_qat_export_runs_in_onnx_runtime_and_in_int8_in_openvino(qat_run):
    import onnxruntime
    import openvino

    from yolov8_efficientrep.graphs import qat_onnx_graph

    _, onnx_file, _ = qat_run
    image = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    ort_output = session.run(None, {session.get_inputs()[0].name: image})[0]
    ov_output = openvino.Core().compile_model(str(onnx_file), "CPU")(image)[0]
    assert ort_output.shape == ov_output.shape and np.isfinite(ort_output).all() and np.isfinite(ov_output).all()
    graph = qat_onnx_graph(onnx_file)
    # all but the head's output convs quantized in the file (Ultralytics keeps those float), most run in INT8
    assert graph.leftovers == [] and graph.quantized >= graph.convs - 7 and graph.runtime_quantized > graph.convs / 2


def test_a_qat_checkpoint_resumes_reloads_and_predicts_in_a_fresh_process_under_the_restricted_loader(qat_run):
    _, _, log = qat_run
    assert "Resuming training" in log  # from last.pt, then best.pt exported and reloaded:
    assert "fused 19 19" in log  # its Rep blocks reload fused (and the process ran to its end: the prediction too)


def test_float_training_from_a_fused_qat_checkpoint_is_refused(qat_run, shapes_data, tmp_path):
    """In this process: test_export's fresh ``yolo train`` of a fused checkpoint proves the command's one-line report."""
    from yolov8_efficientrep.errors import EfficientRepError

    with pytest.raises(EfficientRepError, match="was quantization-aware trained with its Rep blocks fused"):
        YOLO(qat_run[0] / "weights" / "best.pt").train(data=shapes_data, epochs=1, imgsz=64, device="cpu",
                                                       project=tmp_path)
    assert list(tmp_path.iterdir()) == []  # refused before Ultralytics made the run's folder


def test_stock_models_train_qat_exactly_as_without_the_plugin(shapes_data, run_fresh, tmp_path):
    stock = run_fresh(sys.executable, "-c", STOCK_QAT, shapes_data, tmp_path / "without",
                      env={"YOLOV8_EFFICIENTREP_HOOK": "0"})
    without = onnx_counts(Path(stock.stdout.strip().splitlines()[-1]))
    exported = script_function(STOCK_QAT, "qat_onnx")(str(shapes_data), str(tmp_path / "with"))  # here, with the plugin
    with_plugin = onnx_counts(Path(exported))
    assert with_plugin == without and without["QuantizeLinear"] > 0  # the same graph, op for op
