"""Checkpoints with plugin blocks: resume and Ultralytics' restricted loader in new interpreters, fine-tuning.

``ULTRALYTICS_SAFE_LOAD=1`` makes Ultralytics unpickle with ``torch.load(weights_only=True)`` and an allow-list; the
plugin adds its classes to that list when it is imported, which the start-up hook does before any load.
"""

import csv
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from ultralytics import YOLO

from yolov8_efficientrep.rows import ROWS, is_plugin_class, plugin_classes

REPO = Path(__file__).resolve().parents[1]
SAFE = {"ULTRALYTICS_SAFE_LOAD": "1"}


class StopAfterFirstEpoch(Exception):
    """Raised by a callback to interrupt training the way a crash would."""


def stop_after_first_epoch(trainer):
    """``on_fit_epoch_end`` callback: last.pt of epoch 1 is saved by now."""
    raise StopAfterFirstEpoch


def interrupted_run(data: Path, project: Path) -> Path:
    """Train yolov8n-efficientrep for 1 of 2 epochs and stop, leaving a resumable last.pt; return the run dir."""
    model = YOLO(REPO / "cfg" / "yolov8n-efficientrep.yaml")
    model.add_callback("on_fit_epoch_end", stop_after_first_epoch)
    with pytest.raises(StopAfterFirstEpoch):
        model.train(data=str(data), epochs=2, imgsz=64, batch=8, workers=0, device="cpu", plots=False,
                    project=str(project), name="run", seed=0)
    return project / "run"


@pytest.fixture(scope="module")
def runs(shapes_data, tmp_path_factory) -> dict:
    """Two interrupted runs, one to resume with each loader (resuming writes into the run's own directory)."""
    return {loader: interrupted_run(shapes_data, tmp_path_factory.mktemp(loader)) for loader in ("default", "safe")}


def results(run: Path) -> list:
    """The rows of a run's results.csv, one per finished epoch."""
    return list(csv.DictReader((run / "results.csv").open()))


def test_allow_list_covers_every_plugin_block_and_the_units_inside_them():
    classes = set(plugin_classes())
    own = {row.cls for row in ROWS if is_plugin_class(row.cls)}
    assert own <= classes and {"RepVGGBlock", "RepBlock", "BottleRep"} <= {cls.__name__ for cls in classes}
    assert all(cls.__module__.startswith("yolov8_efficientrep.") for cls in classes)  # Ultralytics lists its own


@pytest.mark.slow
def test_yolo_resumes_an_interrupted_run_in_a_fresh_process(runs, installed_hook, run_fresh):
    """Ultralytics' default loader; the restricted one resumes in the next test's fresh process."""
    run = runs["default"]
    assert len(results(run)) == 1
    result = run_fresh("yolo", "train", "resume", f"model={run / 'weights' / 'last.pt'}")
    assert "Resuming training" in result.stdout + result.stderr
    assert len(results(run)) == 2  # epoch 2 of 2 ran in the new process


@pytest.mark.slow
def test_restricted_loader_resumes_validates_predicts_exports_and_fine_tunes(runs, installed_hook, run_fresh,
                                                                             shapes_data, tmp_path):
    """One fresh interpreter with ULTRALYTICS_SAFE_LOAD=1 that never imports the plugin by name; the fine-tuning
    transfers every weight of best.pt."""
    best = shutil.copy(runs["default"] / "weights" / "best.pt", tmp_path / "best.pt")
    last = runs["safe"] / "weights" / "last.pt"
    assert len(results(runs["safe"])) == 1
    code = f"""
import json, sys
from ultralytics import YOLO
from ultralytics.nn.tasks import torch_safe_load
from ultralytics.utils import SAFE_LOAD

torch_safe_load({str(best)!r})  # raises if the restricted loader refuses a class
YOLO({str(last)!r}).train(resume=True)
metrics = YOLO({str(best)!r}).val(data={str(shapes_data)!r}, imgsz=64, batch=8, device="cpu", plots=False,
                                   project={str(tmp_path)!r}, name="val")
predictions = YOLO({str(best)!r}).predict({str(shapes_data.parent / 'images' / 'val')!r}, imgsz=64, device="cpu")
onnx = YOLO({str(best)!r}).export(format="onnx", imgsz=64, device="cpu")
tuned = YOLO({str(best)!r})
tuned.train(data={str(shapes_data)!r}, epochs=1, imgsz=64, batch=8, device="cpu", plots=False,
            project={str(tmp_path)!r}, name="tuned")
print(json.dumps({{"safe": SAFE_LOAD, "map": metrics.box.map, "predictions": len(predictions), "onnx": onnx,
                   "tuned_blocks": sum(type(m).__name__ == "RepVGGBlock" for m in tuned.model.modules())}}))
"""
    done = run_fresh(sys.executable, "-c", code, env=SAFE)
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["safe"] and "Resuming training" in done.stdout + done.stderr
    assert len(results(runs["safe"])) == 2  # epoch 2 of 2 ran in the new process
    assert result["map"] >= 0 and result["predictions"] == 8
    assert Path(result["onnx"]).is_file() and result["tuned_blocks"] == 19
    transferred = re.findall(r"Transferred (\d+)/(\d+) items", done.stdout + done.stderr)
    assert transferred and transferred[-1][0] == transferred[-1][1]  # the fine-tuning (last): every weight of best.pt
    assert len(results(tmp_path / "tuned")) == 1


def test_restricted_loader_refuses_plugin_checkpoints_without_the_plugin(runs, run_fresh, shapes_data):
    result = run_fresh("yolo", "val", f"model={runs['default'] / 'weights' / 'best.pt'}", f"data={shapes_data}",
                       "imgsz=64", "device=cpu", env={**SAFE, "YOLOV8_EFFICIENTREP_HOOK": "0"}, check=False)
    assert result.returncode != 0 and "references types outside the supported" in result.stderr
