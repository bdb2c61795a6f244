"""The fork route: ``patches/make_fork_patch.py`` writes a patch that builds the blocks into Ultralytics' own parser.

The test applies the patch to a copy of the installed Ultralytics (as a team vendoring it would) and builds the
EfficientRep YAML from that copy, with the runtime registration out of the picture. The script writes that patch in a
fresh interpreter, as a user runs it; its refusals call its ``main()`` in this process. The copy is imported in one
fresh interpreter per start-up hook setting (the hook acts when an interpreter starts), shared by that setting's tests.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import ultralytics
from ultralytics import YOLO

from helpers import REPO

SCRIPT = REPO / "patches" / "make_fork_patch.py"
CFG = REPO / "cfg" / "yolov8n-efficientrep.yaml"

BUILD = f"""
import json, traceback
import ultralytics
from ultralytics import YOLO
from ultralytics.nn import tasks

def bare_names():
    return {{"tasks": [YOLO(name).task for name in ("yolov8n-efficientrep.yaml", "yolov6n-repbifpan.yaml")]}}

def by_path():
    model = YOLO({str(CFG)!r}).model
    return {{"block_module": type(model.model[0]).__module__, "rows": [type(m).__name__ for m in model.model],
            "params": sum(p.numel() for p in model.parameters())}}

found = {{}}
for case in (bare_names, by_path):  # bare names first, as the first build of a fresh interpreter
    try:
        found[case.__name__] = case()
    except Exception:  # reported to the test of that case only
        found[case.__name__] = {{"error": traceback.format_exc()}}
print(json.dumps({{**found, "ultralytics": ultralytics.__file__,
                   "native": getattr(tasks, "YOLOV8_EFFICIENTREP_NATIVE", False),
                   "runtime_patched": hasattr(tasks.parse_model, "__yolov8_efficientrep_wraps__")}}))
"""


@pytest.fixture(scope="module")
def patch_script() -> Callable[[list[str]], int]:
    """The script's ``main()``, loaded from its file into this process: what ``python make_fork_patch.py`` runs. Its
    refusals raise ``SystemExit`` with the message, which that process prints on stderr with exit status 1."""
    spec = importlib.util.spec_from_file_location("make_fork_patch", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.main


@pytest.fixture(scope="module")
def fork(tmp_path_factory) -> Path:
    """A copy of the installed Ultralytics package with the patch applied by ``git apply``; returns its root."""
    root = tmp_path_factory.mktemp("fork")
    installed = Path(ultralytics.__file__).parent
    shutil.copytree(installed, root / "ultralytics", ignore=shutil.ignore_patterns("__pycache__"))
    patch = root / "efficientrep.patch"
    made = subprocess.run([sys.executable, str(SCRIPT), "-o", str(patch)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    applied = subprocess.run(["git", "apply", "--verbose", patch.name], cwd=root, capture_output=True, text=True)
    assert applied.returncode == 0 and "Applied patch ultralytics/nn/tasks.py cleanly" in applied.stderr, applied.stderr
    return root


@pytest.fixture(scope="module", params=["0", "1"])
def fork_build(request, fork) -> dict:
    """What ``BUILD`` prints in a fresh interpreter importing the patched copy, start-up hook off (0) or on (1): each
    case's result or its traceback, then what the interpreter ended with."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fork), str(REPO)]),
           "YOLOV8_EFFICIENTREP_HOOK": request.param}
    done = subprocess.run([sys.executable, "-c", BUILD], env=env, capture_output=True, text=True, cwd=fork)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def built(fork_build: dict, case: str) -> dict:
    """One case's result in ``fork_build``, failing the test that asks for it with the child's traceback."""
    result = fork_build[case]
    assert "error" not in result, result.get("error")
    return result


@pytest.mark.slow
def test_patched_ultralytics_builds_the_efficientrep_yaml_natively(fork, fork_build):
    model = built(fork_build, "by_path")
    assert Path(fork_build["ultralytics"]).parent == fork / "ultralytics"
    # the fork's own parser built it, with or without hook; no build in that interpreter patched the parser
    assert fork_build["native"] and not fork_build["runtime_patched"]
    assert model["block_module"] == "yolov8_efficientrep.blocks"  # checkpoints stay interchangeable with the plugin
    reference = YOLO(CFG).model  # the plugin route, in this process
    assert model["rows"] == [type(m).__name__ for m in reference.model]
    assert model["params"] == sum(p.numel() for p in reference.parameters())


@pytest.mark.slow
def test_the_fork_skips_only_the_parser_patch(fork_build):
    # bare names (the shipped YAMLs' lookup) and EffiDeHead's task guess
    assert built(fork_build, "bare_names")["tasks"] == ["detect", "detect"]


@pytest.mark.slow
def test_patch_script_refuses_an_already_patched_file(fork, patch_script):
    with pytest.raises(SystemExit, match="already patched for yolov8-efficientrep"):
        patch_script(["--tasks", str(fork / "ultralytics" / "nn" / "tasks.py")])


def test_patch_script_never_overwrites_the_output(patch_script, tmp_path):
    existing = tmp_path / "efficientrep.patch"
    existing.write_text("mine")
    with pytest.raises(SystemExit, match="exists"):
        patch_script(["-o", str(existing)])
    assert existing.read_text() == "mine"


def test_patch_script_names_the_file_it_cannot_recognise(patch_script, tmp_path):
    not_tasks = tmp_path / "tasks.py"
    not_tasks.write_text("def parse_model(d, ch):\n    return None\n")
    with pytest.raises(SystemExit, match="not recognised") as stop:
        patch_script(["--tasks", str(not_tasks)])
    assert str(not_tasks) in str(stop.value)
