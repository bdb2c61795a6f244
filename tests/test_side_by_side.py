"""``benchmarks/side_by_side.py`` at its smallest settings: both models trained, a complete report, the chart.

The script runs in a fresh process, as a user runs it; its refusal to overwrite calls its ``main()`` in this process,
where it stops before measuring anything."""

import importlib
import re
import sys

import pytest

from helpers import REPO

SCRIPT = REPO / "benchmarks" / "side_by_side.py"
SMALLEST = ("--epochs", "1", "--train-images", "8", "--val-images", "4", "--imgsz", "32", "--batch", "8", "--warmup",
            "0", "--runs", "2")


def rows(report: str, title: str) -> dict[str, list[str]]:
    """Return the body rows of the markdown table under ``## title`` as ``{first cell: other cells}``."""
    body = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", report, re.M | re.S).group(1)
    lines = [line.strip().strip("|") for line in body.splitlines() if line.startswith("|")][2:]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in re.split(r"(?<!\\)\|", line)] for line in lines)}


@pytest.mark.slow
def test_side_by_side_writes_the_table_and_the_learning_curves(run_fresh, tmp_path):
    out = tmp_path / "side_by_side.md"
    run_fresh(sys.executable, SCRIPT, "--out", out, *SMALLEST, cwd=REPO)
    report = out.read_text()
    assert "Smoke-test settings" in report
    assert re.search(r"^\| command \| python\S* \S*side_by_side.py --out", report, re.M)  # how it was made
    results = rows(report, "Results")
    assert list(results) == ["YOLOv8n", "EfficientRep-n"]
    for cells in results.values():
        assert len(cells) == 5 and float(cells[2]) > 0 and float(cells[3].split()[0]) > 0
    fused_params = {name: int(cells[4].replace(",", "")) for name, cells in results.items()}
    assert fused_params["EfficientRep-n"] > fused_params["YOLOv8n"]
    for name, cells in rows(report, "Fused vs unfused").items():
        assert cells[0] == cells[1] and cells[2] == cells[3] and float(cells[4]) < 1e-3, name
    assert "](side_by_side.png)" in report
    assert (tmp_path / "side_by_side.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_side_by_side_never_overwrites_a_file_it_did_not_write(tmp_path, monkeypatch):
    notes = tmp_path / "side_by_side.md"
    notes.write_text("my notes\n")
    # the script imports its folder's lib, whose offline set-up is the one conftest.py made: nothing changes here
    monkeypatch.syspath_prepend(SCRIPT.parent)
    with pytest.raises(SystemExit, match="was not written by this benchmark"):
        importlib.import_module(SCRIPT.stem).main(["--out", str(notes), *SMALLEST])
    assert notes.read_text() == "my notes\n" and not (tmp_path / "side_by_side.png").exists()
