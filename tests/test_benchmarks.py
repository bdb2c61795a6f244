"""The benchmark scripts run end to end at their smallest settings and write complete reports (no timing asserts)."""

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def section(report: str, title: str) -> str:
    """Return the body of the report's ``## title`` section."""
    match = re.search(rf"^## {re.escape(title)}.*?\n(.*?)(?=^## |\Z)", report, re.M | re.S)
    assert match, f"no section {title!r} in the report"
    return match.group(1)


def table_rows(text: str) -> dict[str, list[str]]:
    """Return a markdown table's body rows as ``{first cell: other cells}``."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]
    return {row[0]: row[1:] for row in rows[2:]}


def test_cpu_benchmark_writes_every_table_and_the_chart(run_fresh, tmp_path):
    out = tmp_path / "report" / "RESULTS.md"
    models = ["yolov8n", "yolov8n-efficientrep"]
    run_fresh(sys.executable, BENCHMARKS / "bench_cpu.py", "--out", out, "--models", *models, "--imgsz", "32",
              "--batch", "2", "--batch-imgsz", "32", "--warmup", "0", "--runs", "2", "--train-models", *models,
              "--train-batch", "2", "--train-imgsz", "32", "--train-warmup", "0", "--train-runs", "1", cwd=REPO)
    report = out.read_text()
    forms = ["yolov8n", "yolov8n-efficientrep unfused", "yolov8n-efficientrep fused"]
    assert "Smoke-test settings" in report  # 2 timed runs are not passed off as a measurement

    for runtime in ("ONNX Runtime", "PyTorch eager"):
        latency = table_rows(section(report, f"Latency: {runtime}"))
        assert list(latency) == forms
        for batch1, batch2 in latency.values():
            assert float(batch1.split()[0]) > 0 and "img/s" in batch2
    params = {name: int(cells[0].replace(",", "")) for name, cells in table_rows(section(report, "Models")).items()}
    assert params["yolov8n-efficientrep unfused"] > params["yolov8n-efficientrep fused"] > params["yolov8n"]

    efficiency = table_rows(section(report, "Hardware efficiency"))
    assert len(efficiency) == 1 + len(forms)  # the peak conv, then every model
    assert all(re.fullmatch(r"[\d.]+ \(\d+%\)", cell) for cells in efficiency.values() for cell in cells)
    headline = table_rows(section(report, "Headline ratios"))
    for ratio in ("yolov8n-efficientrep fused / yolov8n, batch 1 @32",
                  "yolov8n-efficientrep unfused / yolov8n-efficientrep fused, batch 1 @32",
                  "yolov8n-efficientrep fused: fraction of conv peak, batch 1 @32"):
        assert len(headline[ratio]) == 2, ratio  # one value per runtime

    training = table_rows(section(report, "Training cost"))
    assert list(training) == models
    assert training["yolov8n"][3:] == ["1.00x", "1.00x"]
    assert all(int(cells[1]) > int(cells[2]) > 0 for cells in training.values())  # peak RSS > its training part
    assert "unfused ONNX keeps all 19 1x1 branch convs and 33 branch Adds" in report

    chart = out.parent / "latency_vs_gflops.png"
    assert "](latency_vs_gflops.png)" in report and chart.read_bytes().startswith(PNG_SIGNATURE)


def parsed(run_fresh, script: str, *argv: str) -> dict:
    """Return a benchmark script's parsed command line, from a fresh interpreter; nothing is measured."""
    code = (f"import json, sys; sys.path.insert(0, {str(BENCHMARKS)!r}); import {script}; "
            f"print(json.dumps(vars({script}.parse_args({list(argv)!r})), default=str))")
    return json.loads(run_fresh(sys.executable, "-c", code, cwd=REPO).stdout.splitlines()[-1])


def test_gpu_benchmark_defaults_are_the_h200_protocol(run_fresh):
    args = parsed(run_fresh, "bench_gpu", "--device", "cpu")
    assert args["batches"] == [1, 32, 256] and args["imgsz"] == 640
    assert (args["warmup"], args["blocks"], args["runs"]) == (10, 7, 20) and not args["contiguous"]  # channels_last


def test_side_by_side_trains_longer_on_a_gpu_only_when_asked(run_fresh):
    defaults = parsed(run_fresh, "side_by_side")
    assert {key: defaults[key] for key in ("device", "epochs", "batch", "nbs", "seed", "models")} == {
        "device": "cpu", "epochs": 30, "batch": 8, "nbs": 8, "seed": [0], "models": ["yolov8n", "yolov8n-efficientrep"]}
    gpu = parsed(run_fresh, "side_by_side", "--device", "0", "--epochs", "60", "--batch", "16", "--nbs", "16", "--seed",
                 "0", "1", "2", "--models", "yolov8n", "yolov8n-efficientrep", "yolov8n-qarepvgg", "yolov6n-repbifpan")
    assert (gpu["device"], gpu["epochs"], gpu["batch"], gpu["seed"]) == ("0", 60, 16, [0, 1, 2])
    assert gpu["models"] == ["yolov8n", "yolov8n-efficientrep", "yolov8n-qarepvgg", "yolov6n-repbifpan"]


def test_gpu_benchmark_runs_on_cpu_when_asked(run_fresh, tmp_path):
    out = tmp_path / "RESULTS_GPU.md"
    models = ["yolov8n", "yolo26n", "yolov8n-efficientrep", "yolov6n-repbifpan"]
    run_fresh(sys.executable, BENCHMARKS / "bench_gpu.py", "--device", "cpu", "--out", out, "--models", *models,
              "--imgsz", "32", "--batches", "2", "1", "--warmup", "0", "--blocks", "1", "--runs", "1", cwd=REPO)
    report = out.read_text()
    names = ["yolov8n", "yolo26n", "yolov8n-efficientrep fused", "yolov8n-efficientrep unfused",
             "yolov6n-repbifpan fused (YOLOv6-N 3.0)"]
    latency = table_rows(section(report, "Latency: eager"))  # no CUDA graphs off CUDA
    assert list(latency) == names
    for cells in latency.values():  # params, GFLOPs, batch 1 and 2 ms, img/s and % of the conv peak at batch 2
        assert len(cells) == 6 and all(float(cell.replace(",", "")) > 0 for cell in cells[2:])
    assert "a try-out, not a GPU measurement" in report and "Smoke-test settings" in report
    assert "yolov8n-efficientrep unfused / yolov8n-efficientrep fused, batch 2 @32" in report
    measured = json.loads(out.with_suffix(".json").read_text())
    assert list(measured["models"]) == names and measured["models"]["yolov8n"]["2"]["eager_ms"] > 0
    assert (tmp_path / "latency_vs_gflops_gpu.png").read_bytes().startswith(PNG_SIGNATURE)


def test_gpu_benchmark_says_at_once_that_it_needs_cuda(run_fresh, tmp_path):
    out = tmp_path / "RESULTS_GPU.md"
    result = run_fresh(sys.executable, BENCHMARKS / "bench_gpu.py", "--out", out, cwd=REPO, check=False,
                       env={"CUDA_VISIBLE_DEVICES": ""})  # as on a machine without a GPU
    assert result.returncode != 0 and "bench_gpu.py needs a CUDA GPU" in result.stderr
    assert not list(tmp_path.iterdir())
    usage = run_fresh(sys.executable, BENCHMARKS / "bench_gpu.py", "--help", cwd=REPO).stdout
    for stem in ("yolo11n", "yolo26n", "yolov6n-repbifpan", "yolov6s-repbifpan", "yolov8n-qarepvgg"):
        assert stem in usage  # the H200 line-up


def test_benchmark_never_overwrites_a_file_it_did_not_write(run_fresh, tmp_path):
    notes = tmp_path / "RESULTS.md"
    notes.write_text("my own notes\n")
    result = run_fresh(sys.executable, BENCHMARKS / "bench_cpu.py", "--out", notes, cwd=REPO, check=False)
    assert result.returncode != 0 and "was not written by this benchmark" in result.stderr
    assert notes.read_text() == "my own notes\n" and not (tmp_path / "latency_vs_gflops.png").exists()


def test_qat_benchmark_defaults_are_the_full_measurement(run_fresh):
    args = parsed(run_fresh, "qat")
    assert args["models"] == ["yolov8n-efficientrep", "yolov8n-qarepvgg"]
    assert (args["epochs"], args["qat_epochs"], args["seed"], args["imgsz"], args["threads"], args["runs"]) == (
        30, 5, 0, 640, 2, 20)
    assert args["out"].endswith("benchmarks/results/RESULTS_QAT.md") and args["qat_overrides"] == {}
    tuned = parsed(run_fresh, "qat", "--qat-overrides", "optimizer=SGD", "lr0=0.001", "warmup_epochs=0")
    assert tuned["qat_overrides"] == {"optimizer": "SGD", "lr0": 0.001, "warmup_epochs": 0}
    wrong = run_fresh(sys.executable, BENCHMARKS / "qat.py", "--qat-overrides", "lr0", cwd=REPO, check=False)
    assert wrong.returncode == 2 and "--qat-overrides takes KEY=VALUE pairs" in wrong.stderr


def test_qat_benchmark_refuses_a_foreign_report_before_training(run_fresh, tmp_path):
    notes = tmp_path / "RESULTS_QAT.md"
    notes.write_text("my own notes\n")
    result = run_fresh(sys.executable, BENCHMARKS / "qat.py", "--out", notes, "--zoo", tmp_path / "zoo", cwd=REPO,
                       check=False)
    assert result.returncode != 0 and "was not written by this benchmark" in result.stderr
    assert notes.read_text() == "my own notes\n" and not (tmp_path / "zoo").exists()
