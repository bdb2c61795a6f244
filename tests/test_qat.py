"""Quantization-aware training (``quantize=8``) trains plugin models fused: the INT8 graph is the fused network.

Real Ultralytics QAT (NVIDIA ModelOpt, on CPU), real training on generated data, exports run in ONNX Runtime and
OpenVINO, training, resume, export and reload in fresh processes (only the float model's export, for comparison, in
this one). The QAT starts from the session's one-epoch checkpoint: its accuracy says nothing (the benchmarks measure
that); the graphs and the round trips are what is checked.
"""

from __future__ import annotations

import collections
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from ultralytics import YOLO

pytest.importorskip("modelopt.torch.quantization", reason="QAT needs NVIDIA ModelOpt: pip install -e '.[qat]'")
pytestmark = pytest.mark.slow  # every test trains

IMGSZ = 64
TRAIN = """
import sys
from ultralytics import YOLO

class Stop(Exception):
    pass

def stop(trainer):  # interrupted after its first epoch, as a crash would: last.pt is saved by then
    raise Stop

model = YOLO(sys.argv[1])
model.add_callback("on_fit_epoch_end", stop)
try:
    model.train(data=sys.argv[2], epochs=2, imgsz=64, batch=8, workers=0, device="cpu", plots=False, quantize=8,
                distill_model=sys.argv[1], project=sys.argv[3], name="qat", seed=0)
except Stop:
    print("stopped after epoch 1")
"""


def onnx_counts(path: Path) -> dict:
    """Op counts of an ONNX file, and its op sequence."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    ops = collections.Counter(node.op_type for node in nodes)
    return {**{op: ops[op] for op in ("Conv", "BatchNormalization", "QuantizeLinear", "Add")},
            "sequence": [node.op_type for node in nodes]}


@pytest.fixture(scope="module")
def qat_run(trained_checkpoint, shapes_data, tmp_path_factory, run_fresh) -> Path:
    """A two-epoch QAT run of the float checkpoint, distilled from it (Ultralytics' ``distill_model=``: the unfused
    float model teaches the fused network that deploys), interrupted after epoch 1 and resumed with the plain CLI."""
    project = tmp_path_factory.mktemp("qat")
    source = shutil.copy(trained_checkpoint, project / "float.pt")
    trained = run_fresh(sys.executable, "-c", TRAIN, source, shapes_data, project)
    run = project / "qat"
    assert (run / "weights" / "last.pt").is_file()
    # left at optimizer=auto, fused QAT trains with the plugin's SGD settings, and the run's args.yaml says so
    assert "fused QAT trains with optimizer=SGD lr0=0.001" in trained.stdout + trained.stderr
    assert "optimizer: SGD" in (run / "args.yaml").read_text()
    assert "19 Rep blocks fused into single 3x3 convolutions before quantization-aware training" in trained.stdout
    resumed = run_fresh("yolo", "train", "resume", f"model={run / 'weights' / 'last.pt'}")
    assert "Resuming training" in resumed.stdout + resumed.stderr
    return run


@pytest.fixture(scope="module")
def qat_export(qat_run, run_fresh) -> tuple[Path, str]:
    """The QAT run's best.pt exported to ONNX by the plain CLI: the file and the export's log."""
    exported = run_fresh("yolo", "export", f"model={qat_run / 'weights' / 'best.pt'}", "format=onnx",
                         f"imgsz={IMGSZ}", "device=cpu")
    return qat_run / "weights" / "best.onnx", exported.stdout + exported.stderr


def test_qat_of_a_plugin_model_trains_and_exports_the_fused_network(qat_run, qat_export, trained_checkpoint):
    rows = (qat_run / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # a header and both epochs: the resumed run finished epoch 2
    losses = [dict(zip(rows[0].split(","), row.split(",")))["train/dis_loss"] for row in rows[1:]]
    assert all(float(loss) > 0 for loss in losses)  # the distillation loss was part of both epochs
    onnx_file, log = qat_export
    assert "quantization-aware model trained fused: its 19 Rep blocks are single 3x3 convolutions" in log
    qat = onnx_counts(onnx_file)
    floating = shutil.copy(trained_checkpoint, qat_run / "float.pt")  # exported in this process (test_export: CLI)
    fused_float = onnx_counts(YOLO(floating).export(format="onnx", imgsz=IMGSZ, device="cpu"))
    # the fused float model's convolutions, no BatchNorm, no Add beyond the fused model's own, and quantized
    assert qat["Conv"] == fused_float["Conv"] and qat["Add"] == fused_float["Add"] and qat["BatchNormalization"] == 0
    assert qat["QuantizeLinear"] > qat["Conv"]
    assert f"(the fused model has {qat['Conv']} convs)" in log and "no BatchNorm, no Rep branch" in log


def test_the_qat_export_runs_in_onnx_runtime_and_in_int8_in_openvino(qat_export):
    import onnxruntime
    import openvino

    from yolov8_efficientrep.graphs import qat_onnx_graph

    onnx_file, _ = qat_export
    image = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    ort_output = session.run(None, {session.get_inputs()[0].name: image})[0]
    ov_output = openvino.Core().compile_model(str(onnx_file), "CPU")(image)[0]
    assert ort_output.shape == ov_output.shape and np.isfinite(ort_output).all() and np.isfinite(ov_output).all()
    graph = qat_onnx_graph(onnx_file)
    # all but the head's output convs quantized in the file (Ultralytics keeps those float), most run in INT8
    assert graph.leftovers == [] and graph.quantized >= graph.convs - 7 and graph.runtime_quantized > graph.convs / 2


def test_a_qat_checkpoint_reloads_and_predicts_in_a_fresh_process_under_the_restricted_loader(qat_run, run_fresh):
    """Ultralytics' default loader reloads it in fresh processes already: the resume and ``qat_export``."""
    code = ("import sys\nfrom ultralytics import YOLO\nfrom ultralytics.utils import ASSETS\n"
            "from yolov8_efficientrep.fusion import fused_rep_blocks\n"
            "model = YOLO(sys.argv[1])\nprint('fused', *fused_rep_blocks(model.model))\n"
            "model.predict(ASSETS / 'bus.jpg', imgsz=64, device='cpu', verbose=False)")
    result = run_fresh(sys.executable, "-c", code, qat_run / "weights" / "best.pt", env={"ULTRALYTICS_SAFE_LOAD": "1"})
    assert "fused 19 19" in result.stdout


def test_float_training_from_a_fused_qat_checkpoint_is_refused(qat_run, shapes_data, tmp_path):
    """In this process: test_export's fresh ``yolo train`` of a fused checkpoint proves the command's one-line report."""
    from yolov8_efficientrep.errors import EfficientRepError

    with pytest.raises(EfficientRepError, match="was quantization-aware trained with its Rep blocks fused"):
        YOLO(qat_run / "weights" / "best.pt").train(data=shapes_data, epochs=1, imgsz=64, device="cpu",
                                                    project=tmp_path)
    assert list(tmp_path.iterdir()) == []  # refused before Ultralytics made the run's folder


def test_stock_models_train_qat_exactly_as_without_the_plugin(shapes_data, run_fresh, tmp_path, installed_hook):
    def qat_graph(hook: str) -> dict:
        project = tmp_path / f"hook{hook}"
        code = ("import sys\nfrom ultralytics import YOLO\n"
                "model = YOLO('yolov8n.yaml')\n"
                "model.train(data=sys.argv[1], epochs=1, imgsz=64, batch=8, workers=0, device='cpu', plots=False, "
                "quantize=8, project=sys.argv[2], name='run', seed=0, deterministic=True)\n"
                "print(model.export(format='onnx', imgsz=64, device='cpu'))")
        done = run_fresh(sys.executable, "-c", code, shapes_data, project, env={"YOLOV8_EFFICIENTREP_HOOK": hook})
        return onnx_counts(Path(done.stdout.strip().splitlines()[-1]))

    with_plugin, without = qat_graph("1"), qat_graph("0")  # one at a time: each is CPU-bound
    assert with_plugin == without and without["QuantizeLinear"] > 0  # the same graph, op for op
