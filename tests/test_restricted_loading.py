"""Ultralytics' restricted loader (``ULTRALYTICS_SAFE_LOAD=1``) with the plugin's classes: allowed only while it runs,
only on its thread, and within a parameter budget set by the size of the file it loads.

Each payload is shown live where the defence is switched off (in a child with an address-space limit, or with the
thread check replaced by a no-op), then refused with it, quickly and without growing memory. The scenarios that need a
fresh interpreter (torch's allow-list as importing the plugin leaves it, and whole restricted loads through ``YOLO``)
share one, run in an order that keeps each as isolated as it needs (see ``CHILD``); each test asserts on its own.
"""

from __future__ import annotations

import json
import pickle
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

from helpers import REPO

GROWTH = 64 << 20  # bytes of peak memory a refusal may add to loading an honest file
HEADROOM = 1 << 30  # address space a limited load may add to the process as it stands: the payloads ask for more


class Call:
    """Pickles as ``func(*args)``: how a file makes an unpickler call something."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# Loads each file of argv[1] (JSON {scenario: file}) once, in one interpreter with the start-up hook (which registers
# the plugin as importing it does) and ULTRALYTICS_SAFE_LOAD=1 (which Ultralytics reads only when it loads); prints
# {scenario: outcome} as JSON, the budget's as [with it, without it]. The order is the isolation: the allow-list is
# read before any restricted load (Ultralytics' loads add to it for the process's life); the budget's defended load
# is the process's first restricted load, so no earlier load's budget can stand in for its file's; the budget is
# switched off last, for good. Each load is measured by limited.py, the budget's under an address-space limit of
# argv[2] above the process as it is then.
CHILD = """
import json, sys, torch, yolov8_efficientrep
from limited import measured

files, headroom = json.loads(sys.argv[1]), int(sys.argv[2])
report = {"allow_list": measured(lambda: torch.load(files["allow_list"], weights_only=True))}
from ultralytics import YOLO
import yolov8_efficientrep.limits as limits
budgeted = measured(lambda: YOLO(files["budget"]), headroom)
report.update(sizes=measured(lambda: YOLO(files["sizes"])), honest=measured(lambda: YOLO(files["honest"])))
limits._charge = lambda owner, parameters: None
report["budget"] = [budgeted, measured(lambda: YOLO(files["budget"]), headroom)]
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> Path:
    """A checkpoint of yolov8n-efficientrep as Ultralytics saves it."""
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("honest") / "honest.pt"
    YOLO("yolov8n-efficientrep.yaml").save(path)
    return path


@pytest.fixture(scope="module")
def payloads(tmp_path_factory, honest) -> dict[str, Path]:
    """The files ``CHILD`` loads, by scenario: each test's crafted one, and the honest checkpoint."""
    folder = tmp_path_factory.mktemp("payloads")
    calls = [Call(ConvBNAct, 5400, 5400, 3), Call(SimSPPF, 7000, 7000), Call(BottleRep, 2800, 2800),
             Call(RepVGGBlock, 5000, 5000)]
    contents = {"allow_list": {"model": Call(RepBlock, 8, 8, 10**6)},
                "sizes": {"model": Call(RepBlock, 8, 8, 10**6), "train_args": {}},
                "budget": {"model": calls, "train_args": {}}}
    paths = {"honest": honest}
    for scenario, content in contents.items():
        paths[scenario] = folder / f"{scenario}.pt"
        torch.save(content, paths[scenario])
    return paths


@pytest.fixture(scope="module")
def fresh(run_fresh, payloads) -> dict:
    """Each scenario's outcome in one fresh interpreter (see ``CHILD``), by scenario."""
    files = json.dumps({scenario: str(path) for scenario, path in payloads.items()})
    result = run_fresh(sys.executable, "-c", CHILD, files, HEADROOM, timeout=180,
                       env={"ULTRALYTICS_SAFE_LOAD": "1", "PYTHONPATH": str(REPO / "tests")})  # limited.py
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_plugin_adds_nothing_to_torchs_weights_only_allow_list(tmp_path, fresh):
    small = tmp_path / "small.pt"
    torch.save({"model": Call(RepBlock, 8, 8, 2)}, small)
    # the allow-list as importing the plugin once made it, on a thread marked as loading: the payload's mechanism
    with torch.serialization.safe_globals(plugin_classes()), restricted_load(2**62):
        assert isinstance(torch.load(small, weights_only=True)["model"], RepBlock)
    refused = fresh["allow_list"]
    # torch's own refusal names the class by its dotted path (the plugin's thread check, a second defence, does not)
    assert refused["outcome"] == "UnpicklingError", refused
    assert "yolov8_efficientrep.blocks.RepBlock" in refused["message"], refused


def test_restricted_ultralytics_loading_refuses_a_block_called_with_absurd_sizes(fresh):
    refused, honest = fresh["sizes"], fresh["honest"]
    assert refused["outcome"] == "LimitError" and "repeats n must be" in refused["message"], refused
    assert refused["growth"] <= GROWTH, refused  # the block was refused before it allocated
    assert honest["outcome"] == "done", honest  # and the same loader, in the same process, loads an honest checkpoint


def test_a_small_file_cannot_make_the_constructors_build_gigabytes_of_blocks_each_within_bounds(payloads, fresh):
    """Four constructor calls, each under every per-block bound (268M parameters), 4.2 GB of float32 together."""
    assert payloads["budget"].stat().st_size < 2048
    defended, undefended = fresh["budget"]
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
