"""The benchmark scripts run end to end at their smallest settings and write complete reports (no timing asserts); their
defaults are the settings that made the committed results."""

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

from helpers import REPO

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


@pytest.mark.slow
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


@pytest.fixture(scope="module")
def scripts():
    """Return a function importing a benchmark script by name in this process, as its directory's ``lib`` expects."""
    sys.path.insert(0, str(BENCHMARKS))
    yield importlib.import_module
    sys.path.remove(str(BENCHMARKS))


def header(report: Path) -> dict[str, str]:
    """The first table of a committed report: how it was made (date, command, settings)."""
    return {cells[0]: cells[1] for cells in table_rows_with_header(report.read_text().split("\n## ")[0])}


def table_rows_with_header(text: str) -> list[list[str]]:
    """Every row of the markdown tables in ``text``, the header rows included, separator rows left out."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]
    return [row for row in rows if not all(set(cell) <= set("-:") for cell in row)]


# The committed results were made by each script at its defaults (their "command" row says so): the defaults must
# still be what made them, so that running a script again reproduces its report.


def test_gpu_benchmark_defaults_are_the_h200_protocol(scripts, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # parsed as on a GPU machine; nothing runs
    bench_gpu, lineup = scripts("bench_gpu"), scripts("lib.lineup")
    args = bench_gpu.parse_args([])
    h200 = json.loads((BENCHMARKS / "results" / "gpu-h200-2026-12-04" / "gpu_latency.json").read_text())
    assert args.imgsz == h200["imgsz"] and args.device.type == "cuda" and not args.contiguous  # channels_last
    assert [entry.name for entry in lineup.select(args.models, lineup.GPU)] == list(h200["models"])
    assert all(list(model)[2:] == [str(batch) for batch in args.batches] for model in h200["models"].values())
    protocol = " ".join((REPO / "docs" / "benchmarks.md").read_text().split())
    assert f"FP16, channels_last, cudnn.benchmark, {args.imgsz} px" in protocol
    assert f"median of {args.blocks} blocks" in protocol


def test_side_by_side_defaults_made_its_committed_report_and_a_gpu_run_is_asked_for(scripts):
    side_by_side, lineup = scripts("side_by_side"), scripts("lib.lineup")
    args = side_by_side.parse_args([])
    made = header(BENCHMARKS / "results" / "side_by_side.md")
    assert made["command"].split()[2:] == ["--out", "benchmarks/side_by_side.md"]  # every other option at its default
    assert args.device == "cpu" and made["training"].startswith(
        f"{args.train_images} train / {args.val_images} val images of `make_shapes_dataset` ({args.imgsz} px, seed 0), "
        f"{args.epochs} epochs from scratch, imgsz {args.imgsz}, batch {args.batch}, nbs {args.nbs}, "
        f"seed {args.seed[0]}, deterministic, CPU")
    assert f"{args.runs} timed runs after {args.warmup} warm-up runs" in made["inference"]
    results = table_rows(section((BENCHMARKS / "results" / "side_by_side.md").read_text(), "Results"))
    assert list(results) == [lineup.MODELS[stem].title for stem in args.models]
    gpu = side_by_side.parse_args(["--device", "0", "--epochs", "60", "--seed", "0", "1", "--models",
                                   *lineup.SIDE_BY_SIDE])  # the GPU comparison's settings are taken as given
    assert (gpu.device, gpu.epochs, gpu.seed, gpu.models) == ("0", 60, [0, 1], list(lineup.SIDE_BY_SIDE))


@pytest.mark.slow
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


def test_gpu_benchmark_says_at_once_that_it_needs_cuda(scripts, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # as on a machine without a GPU
    bench_gpu = scripts("bench_gpu")
    with pytest.raises(SystemExit, match="bench_gpu.py needs a CUDA GPU"):
        bench_gpu.main(["--out", str(tmp_path / "RESULTS_GPU.md")])
    assert not list(tmp_path.iterdir())
    with pytest.raises(SystemExit):
        bench_gpu.parse_args(["--help"])
    usage = capsys.readouterr().out
    for stem in ("yolo11n", "yolo26n", "yolov6n-repbifpan", "yolov6s-repbifpan", "yolov8n-qarepvgg"):
        assert stem in usage  # the H200 line-up


def test_benchmark_never_overwrites_a_file_it_did_not_write(scripts, tmp_path):
    notes = tmp_path / "RESULTS.md"
    notes.write_text("my own notes\n")
    with pytest.raises(SystemExit, match="was not written by this benchmark"):
        scripts("bench_cpu").main(["--out", str(notes)])
    assert notes.read_text() == "my own notes\n" and not (tmp_path / "latency_vs_gflops.png").exists()


def test_qat_benchmark_defaults_made_its_committed_report_and_overrides_are_parsed(scripts, capsys):
    qat, lineup = scripts("qat"), scripts("lib.lineup")
    args = qat.parse_args([])
    made = header(BENCHMARKS / "results" / "RESULTS_QAT.md")
    assert made["command"] == "python benchmarks/qat.py" and Path(args.out) == BENCHMARKS / "results" / "RESULTS_QAT.md"
    assert made["training"].startswith(f"epochs: float {args.epochs}, QAT {args.qat_epochs} per route; QAT's overrides "
                                       f"of the float recipe: none; seed {args.seed}")
    assert made["timing"].startswith(f"{args.runs} timed runs after {args.warmup} warm-up runs per cell")
    assert made["threads"].startswith(f"{args.threads} (") and args.qat_overrides == {}
    report = (BENCHMARKS / "results" / "RESULTS_QAT.md").read_text()
    assert f"## Latency, batch 1 @{args.imgsz}:" in report
    columns = table_rows_with_header(section(report, "Headline"))[0][1:]
    assert columns == [lineup.MODELS[stem].title for stem in args.models]

    tuned = qat.parse_args(["--qat-overrides", "optimizer=SGD", "lr0=0.001", "warmup_epochs=0"])
    assert tuned.qat_overrides == {"optimizer": "SGD", "lr0": 0.001, "warmup_epochs": 0}  # each value read as YAML
    with pytest.raises(SystemExit) as wrong:
        qat.parse_args(["--qat-overrides", "lr0"])
    assert wrong.value.code == 2 and "--qat-overrides takes KEY=VALUE pairs" in capsys.readouterr().err


def test_qat_benchmark_refuses_a_foreign_report_before_training(scripts, tmp_path):
    notes = tmp_path / "RESULTS_QAT.md"
    notes.write_text("my own notes\n")
    with pytest.raises(SystemExit, match="was not written by this benchmark"):
        scripts("qat").main(["--out", str(notes), "--zoo", str(tmp_path / "zoo")])
    assert notes.read_text() == "my own notes\n" and not (tmp_path / "zoo").exists()
