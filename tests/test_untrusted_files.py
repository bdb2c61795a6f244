"""Foreign files never run code and never blow up memory: crafted malicious checkpoints, each refused.

Every payload here is live: a test first shows that the same file (or its mechanism, at a harmless size) does its
work when the defence is not there (plain pickle, or torch's ``weights_only`` loader with the class allowed, in a
child process), and only then that the plugin refuses it with nothing run (a marker file is the proof) and within
bounded memory (the reader's peak resident memory measured in a child process, against reading an honest file).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shlex
import struct
import subprocess
import sys
import types
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from unittest import mock

import numpy.f2py.crackfortran
import numpy.testing._private.utils
import pytest
import torch
from torch import nn

from yolov8_efficientrep.blocks import BottleRep, ConvBNAct, RepBlock, RepVGGBlock
from yolov8_efficientrep.csp_blocks import CSPSPPF, BepC3, SimSPPF
from yolov8_efficientrep.heads import EffiDeHead
from yolov8_efficientrep.importer import YOLOv6ImportError, import_yolov6, read_checkpoint
from yolov8_efficientrep.limits import MAX_BLOCK_PARAMETERS, LimitError
from yolov8_efficientrep.rows import plugin_classes

GROWTH = 64 << 20  # bytes of peak memory a refusal may add to reading an honest file


class Call:
    """Pickles as ``func(*args)``: how a file makes an unpickler call something. ``func`` may itself be a ``Call``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self):  # pickle wants the reduce function callable; only unpickling ever calls it
        raise AssertionError


@contextlib.contextmanager
def yolov6_classes():
    """Provide classes that pickle as YOLOv6's (``yolov6.models.yolo.Model``, ``yolov6.layers.common.RepBlock``)."""
    modules = {name: types.ModuleType(name) for name in ("yolov6", "yolov6.models", "yolov6.models.yolo",
                                                          "yolov6.layers", "yolov6.layers.common")}
    for module, name in (("yolov6.models.yolo", "Model"), ("yolov6.layers.common", "RepBlock")):
        setattr(modules[module], name, type(name, (nn.Module,), {"__module__": module, "__qualname__": name}))
    with mock.patch.dict(sys.modules, modules):
        yield modules["yolov6.models.yolo"].Model, modules["yolov6.layers.common"].RepBlock


def yolov6_file(path: Path, payload: object = None, protocol: int = 2, yolov6: bool = True) -> Path:
    """Save a small YOLOv6-named network with ``payload`` under an extra key, as a downloaded file could hold it.

    With ``yolov6=False`` only the payload is saved: a file any interpreter can load without the defence.
    """
    if not yolov6:
        torch.save({"extra": payload}, path, pickle_protocol=protocol)
        return path
    with yolov6_classes() as (model_class, _):
        model = model_class()
        model.conv = nn.Conv2d(3, 8, 3).half()
        torch.save({"model": model, "ema": None, "epoch": 1, "extra": payload}, path, pickle_protocol=protocol)
    return path


def with_pickle(path: Path, source: Path, data: bytes, compress: bool = False) -> Path:
    """Copy the archive ``source`` to ``path`` with ``data`` as its pickle (and its tensors deflated if asked)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as archive:
        for info in original.infolist():
            content = data if info.filename.endswith("/data.pkl") else original.read(info.filename)
            deflate = compress and "/data/" in info.filename
            archive.writestr(info.filename, content, zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
    return path


def run_python(code: str, *args: object, limit_gb: int | None = None, timeout: int = 120) -> str:
    """Run ``code`` in a fresh interpreter (optionally with an address-space limit); return what it printed."""
    if limit_gb:
        code = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit_gb << 30}, {limit_gb << 30}))\n{code}"
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "YOLOV8_EFFICIENTREP_HOOK": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# --- payloads that run code ------------------------------------------------------------------------------------------

def _code_payloads(marker: Path) -> dict:
    write = f"open({str(marker)!r}, 'w').close()"
    builtins_dict = Call(getattr, Call(getattr, Call(getattr, nn.Conv2d, "__init__"), "__globals__"), "get")
    importer = Call(getattr, Call(builtins_dict, "__builtins__"), "get")
    return {  # name -> what the file pickles
        "numpy.testing exec helper": Call(numpy.testing._private.utils.runstring, write, {}),
        "numpy.f2py eval helper": Call(numpy.f2py.crackfortran.myeval, f"{write} or 1"),
        "builtins.exec": Call(exec, write),
        "builtins.eval": Call(eval, write),
        "os.system": Call(os.system, f"touch {shlex.quote(str(marker))}"),
        "subprocess": Call(subprocess.check_call, ["touch", str(marker)]),
        "getattr chain from an allowed layer class to os.system": Call(
            Call(getattr, Call(Call(importer, "__import__"), "os"), "system"), f"touch {shlex.quote(str(marker))}"),
    }


CODE_PAYLOADS = list(_code_payloads(Path("m")))
PROTOCOLS = {"protocol 2 (GLOBAL)": 2, "protocol 4 (STACK_GLOBAL)": 4}


@pytest.fixture(scope="module")
def live_payloads(tmp_path_factory) -> Path:
    """Every code payload, saved in each protocol and loaded without the defence in one child process; return the
    folder of the markers they left (a marker is named after its family and protocol)."""
    folder = tmp_path_factory.mktemp("live")
    files = [yolov6_file(folder / f"{index}.pt", _code_payloads(folder / f"{family}-{protocol}")[family], protocol,
                         yolov6=False)
             for index, (family, protocol) in enumerate((f, p) for f in CODE_PAYLOADS for p in PROTOCOLS.values())]
    run_python("import sys, torch\nfor path in sys.argv[1:]:\n    torch.load(path, weights_only=False)", *files)
    return folder


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("family", CODE_PAYLOADS)
def test_code_payloads_run_under_plain_pickle_and_never_under_the_reader(family, protocol, live_payloads, tmp_path):
    protocol, marker = PROTOCOLS[protocol], tmp_path / "marker"
    assert (live_payloads / f"{family}-{protocol}").exists(), "the payload does not run even without the defence"
    source = yolov6_file(tmp_path / "evil.pt", _code_payloads(marker)[family], protocol)
    with pytest.raises(YOLOv6ImportError, match="nothing in the file was run") as refused:
        import_yolov6(source, tmp_path / "out.pt")
    assert not marker.exists() and not (tmp_path / "out.pt").exists()
    assert len(str(refused.value).splitlines()) == 1 and str(source) in str(refused.value)


def test_a_protocol_0_instruction_is_refused_unrun(tmp_path):
    live, marker = tmp_path / "live", tmp_path / "marker"
    base = yolov6_file(tmp_path / "base.pt")
    instruction = "(S'touch {}'\nios\nsystem\n."  # INST: module and name inline, called with the marked arguments
    assert pickle.loads(instruction.format(live).encode()) == 0 and live.exists()
    source = with_pickle(tmp_path / "evil.pt", base, instruction.format(marker).encode())
    with pytest.raises(YOLOv6ImportError, match="pickles os.system"):
        read_checkpoint(source)
    assert not marker.exists()


# --- payloads that allocate what the file asks for -------------------------------------------------------------------

def _view_bomb(tmp_path: Path, yolov6: bool = True) -> Path:
    """A 10^10-element tensor viewing a one-element storage (zero strides): any float() materializes 40 GB."""
    with warnings.catch_warnings():  # a typed storage pickles as torch.save writes tensors: ("storage", FloatStorage..)
        warnings.simplefilter("ignore", UserWarning)
        storage = torch.zeros(1).storage()
    bomb = Call(torch._utils._rebuild_tensor_v2, storage, 0, (100_000, 100_000), (0, 0), False, OrderedDict())
    return yolov6_file(tmp_path / "view.pt", bomb, yolov6=yolov6)


def _zip_bomb(tmp_path: Path, yolov6: bool = True) -> Path:
    """64 MB of tensor data deflated into a file of well under 1 MB."""
    base = yolov6_file(tmp_path / "base.pt", torch.zeros(16 << 20), yolov6=yolov6)
    with zipfile.ZipFile(base) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
    return with_pickle(tmp_path / "zip.pt", base, data, compress=True)


def _raw(tmp_path: Path, name: str, data: bytes) -> Path:
    return with_pickle(tmp_path / f"{name}.pt", yolov6_file(tmp_path / "base.pt"), data)


def _nested(depth: int) -> bytes:
    """A pickle naming a YOLOv6 class (so it passes for one), then lists nested ``depth`` deep."""
    return b"\x80\x02cyolov6.models.yolo\nModel\n0" + b"]" * depth + b"a" * (depth - 1) + b"."


PROOF = ("import torch, sys; from torch import nn\n"
         "with torch.serialization.safe_globals([nn.{0}]):\n"
         "    print(type(torch.load(sys.argv[1], weights_only=True)['extra']).__name__)")
# name -> (build the refused file, what the refusal says, Python that shows the mechanism working without the defence)
ALLOCATION_PAYLOADS = {
    "torch layer constructor (nn.Linear(20000, 20000))": (
        lambda t: yolov6_file(t / "linear.pt", Call(nn.Linear, 20000, 20000)),
        "pickles torch.nn.modules.linear.Linear, which", PROOF.format("Linear")),
    "allow-listed layer class called (Conv2d(8192, 8192, 15))": (
        lambda t: yolov6_file(t / "conv.pt", Call(nn.Conv2d, 8192, 8192, 15)),
        "constructs torch.nn.modules.conv.Conv2d with arguments", PROOF.format("Conv2d")),
    "plugin block constructor (RepBlock(8, 8, 10**6))": (
        lambda t: yolov6_file(t / "repblock.pt", Call(RepBlock, 8, 8, 10**6)),
        "pickles yolov8_efficientrep.blocks.RepBlock, which", None),
    "tensor view beyond its storage": (_view_bomb, "reaches beyond its storage record of 1 elements", None),
    "zip bomb (deflated tensor record)": (_zip_bomb, "holds compressed records", None),
    "bytes length the file does not hold (2**40)": (
        lambda t: _raw(t, "bytes8", b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"x" * 10 + b"."),
        "expected 1099511627776 bytes", None),
    "memo index 2**31": (lambda t: _raw(t, "memo", b"\x80\x02N" + b"r" + struct.pack("<I", 2**31 - 1) + b"."),
                         "memo slot 2147483647", None),
    "nesting 100,000 deep": (lambda t: _raw(t, "nested", _nested(100_000)), "levels deep", None),
}

READ_ALL = """
import json, resource, sys
from yolov8_efficientrep.importer import YOLOv6ImportError, read_checkpoint

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

read_checkpoint(sys.argv[1])  # an honest file: what reading costs
report = {"honest": peak()}
for path in sys.argv[2:]:
    try:
        read_checkpoint(path)
        report[path] = ("read", peak())
    except YOLOv6ImportError as error:
        report[path] = (str(error), peak())
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    """Every allocation payload read by the plugin's reader in one child process: message and peak memory each."""
    tmp = tmp_path_factory.mktemp("allocation")
    files = {name: build(tmp) for name, (build, _, _) in ALLOCATION_PAYLOADS.items()}
    honest = yolov6_file(tmp / "honest.pt", {"weights": torch.zeros(16 << 20)})  # the same 64 MB, uncompressed
    report = json.loads(run_python(READ_ALL, honest, *files.values(), timeout=300))
    return {name: report[str(path)] for name, path in files.items()}, report["honest"], files


@pytest.mark.parametrize("family", list(ALLOCATION_PAYLOADS))
def test_allocation_payloads_are_refused_in_bounded_memory(family, refusals):
    results, honest, files = refusals
    message, peak = results[family]
    assert message.startswith(str(files[family])) and len(message.splitlines()) == 1
    assert ALLOCATION_PAYLOADS[family][1] in message  # refused by the defence against this payload, not by another
    assert peak <= honest + GROWTH, f"{family}: peak {peak / 1e6:.0f} MB vs {honest / 1e6:.0f} MB for an honest file"


@pytest.mark.parametrize("family", [name for name, (_, _, proof) in ALLOCATION_PAYLOADS.items() if proof])
def test_constructor_payloads_construct_without_the_defence(family, tmp_path):
    proof = ALLOCATION_PAYLOADS[family][2]
    payload = Call(nn.Linear, 4, 4) if "Linear" in family else Call(nn.Conv2d, 3, 8, 3)  # the same call, small
    printed = run_python(proof, yolov6_file(tmp_path / "small.pt", payload, yolov6=False))
    assert printed.strip() in ("Linear", "Conv2d")  # the class was called with the file's arguments


def test_memory_payloads_allocate_without_the_defence(tmp_path):
    code = ("import sys, torch\n"
            "print(torch.load(sys.argv[1], weights_only=True, map_location='cpu')['extra'].numel())")
    view = _view_bomb(tmp_path, yolov6=False)
    assert run_python(code, view).strip() == str(10**10)  # a view of 10^10 elements, ready to be materialized
    zipped = _zip_bomb(tmp_path, yolov6=False)
    assert run_python(code, zipped).strip() == str(16 << 20)  # torch inflates deflated records
    for data in (b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"x" * 10 + b".",
                 b"\x80\x02N" + b"r" + struct.pack("<I", 2**31 - 1) + b"."):
        printed = run_python("import pickle, sys\ntry:\n    pickle.loads(bytes.fromhex(sys.argv[1]))\n"
                             "except MemoryError:\n    print('MemoryError')", data.hex(), limit_gb=8)
        assert printed.strip() == "MemoryError"  # the unpickler sized an allocation from the file


# --- the plugin's classes are not allowed process-wide; its blocks refuse absurd sizes -------------------------------

@pytest.mark.parametrize("build", [
    lambda: RepBlock(8, 8, 10**6), lambda: RepBlock(8, 8, 64.5), lambda: RepVGGBlock(10**6, 8),
    lambda: RepVGGBlock(8192, 8192), lambda: BottleRep(10**5, 10**5), lambda: BepC3(64, 64, 10**4),
    lambda: ConvBNAct(8, 8, 0), lambda: ConvBNAct(8, 8, 101), lambda: SimSPPF(8, 8, 0), lambda: SimSPPF(8, 8, -5),
    lambda: SimSPPF(8, 8, 4), lambda: CSPSPPF(8, 8, 2), lambda: CSPSPPF(10**6, 8),
    lambda: EffiDeHead(10**9, 16, ch=(64, 128, 256)), lambda: EffiDeHead(80, 10**6, ch=(64, 128, 256)),
    lambda: EffiDeHead(80, 16, ch=(10**6,)),
], ids=["RepBlock n=1e6", "RepBlock n=64.5", "RepVGGBlock c1=1e6", "RepVGGBlock 8192x8192", "BottleRep 1e5",
        "BepC3 n=1e4", "ConvBNAct k=0", "ConvBNAct k=101", "SimSPPF k=0", "SimSPPF k=-5", "SimSPPF k=4",
        "CSPSPPF k=2", "CSPSPPF c1=1e6", "EffiDeHead nc=1e9", "EffiDeHead reg_max=1e6", "EffiDeHead ch=1e6"])
def test_blocks_refuse_absurd_sizes_before_allocating(build):
    with pytest.raises(ValueError) as refused:
        build()
    assert len(str(refused.value).splitlines()) == 1


def test_the_config_with_the_largest_shipped_block_builds_within_the_bounds():
    from ultralytics import YOLO

    model = YOLO("yolov6x-repbifpan.yaml").model  # its 98M-parameter RepBlock is the bound's stated reference
    largest = max(sum(p.numel() for p in layer.parameters()) for layer in model.model)
    assert largest == 98_350_080 and largest * 2.7 < MAX_BLOCK_PARAMETERS


# --- sizes and values a YOLOv6 file or a flag chooses ------------------------------------------------------------------

def test_a_class_count_beyond_the_bounds_is_refused_before_building(tmp_path):
    source = yolov6_file(tmp_path / "any.pt")
    with pytest.raises(LimitError, match="number of classes must be a positive integer up to 25,000, got 100000000"):
        import_yolov6(source, tmp_path / "out.pt", nc=100_000_000)


@pytest.fixture(scope="module")
def yolov6n():
    """YOLOv6's own v3.0 N network (built by YOLOv6's code), float32, with measured-looking BN statistics."""
    ym = pytest.importorskip("yolov6_models")
    pytest.importorskip("yolov6.models.yolo", reason="YOLOv6's code is not installed: pip install --no-deps "
                                                      "yolov6detect==0.4.1")
    return ym, ym.build(ym.yolov6_config("v3", "n", "n", "repvgg"), "0.3", distill_ns=True)


@pytest.mark.parametrize("where, value, message", [
    ("backbone.stem.rbr_dense.conv.weight", float("nan"), "model tensor backbone.stem.rbr_dense.conv.weight holds NaN"),
    ("neck.Rep_p4.conv1.rbr_dense.bn.running_var", float("inf"),
     "model tensor neck.Rep_p4.conv1.rbr_dense.bn.running_var holds NaN or infinite values"),
])
def test_non_finite_weights_are_refused_naming_the_tensor(yolov6n, where, value, message, tmp_path):
    ym, model = yolov6n
    broken = __import__("copy").deepcopy(model)
    broken.get_parameter(where).data.fill_(value) if where.endswith("weight") else \
        broken.get_buffer(where).fill_(value)
    source = ym.save(broken, tmp_path / "broken.pt")
    with pytest.raises(YOLOv6ImportError, match=message):
        import_yolov6(source, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_a_head_class_count_from_the_file_is_bounded(yolov6n, tmp_path):
    ym, model = yolov6n
    broken = __import__("copy").deepcopy(model)
    broken.detect.nc = 10**9
    source = ym.save(broken, tmp_path / "huge_nc.pt")
    with pytest.raises(LimitError, match="its head's nc: the number of classes must be .* got 1000000000"):
        import_yolov6(source, tmp_path / "out.pt")
