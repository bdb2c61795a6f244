"""The stock ``yolo`` console script with plugin models, each command in a fresh process: no wrapper, no plugin import.

The installed start-up hook (``yolov8_efficientrep_hook.pth``) registers the plugin when Ultralytics is imported; with
``YOLOV8_EFFICIENTREP_HOOK=0`` the same command fails as it would without the plugin. ``yolo export`` of the trained
checkpoint in a fresh process is tests/test_export.py's first test.
"""

import csv
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from ultralytics import YOLO

from yolov8_efficientrep import RepVGGBlock
from yolov8_efficientrep.limits import NonFiniteWeightsError

from helpers import REPO

HOOK_OFF = {"YOLOV8_EFFICIENTREP_HOOK": "0"}


@pytest.fixture(scope="module")
def trained(trained_checkpoint) -> Path:
    """The run folder of ``yolo train model=cfg/yolov8-efficientrep.yaml``, typed from the repository root (the
    suite's shared checkpoint, conftest.py)."""
    return trained_checkpoint.parents[1]


def test_start_up_hook_is_lazy_and_imports_no_torch(installed_hook, run_fresh):
    code = ("import json, sys; "
            "before = {m: m in sys.modules for m in ('torch', 'ultralytics', 'yolov8_efficientrep')}; "
            "import ultralytics.nn.tasks as t; "
            "print(json.dumps({'before': before, 'after': 'yolov8_efficientrep' in sys.modules, "
            "'rows': all(hasattr(t, n) for n in ('RepVGGBlock', 'RepBlock'))}))")
    result = json.loads(run_fresh(sys.executable, "-c", code).stdout.splitlines()[-1])
    assert result["before"] == {"torch": False, "ultralytics": False, "yolov8_efficientrep": False}
    assert result["after"] and result["rows"]


def test_plain_yolo_train_builds_and_trains_the_plugin_model(trained):
    rows = list(csv.DictReader((trained / "results.csv").open()))
    assert len(rows) == 1
    losses = {k.strip(): float(v) for k, v in rows[0].items() if "loss" in k}
    assert losses and all(math.isfinite(v) and v > 0 for v in losses.values()), losses

    reloaded = YOLO(trained / "weights" / "best.pt")
    units = [m for m in reloaded.model.modules() if isinstance(m, RepVGGBlock)]
    assert len(units) == 19 and all(hasattr(u, "conv1") for u in units)  # saved in training form
    results = reloaded.predict(torch.zeros(1, 3, 64, 64), imgsz=64, device="cpu", verbose=False)
    assert len(results) == 1


def test_yolo_train_without_the_hook_fails_on_the_plugin_row(installed_hook, run_fresh, shapes_data, tmp_path):
    result = run_fresh("yolo", "train", "model=cfg/yolov8-efficientrep.yaml", f"data={shapes_data}", "epochs=1",
                       "imgsz=64", "device=cpu", f"project={tmp_path}", cwd=REPO, env=HOOK_OFF, check=False)
    assert result.returncode != 0 and "KeyError: 'RepVGGBlock'" in result.stderr


@pytest.mark.slow  # a fresh yolo process reloading the trained checkpoint (the development run has test_export's)
def test_plain_yolo_val_loads_best_pt_in_a_fresh_process(trained, run_fresh, shapes_data, tmp_path):
    result = run_fresh("yolo", "val", f"model={trained / 'weights' / 'best.pt'}", f"data={shapes_data}", "imgsz=64",
                       "device=cpu", "batch=8", "plots=False", f"project={tmp_path}", "name=val")
    log = result.stdout + result.stderr
    assert "summary (fused)" in log and "mAP50-95" in log


@pytest.mark.slow  # a fresh yolo process reloading the trained checkpoint (the development run has test_export's)
def test_plain_yolo_predict_loads_best_pt_in_a_fresh_process(trained, run_fresh, shapes_data, tmp_path):
    images = shapes_data.parent / "images" / "val"
    result = run_fresh("yolo", "predict", f"model={trained / 'weights' / 'best.pt'}", f"source={images}", "imgsz=64",
                       "device=cpu", "save=False", f"project={tmp_path}", "name=predict")
    count = len(list(images.glob("*.png")))
    assert f"image {count}/{count}" in result.stdout + result.stderr


def test_yolo_export_of_weights_that_are_not_finite_names_the_tensor(run_fresh, trained_checkpoint, tmp_path):
    checkpoint = torch.load(trained_checkpoint, weights_only=False)
    model = checkpoint.get("ema") or checkpoint["model"]
    model.model[4].m[1].conv1.bn.running_var.data[0] = float("inf")
    source = tmp_path / "diverged.pt"
    torch.save(checkpoint, source)
    result = run_fresh("yolo", "export", f"model={source}", "format=onnx", "imgsz=64", "device=cpu", check=False)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert last.startswith(f"yolov8-efficientrep (yolo): error: {source}: its weights are not finite: tensor model.")
    assert last.endswith("export a checkpoint whose weights are finite, such as an earlier epoch's")
    with pytest.raises(NonFiniteWeightsError, match=r"tensor model\.4\.m\.1\.conv1\.bn\.running_var holds NaN"):
        YOLO(source).export(format="onnx", imgsz=64, device="cpu")  # the whole message, which the line may shorten
    assert "fusion algebra" not in result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diverged.pt"]
