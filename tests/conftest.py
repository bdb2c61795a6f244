"""Shared set-up: Ultralytics fully offline with a private config dir, a generated data set, BN randomization."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers import REPO, cpus_per_worker, ultralytics_messages

# Before anything imports Ultralytics: it reads these at import time and must never reach for the network.
CONFIG_DIR = Path(tempfile.mkdtemp(prefix="yolov8-efficientrep-tests-"))
os.environ.update(YOLO_OFFLINE="true", YOLO_AUTOINSTALL="false", YOLO_CONFIG_DIR=str(CONFIG_DIR),
                  TORCHINDUCTOR_CACHE_DIR=str(CONFIG_DIR / "torchinductor"))  # torch makes it when training starts
# The installed start-up hook (yolov8_efficientrep_hook.pth) registers the plugin in any interpreter that imports
# Ultralytics: off in plain subprocesses, so "without the plugin" means that; run_fresh turns it on (a user's shell).
os.environ["YOLOV8_EFFICIENTREP_HOOK"] = "0"

import pytest  # noqa: E402
import torch  # noqa: E402
from filelock import FileLock  # noqa: E402  (a requirement of torch)

from yolov8_efficientrep.configs import scaled_name  # noqa: E402
from yolov8_efficientrep.offline import seed_fonts  # noqa: E402
from yolov8_efficientrep.shapes import make_shapes_dataset  # noqa: E402

YOLO_CLI = str(Path(sys.executable).with_name("yolo"))  # the stock Ultralytics console script of this interpreter
seed_fonts()


def pytest_configure(config):
    """Give torch, and every process a test starts, one thread per core this process has to itself: one each for two
    pytest-xdist workers on two cores. With more threads than free cores, the threads wait on each other: six model
    tests took 126 s with two threads and 13 s with one on a busy 2-core VM, and the version matrix's child processes
    five times the CPU time."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # the xdist controller runs no test (its environment is the workers')
    threads = cpus_per_worker()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


# The slowest test files, started first: the suite runs one file per worker at a time (setup.cfg), so a long file
# started last would leave the other worker idle at the end. By CPU seconds each (the whole suite on a 2-core VM,
# 2026-12-07): qat 74, ultralytics_versions 72, family 52, int8 46, dense_tasks 33, yolov6_head 30, benchmarks 29,
# yolov6_seg 29, untrusted_files 28, import_yolov6 27, ddp 27, cli_errors 27, checkpoints 26, install 26, export 24,
# registration 23, ... The version matrix and test_family, which need no trained checkpoint, start while the first
# worker trains the shared one.
SLOWEST_FIRST = ("test_qat.py", "test_ultralytics_versions.py", "test_family.py", "test_int8.py", "test_dense_tasks.py",
                 "test_yolov6_head.py", "test_benchmarks.py", "test_yolov6_seg.py", "test_untrusted_files.py",
                 "test_import_yolov6.py", "test_ddp.py", "test_cli_errors.py", "test_checkpoints.py",
                 "test_install.py", "test_export.py", "test_registration.py", "test_yolov6_p6.py", "test_shapes.py",
                 "test_cli.py", "test_demo.py", "test_scaled_paths.py", "test_integration.py", "test_side_by_side.py",
                 "test_yolov6_lite.py", "test_yolov6_mbla.py", "test_patches.py", "test_restricted_loading.py",
                 "test_stored_attributes.py", "test_formats.py", "test_output_files.py")


def pytest_collection_modifyitems(items):
    """Order the test files slowest first (the order within a file is kept)."""
    rank = {name: index for index, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_sessionfinish(session, exitstatus):
    """Remove the private Ultralytics config dir."""
    shutil.rmtree(CONFIG_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> Path:
    """A tiny generated detection data set (16 train, 8 val images of 64 px); returns its data YAML."""
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), train=16, val=8, imgsz=64)


def run_folder(tmp_path_factory) -> Path:
    """A folder that every pytest-xdist worker of this run shares (a run without xdist has one of its own)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def trained_checkpoint(shapes_data, tmp_path_factory, run_fresh, installed_hook) -> Path:
    """``yolo train model=cfg/yolov8-efficientrep.yaml`` for one epoch on the shapes data (64 px), as a user types it
    in the repository: scale n, saved as Ultralytics saves it. Its ``best.pt``, with the run's ``results.csv`` two
    folders up; never modified (tests that write next to it take a copy).

    Trained once per test run: the first worker to ask trains it while the others wait for it.
    """
    project = run_folder(tmp_path_factory) / "trained-checkpoint"
    best = project / "train" / "weights" / "best.pt"
    with FileLock(project.with_suffix(".lock")):
        if not best.is_file():
            shutil.rmtree(project, ignore_errors=True)  # what a worker that failed left behind
            run_fresh("yolo", "train", "model=cfg/yolov8-efficientrep.yaml", f"data={shapes_data}", "epochs=1",
                      "imgsz=64", "batch=8", "workers=0", "device=cpu", "plots=False", "seed=0", "deterministic=True",
                      f"project={project}", "name=train", cwd=REPO)
    return best


@pytest.fixture(scope="session")
def scale_n_model():
    """Return a function: a shipped model config's stem -> its YOLO at scale n (``yolo26-efficientrep`` builds
    ``yolo26n-efficientrep.yaml``), built once for the session; callers copy the model before changing it."""
    from ultralytics import YOLO

    built = {}

    def get(stem: str):
        if stem not in built:
            built[stem] = YOLO(scaled_name(stem, "n"))
        return built[stem]

    return get


@pytest.fixture
def ultralytics_log():
    """Collect Ultralytics' log messages during the test (its logger does not propagate to pytest's caplog)."""
    with ultralytics_messages() as records:
        yield records


@pytest.fixture
def randomize_bn():
    """Return a function giving every BatchNorm in a module random statistics, so fusion has real work to do."""

    def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
        generator = torch.Generator().manual_seed(seed)
        for bn in module.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.running_mean.uniform_(-1, 1, generator=generator)
                bn.running_var.uniform_(0.5, 2, generator=generator)
                bn.weight.data.uniform_(0.5, 1.5, generator=generator)
                bn.bias.data.uniform_(-0.5, 0.5, generator=generator)
        return module.eval()

    return randomize


@pytest.fixture(scope="session")
def installed_hook() -> Path:
    """The start-up hook's .pth in this interpreter's site-packages; fails the test if the project is not installed."""
    import site

    for directory in site.getsitepackages():
        if (Path(directory) / "yolov8_efficientrep_hook.pth").is_file():
            return Path(directory) / "yolov8_efficientrep_hook.pth"
    pytest.fail(f"yolov8_efficientrep_hook.pth is not in {site.getsitepackages()}: install the project "
                f"(pip install -e .) so that fresh processes, such as the stock yolo CLI, get its start-up hook")


@pytest.fixture(scope="session")  # stateless; session scope lets module fixtures (a trained checkpoint) use it
def run_fresh():
    """Return a function that runs a command in a new process with the tests' offline Ultralytics environment.

    ``run_fresh("yolo", "train", ...)`` runs Ultralytics' stock console script; ``run_fresh(sys.executable, ...)`` a
    new interpreter. The start-up hook is on unless ``env`` sets ``YOLOV8_EFFICIENTREP_HOOK=0``. Fails the test with the
    process output unless ``check=False``.
    """

    def run(*command: str, cwd: Path | None = None, check: bool = True, env: dict | None = None, timeout: int = 600):
        command = [YOLO_CLI if command[0] == "yolo" else command[0], *map(str, command[1:])]
        env = {**os.environ, "YOLOV8_EFFICIENTREP_HOOK": "1", **(env or {})}
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(command)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    return run
