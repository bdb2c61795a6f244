"""Wheels built from the repository carry the start-up hook, and it works, and fails quietly, in fresh venvs.

The venvs get the wheel with ``--no-deps`` and a ``.pth`` that appends this environment's site-packages, so they
reuse its torch and Ultralytics instead of installing them again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from ultralytics import YOLO

from helpers import REPO

pytestmark = pytest.mark.slow  # wheels built, venvs made
PTH = "yolov8_efficientrep_hook.pth"
SOURCES = ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "LICENSE", "cfg", "yolov8_efficientrep",
           "yolov8_efficientrep_hook.py", PTH)


def run(*command, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command with the tests' offline environment and the hook on, outside the repository and without
    PYTHONPATH: a venv must find only what is installed in it."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(c) for c in command], env={**environment, "YOLOV8_EFFICIENTREP_HOOK": "1",
                                                            **(env or {})},
                            cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        pytest.fail(f"{command} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A copy of the files a build reads, so that building writes nothing into the repository."""
    copy = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, copy / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, copy / name)
    return copy


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory) -> Path:
    """The wheel ``pip wheel`` builds from the repository (offline, with this environment's setuptools)."""
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, source)
    return next(out.glob("yolov8_efficientrep-*.whl"))


@pytest.fixture(scope="module")
def editable_wheel(source, tmp_path_factory) -> Path:
    """The editable wheel of ``pip install -e``: what setuptools' PEP 660 hook builds for pip."""
    out = tmp_path_factory.mktemp("editable")
    code = "import sys; from setuptools import build_meta; build_meta.build_editable(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=source, check=True, capture_output=True)
    return next(out.glob("*.whl"))


def venv(root: Path, wheel: Path, reuse_this_environment: bool = True) -> Path:
    """Create a venv, install ``wheel`` into it without dependencies; return its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel)
    if reuse_this_environment:
        target = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip())
        (target / "zz_reuse_test_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


BUILD_PLUGIN_MODEL = """
import json, sys
from ultralytics import YOLO  # the plugin is never imported by name
model = YOLO("yolov8n-efficientrep.yaml").model  # found by bare name: the YAMLs ship in the wheel
print(json.dumps({"plugin": sys.modules["yolov8_efficientrep"].__file__,
                  "rows": [type(m).__name__ for m in model.model],
                  "params": sum(p.numel() for p in model.parameters())}))
"""


@pytest.mark.parametrize("kind", ["wheel", "editable_wheel"])
def test_wheels_carry_the_hook_at_their_root(kind, request):
    names = zipfile.ZipFile(request.getfixturevalue(kind)).namelist()
    assert PTH in names  # site-packages root: only there does Python run a .pth
    if kind == "wheel":
        assert "yolov8_efficientrep_hook.py" in names and "yolov8_efficientrep/cfg/yolov8-efficientrep.yaml" in names
        assert "yolov8_efficientrep/cfg/shapes-cls.yaml" in names  # every data YAML, found by bare name
        assert [n for n in names if re.fullmatch(r"yolov8_efficientrep-[^/]+\.dist-info/(licenses/)?LICENSE", n)]


@pytest.mark.parametrize("kind", ["wheel", "editable_wheel"])
def test_hook_registers_the_plugin_in_a_fresh_venv(kind, request, source, tmp_path):
    python = venv(tmp_path / "venv", request.getfixturevalue(kind))
    result = json.loads(run(python, "-c", BUILD_PLUGIN_MODEL).stdout.splitlines()[-1])
    home = tmp_path / "venv" if kind == "wheel" else source  # an editable install imports from the source tree
    assert home in Path(result["plugin"]).parents
    reference = YOLO("yolov8n-efficientrep.yaml").model
    assert result["rows"] == [type(m).__name__ for m in reference.model]
    assert result["params"] == sum(p.numel() for p in reference.parameters())


def test_hook_is_silent_and_inert_without_ultralytics(wheel, tmp_path):
    python = venv(tmp_path / "venv", wheel, reuse_this_environment=False)
    code = ("import sys, yolov8_efficientrep_hook as h; print(any(isinstance(f, h.UltralyticsImportFinder) "
            "for f in sys.meta_path))\ntry:\n import ultralytics\nexcept ModuleNotFoundError as e:\n print(e.name)")
    result = run(python, "-c", code)
    assert result.stdout.split() == ["True", "ultralytics"] and result.stderr == ""

    hook = run(python, "-c", "import yolov8_efficientrep_hook; print(yolov8_efficientrep_hook.__file__)").stdout
    Path(hook.strip()).unlink()  # the .pth stays behind, its module is gone
    started = run(python, "-c", "print('started')")
    assert started.stdout.strip() == "started" and started.stderr == ""


def test_half_installed_plugin_leaves_ultralytics_working_and_explains_plugin_rows(wheel, tmp_path):
    python = venv(tmp_path / "venv", wheel)
    package = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip())
    (package / "yolov8_efficientrep" / "rows.py").unlink()  # e.g. an interrupted install or upgrade

    cfg = REPO / "cfg" / "yolov8-efficientrep.yaml"  # unified: no scale letter for a folder name to be misread as
    code = f"""
import sys
from ultralytics import YOLO
print("yolov8n parameters:", sum(p.numel() for p in YOLO('yolov8n.yaml').model.parameters()), file=sys.stderr)
YOLO({str(cfg)!r})
"""
    result = run(python, "-c", code, check=False)
    # Ultralytics' own model builds, with no traceback before it (the hook fails quietly); the plugin's says why not
    before, stock, _ = result.stderr.partition("yolov8n parameters: 3157200\n")
    assert stock and "Traceback" not in before, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("yolov8_efficientrep_hook.PluginNotRegisteredError: model YAML module 'RepVGGBlock'")
    assert "No module named 'yolov8_efficientrep.rows'" in message and "import yolov8_efficientrep" in message


def test_hook_can_be_switched_off(wheel, tmp_path):
    python = venv(tmp_path / "venv", wheel)
    result = run(python, "-c", "import sys, ultralytics.nn.tasks as t; print('yolov8_efficientrep' in sys.modules, "
                               "hasattr(t, 'RepVGGBlock'))", env={"YOLOV8_EFFICIENTREP_HOOK": "0"})
    assert result.stdout.split()[-2:] == ["False", "False"]
