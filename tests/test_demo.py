"""``python -m yolov8_efficientrep demo`` end to end in a fresh process, at small settings, on the tests' tiny data set.

The refusals call the command's ``main()`` in this process: they stop in its checks, before the child process that
the demo starts with Ultralytics offline, so a fresh process would prove nothing more."""

import json
import os
import sys
from pathlib import Path

import cv2
import onnxruntime
import pytest
import torch

from yolov8_efficientrep import cli, demo
from yolov8_efficientrep.graphs import onnx_unfused_nodes

CONFIG_DIR = Path(os.environ["YOLO_CONFIG_DIR"])  # the tests' Ultralytics settings dir: "the user's" here


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def demo_run(run_fresh, shapes_data, tmp_path_factory):
    """Run the demo at 1 epoch on 64 px images, launched with Ultralytics online and auto-installing as far as the
    environment goes: the demo must switch both off itself. Returns (its output, summary, user config before/after)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    before = snapshot(CONFIG_DIR)  # the user's Ultralytics settings dir for this run
    result = run_fresh(sys.executable, "-m", "yolov8_efficientrep", "demo", "--epochs", "1", "--imgsz", "64", "--out",
                       out, "--data", shapes_data, env={"YOLO_OFFLINE": "false", "YOLO_AUTOINSTALL": "true"})
    return result.stdout + result.stderr, json.loads((out / demo.SUMMARY).read_text()), before, snapshot(CONFIG_DIR)


@pytest.mark.slow
def test_demo_runs_offline_with_private_settings(demo_run):
    log, summary, before, after = demo_run
    assert summary["ultralytics"]["online"] is False and summary["ultralytics"]["autoinstall"] is False
    assert CONFIG_DIR not in Path(summary["ultralytics"]["settings"]).parents
    assert after == before  # no settings written, no fonts seeded in the user's config dir
    assert "Ultralytics offline with temporary settings (removed after the run)" in log
    assert summary["ultralytics"]["settings"] not in log  # the summary names no file that is already gone


@pytest.mark.slow
def test_demo_scores_the_unfused_and_the_fused_network(demo_run):
    _, summary, _, _ = demo_run
    for metric in ("map50_95", "map50"):
        unfused, fused = summary[metric]["unfused"], summary[metric]["fused"]
        assert 0 <= unfused <= 1 and abs(unfused - fused) < 1e-3, (metric, unfused, fused)
    assert summary["fused_rep_blocks"] == 19
    assert summary["parameters"]["fused"] < summary["parameters"]["unfused"]


@pytest.mark.slow
def test_demo_exports_a_fused_onnx_that_matches_pytorch(demo_run):
    log, summary, _, _ = demo_run
    onnx_file = Path(summary["files"]["ONNX"])
    assert onnx_unfused_nodes(onnx_file) == []
    assert summary["onnx_vs_pytorch"]["max_rel"] < 1e-4
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 64, 64]
    assert f"max |diff| = {summary['onnx_vs_pytorch']['max_abs']:.2e}" in log


@pytest.mark.slow
def test_demo_saves_the_annotated_prediction_and_prints_where_files_are(demo_run):
    log, summary, _, _ = demo_run
    picture = cv2.imread(summary["files"]["prediction"])
    assert picture is not None and picture.shape[:2] == (64, 64)
    predicted = summary["prediction"]
    assert Path(predicted["image"]).parent == Path(summary["data"]).parent / "images" / "val"
    assert predicted["labelled"] >= 1 and predicted["detections"] >= 0
    for name, path in summary["files"].items():
        assert Path(path).exists() and f"{name:<13} {path}" in log
    assert demo.format_summary(summary) in log


@pytest.mark.slow
def test_demo_leaves_no_empty_folder(demo_run):
    _, summary, _, _ = demo_run
    out = Path(summary["files"]["training run"]).parent
    assert [p for p in out.rglob("*") if p.is_dir() and not any(p.iterdir())] == []


@pytest.mark.parametrize("options, message", [
    (["--epochs", "0"], "--epochs 0: train from 1 to 1000 epochs"),
    (["--epochs", "100000"], "--epochs 100000: train from 1 to 1000 epochs"),
    (["--imgsz", "16"], "--imgsz: image size must be from 32 to 2048 pixels (one side, or [height, width]), got 16"),
    (["--imgsz", "100000"], "--imgsz: image size must be from 32 to 2048 pixels"),
    (["--data", "no-such-data.yaml"], "no-such-data.yaml: no such data YAML"),
])
def test_demo_stops_on_bad_options_before_writing_anything(tmp_path, capsys, options, message):
    assert cli.main(["demo", "--out", str(tmp_path / "out"), *options]) == 1
    error = capsys.readouterr().err
    assert error.startswith("yolov8-efficientrep demo: error: ") and message in error
    assert len(error.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--device", "0,,1", "--device 0,,1: not a device; use cpu, mps, a GPU index such as 0, or GPU indices separated "
                         "by single commas such as 0,1"),
    ("--out", "a-file/out", "--out {tmp}/a-file/out: {tmp}/a-file is a file, not a folder; choose another --out"),
])
def test_demo_names_a_malformed_device_or_an_output_under_a_file_in_one_line(tmp_path, capsys, monkeypatch, option,
                                                                              value, message):
    (tmp_path / "a-file").write_text("mine")
    monkeypatch.chdir(tmp_path)  # --out a-file/out is relative to it, and nothing may appear in it
    options = ["--out", str(tmp_path / "out")] if option != "--out" else []
    assert cli.main(["demo", option, value, *options]) == 1
    assert capsys.readouterr().err.strip() == f"yolov8-efficientrep demo: error: {message.format(tmp=tmp_path)}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_demo_refuses_an_output_folder_with_files(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert cli.main(["demo", "--out", str(tmp_path)]) == 1
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_demo_on_a_gpu_torch_does_not_see_stops_in_one_line_before_starting(tmp_path, capsys):
    device = str(torch.cuda.device_count())  # one past the last GPU: 0 on a machine without one
    status = cli.main(["demo", "--device", device, "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    seen = "no CUDA GPU" if device == "0" else f"only {device} CUDA GPU"
    assert status == 1
    assert error.strip().startswith(f"yolov8-efficientrep demo: error: --device {device}: torch "
                                    f"{torch.__version__} sees {seen}")
    assert len(error.strip().splitlines()) == 1 and "use --device cpu" in error
    assert not (tmp_path / "out").exists()  # stopped before the output folder and the child process


def test_demo_names_missing_packages_before_starting(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(demo.REQUIREMENTS, "no_such_module_for_the_demo", "no-such-package")
    assert cli.main(["demo", "--out", str(tmp_path / "out")]) == 1
    assert "needs no-such-package" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_default_output_folders_are_numbered_like_ultralytics_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = demo.output_dir(None)
    first.mkdir(parents=True)
    assert first == tmp_path / "runs" / "efficientrep-demo"
    assert demo.output_dir(None) == tmp_path / "runs" / "efficientrep-demo2"
