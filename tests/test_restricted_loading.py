"""Ultralytics' restricted loader (``ULTRALYTICS_SAFE_LOAD=1``) with the plugin's classes: allowed only while it runs,
only on its thread, and within a parameter budget set by the size of the file it loads.

Each payload is shown live where the defence is switched off (in a child with an address-space limit, or with the
thread check replaced by a no-op), then refused with it, quickly and without growing memory.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from yolov8_efficientrep import limits
from yolov8_efficientrep.blocks import BottleRep, ConvBNAct, RepBlock, RepVGGBlock
from yolov8_efficientrep.csp_blocks import SimSPPF
from yolov8_efficientrep.integration import restricted_loading
from yolov8_efficientrep.limits import LimitError, RestrictedLoadOnly, restricted_load
from yolov8_efficientrep.rows import plugin_classes

GROWTH = 64 << 20  # bytes of peak memory a refusal may add to loading an honest file
HEADROOM = 1 << 30  # address space a child may add once Ultralytics is imported: the payloads ask for more


class Call:
    """Pickles as ``func(*args)``: how a file makes an unpickler call something."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def run_python(code: str, *args: object, env: dict | None = None) -> str:
    """Run ``code`` in a fresh interpreter with the plugin's start-up hook off; return what it printed."""
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "YOLOV8_EFFICIENTREP_HOOK": "0", **(env or {})})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> Path:
    """A checkpoint of yolov8n-efficientrep as Ultralytics saves it."""
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("honest") / "honest.pt"
    YOLO("yolov8n-efficientrep.yaml").save(path)
    return path


def test_importing_the_plugin_adds_nothing_to_torchs_weights_only_allow_list(tmp_path):
    attack, small = tmp_path / "attack.pt", tmp_path / "small.pt"
    torch.save({"model": Call(RepBlock, 8, 8, 10**6)}, attack)
    torch.save({"model": Call(RepBlock, 8, 8, 2)}, small)
    # the allow-list as importing the plugin once made it, on a thread marked as loading: the payload's mechanism
    with torch.serialization.safe_globals(plugin_classes()), restricted_load(2**62):
        assert isinstance(torch.load(small, weights_only=True)["model"], RepBlock)
    code = ("import pickle, sys, torch, yolov8_efficientrep\n"
            "try:\n    torch.load(sys.argv[1], weights_only=True)\n"
            "except pickle.UnpicklingError as error:\n    print('refused', 'RepBlock' in str(error))")
    assert run_python(code, attack).strip() == "refused True"


def test_restricted_ultralytics_loading_refuses_a_block_called_with_absurd_sizes(tmp_path, run_fresh, honest):
    attack = tmp_path / "attack.pt"
    torch.save({"model": Call(RepBlock, 8, 8, 10**6), "train_args": {}}, attack)
    code = ("import resource, sys\nfrom ultralytics import YOLO\n"
            "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10\n"
            "for path in sys.argv[1:]:\n    before = peak()\n"
            "    try:\n        YOLO(path)\n        print('loaded')\n    except Exception as error:\n"
            "        print('refused', type(error).__name__, error)\n"
            "    print(peak() - before)\n")
    lines = run_fresh(sys.executable, "-c", code, attack, honest, env={"ULTRALYTICS_SAFE_LOAD": "1"}, timeout=120
                      ).stdout.strip().splitlines()[-4:]
    assert lines[0].startswith("refused LimitError") and "repeats n must be" in lines[0]
    assert int(lines[1]) <= GROWTH  # the block was refused before it allocated
    assert lines[2] == "loaded"  # and the same loader, in the same process, loads an honest checkpoint


# Loads argv[1] through Ultralytics' restricted loader with the budget, then with it switched off; prints JSON.
BUDGET_CHILD = """
import json, resource, sys, time
from ultralytics import YOLO
import yolov8_efficientrep.limits as limits

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10

def attempt():
    before, start = peak(), time.perf_counter()
    try:
        YOLO(sys.argv[1])
        return {"outcome": "loaded"}
    except Exception as error:
        return {"outcome": type(error).__name__, "message": str(error), "seconds": time.perf_counter() - start,
                "growth": peak() - before}

size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) << 10
resource.setrlimit(resource.RLIMIT_AS, (size + int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_AS)[1]))
defended = attempt()
limits._charge = lambda owner, parameters: None
print(json.dumps({"defended": defended, "undefended": attempt()}))
"""


def test_a_small_file_cannot_make_the_constructors_build_gigabytes_of_blocks_each_within_bounds(tmp_path):
    """Four constructor calls, each under every per-block bound (268M parameters), 4.2 GB of float32 together."""
    calls = [Call(ConvBNAct, 5400, 5400, 3), Call(SimSPPF, 7000, 7000), Call(BottleRep, 2800, 2800),
             Call(RepVGGBlock, 5000, 5000)]
    attack = tmp_path / "attack.pt"
    torch.save({"model": calls, "train_args": {}}, attack)
    assert attack.stat().st_size < 2048
    report = json.loads(run_python(BUDGET_CHILD, attack, HEADROOM, env={"ULTRALYTICS_SAFE_LOAD": "1"}
                                   ).strip().splitlines()[-1])
    defended, undefended = report["defended"], report["undefended"]
    assert defended["outcome"] == "LimitError", defended
    assert defended["message"].startswith("ConvBNAct(c1=5400, c2=5400, k=3, s=1): the file being loaded asks the "
                                          "plugin's constructors for 262,440,000 more parameters, beyond the ")
    assert defended["seconds"] < 1 and defended["growth"] <= GROWTH, defended
    # without the budget every call runs, until the address-space limit stops an allocation
    assert undefended["outcome"] in ("RuntimeError", "MemoryError") and "alloc" in undefended["message"], undefended


def test_an_honest_restricted_load_calls_no_constructor(honest, monkeypatch):
    """The budget's premise: torch rebuilds an honest checkpoint's modules without their constructors."""
    from ultralytics.nn.tasks import torch_safe_load

    monkeypatch.setattr(restricted_loading, "_file_size", lambda weight: 0)  # a budget of no parameters at all
    checkpoint, _ = torch_safe_load(honest, safe_only=True)
    assert any(isinstance(m, RepVGGBlock) for m in checkpoint["model"].modules())


def test_every_plugin_class_is_built_by_the_weights_only_unpickler_only_on_a_loading_thread():
    assert all(issubclass(cls, RestrictedLoadOnly) for cls in plugin_classes())


def loads_beside(restricted: Path, other: Path) -> tuple[object, object]:
    """Hold Ultralytics' restricted loader open on ``restricted`` in one thread while another thread, and then the
    loading thread itself, ``torch.load(weights_only=True)`` the file ``other``; return what each got (or raised)."""
    from ultralytics.nn.tasks import _SafeLoad

    inside, done, results = threading.Event(), threading.Event(), {}

    def load(key: str):
        try:
            results[key] = torch.load(other, weights_only=True)["model"]
        except Exception as error:
            results[key] = error

    def loading():
        with _SafeLoad.loading(restricted):
            inside.set()
            done.wait(30)
            load("own")

    holder = threading.Thread(target=loading)
    holder.start()
    assert inside.wait(30)
    beside = threading.Thread(target=load, args=("beside",))
    beside.start()
    beside.join(30)
    done.set()
    holder.join(30)
    return results["beside"], results["own"]


def test_another_threads_weights_only_load_cannot_build_the_plugins_classes_during_a_restricted_load(
        tmp_path, honest, monkeypatch):
    other = tmp_path / "other.pt"
    torch.save({"model": Call(RepBlock, 16, 16, 2)}, other)
    beside, own = loads_beside(honest, other)
    assert isinstance(beside, pickle.UnpicklingError) and "RepBlock: torch.load(weights_only=True) may rebuild the " \
        "yolov8_efficientrep classes only inside Ultralytics' restricted loader, on its own thread" in str(beside)
    assert isinstance(own, RepBlock)  # the loading thread itself may (its budget: the honest file's size)
    monkeypatch.setattr(limits, "_weights_only_unpickler_calls", lambda depth: False)  # the thread check off
    beside, _ = loads_beside(honest, other)
    assert isinstance(beside, RepBlock)  # live: the allow-list alone let the other thread construct it


def test_each_loading_thread_has_its_own_budget(tmp_path, honest):
    """A large file loading on one thread lends no budget to a small one loading on another."""
    small = tmp_path / "small.pt"
    torch.save({"model": Call(RepVGGBlock, 512, 512)}, small)  # 2.6M parameters from a file of about 1 KB
    from ultralytics.nn.tasks import _SafeLoad

    errors = []

    def load_small():
        try:
            with _SafeLoad.loading(small):
                torch.load(small, weights_only=True)
        except LimitError as error:
            errors.append(error)

    with _SafeLoad.loading(honest):  # about 19 MB: its budget would cover the small file's call
        thread = threading.Thread(target=load_small)
        thread.start()
        thread.join(30)
    assert len(errors) == 1 and "beyond the" in str(errors[0]) and "left of its budget" in str(errors[0])
