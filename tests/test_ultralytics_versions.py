"""The plugin against one or two releases of each supported Ultralytics minor, and one release outside the range.

``.ci/install-ultralytics-matrix`` installs the releases listed in ``.ci/ultralytics-versions.txt`` side by side
(``pip install --no-deps --target``). Each check runs ``ultralytics_version_check.py`` in a fresh interpreter with
``PYTHONPATH=<release dir>``, so that release shadows the installed Ultralytics while sharing its torch. Every release
is checked through the start-up hook (as the ``yolo`` CLI runs); the lowest, and the release outside, also importing the
plugin first (the Python route; on the newest 8.4 every fresh ``yolov8-efficientrep`` and ``python -m
yolov8_efficientrep`` process of the suite takes it, with the hook on).
"""

import configparser
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from yolov8_efficientrep.versions import MAX_VERSION, MIN_VERSION, SUPPORTED_ULTRALYTICS, version_tuple

from helpers import REPO, cpus_per_worker, rows_at_scale_n, shipped_model_yamls

CHECK = REPO / "tests" / "ultralytics_version_check.py"
MATRIX = Path(os.environ.get("YOLOV8_EFFICIENTREP_MATRIX", REPO / ".ci" / "ultralytics-matrix"))
RELEASES = [line.split()[0] for line in (REPO / ".ci" / "ultralytics-versions.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def supported(release: str) -> bool:
    """Return whether a release is inside the plugin's declared range."""
    return MIN_VERSION <= version_tuple(release) < MAX_VERSION


SUPPORTED = [release for release in RELEASES if supported(release)]
OUTSIDE = [release for release in RELEASES if not supported(release)]
# every release through the hook; the Python route for the releases outside and the lowest supported (the suite's
# fresh yolov8-efficientrep processes take it on the newest 8.4)
CHECKS = [(release, "hook") for release in RELEASES]
CHECKS += [(release, "import") for release in (*OUTSIDE, SUPPORTED[0])]


def run_check(release: str, route: str, out: Path) -> dict:
    """Run the version check for ``release`` through ``route`` ("hook" or "import") and return its findings."""
    directory = MATRIX / release
    config = out.with_suffix("")  # its own settings: releases disagree on the settings file and run at the same time
    config.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(directory), str(REPO)]), "YOLOV8_EFFICIENTREP_HOOK": "1",
           "YOLO_CONFIG_DIR": str(config), "OMP_NUM_THREADS": "1"}  # one thread: checks run one per CPU at once
    done = subprocess.run([sys.executable, str(CHECK), str(out), route], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and out.exists(), done.stderr[-4000:]
    result = json.loads(out.read_text())
    if "version" in result:  # the release under test, not the installed one, was imported
        assert result["version"] == release and directory in Path(result["file"]).parents
    return result


@pytest.fixture(scope="module")
def checks(tmp_path_factory) -> dict:
    """Run every check, as many at once as this worker has CPUs; return ``{(release, route): findings or error}``."""
    if not MATRIX.is_dir():
        pytest.skip(f"the Ultralytics version matrix is not installed in {MATRIX}: run .ci/install-ultralytics-matrix")
    missing = [release for release in RELEASES if not (MATRIX / release).is_dir()]
    assert not missing, f"{missing} missing from {MATRIX}: run .ci/install-ultralytics-matrix"
    out = tmp_path_factory.mktemp("versions")
    with ThreadPoolExecutor(cpus_per_worker()) as pool:
        futures = {key: pool.submit(run_check, *key, out / f"{key[0]}-{key[1]}.json") for key in CHECKS}
    return {key: future.exception() or future.result() for key, future in futures.items()}


def check(checks: dict, release: str, route: str) -> dict:
    """Return one check's findings, re-raising its failure in the test that asks for it."""
    result = checks[release, route]
    if isinstance(result, BaseException):
        raise result
    return result


@pytest.fixture(scope="module")
def reference() -> dict:
    """Parameter count and row types of every shipped model YAML at scale n, parsed by the suite's own Ultralytics as
    ultralytics_version_check.py parses them in each release."""
    return {path.name: rows_at_scale_n(path) for path in shipped_model_yamls()}


def test_the_matrix_covers_every_supported_minor_and_a_release_outside():
    """The declared range, written three times (the tuples the plugin checks, the text its errors print, setup.cfg's
    requirement), says one thing; the matrix has a release of each minor in it and one below it."""
    low, high = re.fullmatch(r">=([\d.]+),<([\d.]+)", SUPPORTED_ULTRALYTICS).groups()
    assert (version_tuple(low) + (0, 0))[:3] == MIN_VERSION and (version_tuple(high) + (0, 0))[:3] == MAX_VERSION
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    requires = [line.strip() for line in setup["options"]["install_requires"].splitlines() if "ultralytics" in line]
    assert requires == [f"ultralytics{SUPPORTED_ULTRALYTICS}"]
    assert MIN_VERSION[0] == MAX_VERSION[0]  # one major: its minors are the range
    minors = {version_tuple(release)[:2] for release in SUPPORTED}
    assert minors == {(MIN_VERSION[0], minor) for minor in range(MIN_VERSION[1], MAX_VERSION[1])}
    assert [release for release in OUTSIDE if version_tuple(release) < MIN_VERSION]


@pytest.mark.slow
@pytest.mark.parametrize("release, route", [key for key in CHECKS if key[0] in SUPPORTED])
def test_supported_release_registers_builds_trains_and_fuses(release, route, checks, reference):
    result = check(checks, release, route)
    assert not {"import_error", "check_error", "seg_error"} & set(result), result
    assert result["registered"] and result["hook_failure"] is None
    assert result["stock_yolov8n_params"] == 3_157_200  # Ultralytics' own models are untouched
    if route == "hook":  # every shipped model YAML builds exactly as with the suite's Ultralytics, or says it needs newer
        needs = {name: model for name, model in result["models"].items() if "needs" in model}
        assert {name: reference[name] for name in result["models"] if name not in needs} == {
            name: model for name, model in result["models"].items() if name not in needs}
        assert set(result["models"]) == set(reference) and all(
            version_tuple(model["needs"]) > version_tuple(release) for model in needs.values())
        assert result["odd_folder"] == {"scale": "s", "stem_width": 32}  # yolov8s-efficientrep.yaml in a6n0m/...
    train = result["train_forward"]
    assert train["rep_params"] > 0 and train["rep_params_with_grad"] == train["rep_params"]
    fuse = result["fuse"]
    assert fuse["blocks"] == 19 and fuse["unfused_blocks"] == 0 and fuse["relative_diff"] < 1e-4
    seg = result["seg_head"]  # 4 + 80 classes + 32 coefficients for 8x8 + 4x4 + 2x2 anchors; protos at stride 4
    assert seg["decoded"] == [1, 116, 84] and seg["protos"] == [1, 32, 16, 16] and seg["stems_with_grad"], seg


@pytest.mark.slow
@pytest.mark.parametrize("release", OUTSIDE)
def test_release_outside_the_range_fails_clearly_on_import(release, checks):
    error = check(checks, release, "import")["import_error"]
    assert error["type"] == "ImportError"
    assert f"ultralytics {release}" in error["message"] and SUPPORTED_ULTRALYTICS in error["message"]


@pytest.mark.slow
@pytest.mark.parametrize("release", OUTSIDE)
def test_release_outside_the_range_keeps_ultralytics_working_and_explains_plugin_rows(release, checks):
    result = check(checks, release, "hook")
    assert "import_error" not in result and not result["registered"]
    assert result["stock_yolov8n_params"] == 3_157_200  # the hook failed quietly: Ultralytics still works
    assert f"ultralytics {release}" in result["hook_failure"] and SUPPORTED_ULTRALYTICS in result["hook_failure"]
    error = result["check_error"]  # building a plugin YAML says why, instead of a bare KeyError
    assert error["type"] == "PluginNotRegisteredError" and "'RepVGGBlock'" in error["message"]
    assert f"ultralytics {release}" in error["message"] and SUPPORTED_ULTRALYTICS in error["message"]
