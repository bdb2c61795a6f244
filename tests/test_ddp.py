"""Multi-GPU (DDP) workers see the plugin blocks: Ultralytics' real worker files, run as far as a CPU allows.

``yolo train device=0,1`` writes a worker script and launches it with ``torch.distributed.run``. Ultralytics 8.4's
worker unpickles the model the parent built (the plugin arrives through pickle); 8.3's worker imports only its trainer
module and builds the model from the YAML again (the plugin arrives through the start-up hook). ``ddp_worker_file.py``
writes the worker file for a trainer whose device is the CPU, so the worker trains on the CPU where it would otherwise
join an NCCL process group on its GPU: 8.4's in this process, which has the plugin as the user's ``yolo train`` has,
8.3's in a fresh process with 8.3 first on the path.
"""

from __future__ import annotations

import csv
import os
import socket
import sys
from pathlib import Path

import pytest

from ddp_worker_file import write_worker_file
from helpers import REPO

pytestmark = pytest.mark.slow  # each test trains in Ultralytics' worker file
CFG = REPO / "cfg" / "yolov8-efficientrep.yaml"  # unified: no scale letter for a folder name to be misread as
MATRIX = Path(os.environ.get("YOLOV8_EFFICIENTREP_MATRIX", REPO / ".ci" / "ultralytics-matrix"))


def worker_file(run_fresh, data: Path, project: Path, env: dict) -> Path:
    """Write Ultralytics' DDP worker file in a fresh process whose start-up hook is on; return its path."""
    result = run_fresh(sys.executable, REPO / "tests" / "ddp_worker_file.py", CFG, data, project, env=env)
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A free local TCP port for the launcher's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ultralytics_84_worker_unpickles_the_plugin_model_without_the_hook(installed_hook, run_fresh, shapes_data,
                                                                          tmp_path):
    file = Path(write_worker_file(str(CFG), str(shapes_data), str(tmp_path)))  # in this process, which has the plugin
    assert "torch_load" in file.read_text() and file.with_suffix(".pt").is_file()  # 8.4: the model is pickled
    # exactly how Ultralytics launches a worker; the launcher's temporary folder (torchelastic_*) lands in tmp_path
    run_fresh(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", free_port(),
              file, env={"YOLOV8_EFFICIENTREP_HOOK": "0", "TMPDIR": str(tmp_path)})
    assert len(list(csv.DictReader((tmp_path / "ddp" / "results.csv").open()))) == 1


@pytest.fixture
def ultralytics_83(tmp_path_factory) -> dict:
    """Environment that puts the version matrix's Ultralytics 8.3 first on the path, with its own settings dir."""
    releases = sorted(MATRIX.glob("8.3.*"), key=lambda p: tuple(map(int, p.name.split("."))))
    if not releases:
        pytest.skip(f"no Ultralytics 8.3 in {MATRIX}: run .ci/install-ultralytics-matrix")
    # 8.3 writes its older settings format: keep it out of the settings dir the other tests share with 8.4
    return {"PYTHONPATH": os.pathsep.join([str(releases[-1]), str(REPO)]),
            "YOLO_CONFIG_DIR": str(tmp_path_factory.mktemp("ultralytics-83-config"))}


def test_ultralytics_83_worker_rebuilds_the_plugin_model_from_the_yaml_through_the_hook(
        installed_hook, run_fresh, ultralytics_83, shapes_data, tmp_path):
    file = worker_file(run_fresh, shapes_data, tmp_path, env=ultralytics_83)
    assert "from ultralytics.models.yolo.detect.train import DetectionTrainer" in file.read_text()  # YAML re-parsed

    without_hook = run_fresh(sys.executable, file, env={**ultralytics_83, "YOLOV8_EFFICIENTREP_HOOK": "0"}, check=False)
    assert without_hook.returncode != 0 and "KeyError: 'RepVGGBlock'" in without_hook.stderr

    # Under torch.distributed.run, 8.3's data loader asks for the process group that only its CUDA set-up creates, so
    # the worker runs as a plain process here: same file, same imports, same model build.
    with_hook = run_fresh(sys.executable, file, env=ultralytics_83)
    assert "yolov8_efficientrep.blocks.RepVGGBlock" in with_hook.stdout + with_hook.stderr
    assert len(list(csv.DictReader((tmp_path / "ddp" / "results.csv").open()))) == 1
