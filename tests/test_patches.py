"""The fork route: ``patches/make_fork_patch.py`` writes a patch that builds the blocks into Ultralytics' own parser.

The test applies the patch to a copy of the installed Ultralytics (as a team vendoring it would) and builds the
EfficientRep YAML from that copy, with the runtime registration out of the picture.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import ultralytics
from ultralytics import YOLO

from helpers import REPO

SCRIPT = REPO / "patches" / "make_fork_patch.py"
CFG = REPO / "cfg" / "yolov8n-efficientrep.yaml"

BUILD = f"""
import json, sys
import ultralytics
from ultralytics import YOLO
from ultralytics.nn import tasks
model = YOLO({str(CFG)!r}).model
print(json.dumps({{"ultralytics": ultralytics.__file__, "native": tasks.YOLOV8_EFFICIENTREP_NATIVE,
                   "runtime_patched": hasattr(tasks.parse_model, "__yolov8_efficientrep_wraps__"),
                   "block_module": type(model.model[0]).__module__, "rows": [type(m).__name__ for m in model.model],
                   "params": sum(p.numel() for p in model.parameters())}}))
"""


def make_patch(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the patch script in a fresh interpreter."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, env=os.environ)


@pytest.fixture(scope="module")
def fork(tmp_path_factory) -> Path:
    """A copy of the installed Ultralytics package with the patch applied by ``git apply``; returns its root."""
    root = tmp_path_factory.mktemp("fork")
    installed = Path(ultralytics.__file__).parent
    shutil.copytree(installed, root / "ultralytics", ignore=shutil.ignore_patterns("__pycache__"))
    patch = root / "efficientrep.patch"
    made = make_patch("-o", str(patch))
    assert made.returncode == 0, made.stderr
    applied = subprocess.run(["git", "apply", "--verbose", patch.name], cwd=root, capture_output=True, text=True)
    assert applied.returncode == 0 and "Applied patch ultralytics/nn/tasks.py cleanly" in applied.stderr, applied.stderr
    return root


@pytest.mark.slow
@pytest.mark.parametrize("hook", ["0", "1"])
def test_patched_ultralytics_builds_the_efficientrep_yaml_natively(fork, hook):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fork), str(REPO)]), "YOLOV8_EFFICIENTREP_HOOK": hook}
    done = subprocess.run([sys.executable, "-c", BUILD], env=env, capture_output=True, text=True, cwd=fork)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert Path(result["ultralytics"]).parent == fork / "ultralytics"
    assert result["native"] and not result["runtime_patched"]  # the fork's own parser built it, with or without hook
    assert result["block_module"] == "yolov8_efficientrep.blocks"  # checkpoints stay interchangeable with the plugin
    reference = YOLO(CFG).model  # the plugin route, in this process
    assert result["rows"] == [type(m).__name__ for m in reference.model]
    assert result["params"] == sum(p.numel() for p in reference.parameters())


@pytest.mark.slow
def test_patch_script_refuses_an_already_patched_file(fork):
    result = make_patch("--tasks", str(fork / "ultralytics" / "nn" / "tasks.py"))
    assert result.returncode != 0 and "already patched for yolov8-efficientrep" in result.stderr


def test_patch_script_never_overwrites_the_output(tmp_path):
    existing = tmp_path / "efficientrep.patch"
    existing.write_text("mine")
    result = make_patch("-o", str(existing))
    assert result.returncode != 0 and "exists" in result.stderr and existing.read_text() == "mine"


def test_patch_script_names_the_file_it_cannot_recognise(tmp_path):
    not_tasks = tmp_path / "tasks.py"
    not_tasks.write_text("def parse_model(d, ch):\n    return None\n")
    result = make_patch("--tasks", str(not_tasks))
    assert result.returncode != 0 and str(not_tasks) in result.stderr and "not recognised" in result.stderr


@pytest.mark.slow
def test_the_fork_skips_only_the_parser_patch(fork):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fork), str(REPO)]), "YOLOV8_EFFICIENTREP_HOOK": "1"}
    code = ("from ultralytics import YOLO\n"  # bare names (the shipped YAMLs' lookup) and EffiDeHead's task guess
            "print(YOLO('yolov8n-efficientrep.yaml').task, YOLO('yolov6n-repbifpan.yaml').task)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=fork)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["detect", "detect"]
