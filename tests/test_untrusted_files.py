"""Foreign files never run code, never choose the memory or time spent, never change the process: crafted files.

Every payload here is live: a test first shows that the same file (or its mechanism) does its work without the
defence (plain pickle or ``torch.load``: in a child process with a time and memory limit where it would hang, crash
or exhaust memory, in this process where it only touches a marker file or builds what is then counted; a marker file
is the proof of code), and only then that the plugin refuses it in one line, in bounded time, with nothing run. The
reader itself runs in a jailed child (``yolov8_efficientrep/untrusted/``); tests of its limits use small limits.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shlex
import signal
import struct
import subprocess
import sys
import time
import tempfile
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
from yolov8_efficientrep.checkpoints import fuse_checkpoint
from yolov8_efficientrep.cli import main
from yolov8_efficientrep.csp_blocks import CSPSPPF, BepC3, SimSPPF
from yolov8_efficientrep.errors import EfficientRepError, UntrustedFileError
from yolov8_efficientrep.heads import EffiDeHead
from yolov8_efficientrep.importer import YOLOv6ImportError, import_yolov6, read_checkpoint
from yolov8_efficientrep.importer.allow_list import RECORD_CLASSES
from yolov8_efficientrep.limits import MAX_BLOCK_PARAMETERS, LimitError
from yolov8_efficientrep.untrusted.decode import read_untrusted
from yolov8_efficientrep.untrusted.jail import Limits, _answer

FAST = 10  # seconds any refusal may take, the child's start included


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


def yolov6_file(path: Path, payload: object = None, protocol: int = 2, yolov6: bool = True,
                weights: torch.Tensor | None = None) -> Path:
    """Save a small YOLOv6-named network with ``payload`` under an extra key, as a downloaded file could hold it.

    With ``yolov6=False`` only the payload is saved: a file any interpreter can load without the defence.
    """
    if not yolov6:
        torch.save({"extra": payload}, path, pickle_protocol=protocol)
        return path
    with yolov6_classes() as (model_class, _):
        model = model_class()
        model.conv = nn.Conv2d(3, 8, 3).half()
        if weights is not None:
            model.conv.weight = nn.Parameter(weights)
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


def attribute_pickle(payload: bytes) -> bytes:
    """A checkpoint pickle ``{"model": <yolov6 Model object>}`` whose attribute ``x`` is what ``payload`` pushes."""
    return (b"\x80\x02}(X\x05\x00\x00\x00model" + b"cyolov6.models.yolo\nModel\n)\x81}(X\x01\x00\x00\x00x" + payload
            + b"ubu.")


def outcome(code: str, *args: object, timeout: float = 60, limit_mb: int | None = None) -> str:
    """Run ``code`` in a fresh interpreter with limits; return what it printed (else the last line of its errors),
    ``timeout``, or ``signal NAME``. A ``bytes`` argument is passed as the path of a file holding it."""
    if limit_mb:
        code = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit_mb << 20}, {limit_mb << 20}))\n{code}"
    with tempfile.TemporaryDirectory(prefix="untrusted-files-") as folder:
        args = tuple(_written(Path(folder) / f"{index}.bin", arg) if isinstance(arg, bytes) else arg
                     for index, arg in enumerate(args))
        try:
            result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                                    timeout=timeout, env={**os.environ, "YOLOV8_EFFICIENTREP_HOOK": "0"})
        except subprocess.TimeoutExpired:
            return "timeout"
    if result.returncode < 0:
        return f"signal {signal.Signals(-result.returncode).name}"
    return result.stdout.strip() or result.stderr.strip().splitlines()[-1]


def refused(source: Path, match: str, tmp_path: Path) -> str:
    """Import ``source``; assert it is refused in one line naming it, quickly, with nothing written."""
    start = time.monotonic()
    with pytest.raises(EfficientRepError) as error:  # YOLOv6ImportError, or NonFiniteWeightsError for NaN weights
        import_yolov6(source, tmp_path / "out.pt")
    message = str(error.value)
    assert time.monotonic() - start < FAST
    assert match in message, message
    assert len(message.splitlines()) == 1 and message.startswith(str(source))
    assert not (tmp_path / "out.pt").exists()
    return message


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


PLAIN_LOAD = "import pickle, sys\nprint(type(pickle.loads(open(sys.argv[1], 'rb').read())).__name__)"


# --- payloads that run code --------------------------------------------------------------------------------------------

def _code_payloads(marker: Path) -> dict:
    write = f"open({str(marker)!r}, 'w').close()"
    builtins_dict = Call(getattr, Call(getattr, Call(getattr, nn.Conv2d, "__init__"), "__globals__"), "get")
    importer = Call(getattr, Call(builtins_dict, "__builtins__"), "get")
    return {  # name -> what the file pickles
        "numpy.testing exec helper": Call(numpy.testing._private.utils.runstring, write, {}),
        "numpy.f2py eval helper": Call(numpy.f2py.crackfortran.myeval, f"{write} or 1"),
        "builtins.exec": Call(exec, write),
        "os.system": Call(os.system, f"touch {shlex.quote(str(marker))}"),
        "subprocess": Call(subprocess.check_call, ["touch", str(marker)]),
        "getattr chain from an allowed layer class to os.system": Call(
            Call(getattr, Call(Call(importer, "__import__"), "os"), "system"), f"touch {shlex.quote(str(marker))}"),
    }


CODE_PAYLOADS = list(_code_payloads(Path("m")))
PROTOCOLS = {"protocol 2 (GLOBAL)": 2, "protocol 4 (STACK_GLOBAL)": 4}


@pytest.fixture(scope="module")
def live_payloads(tmp_path_factory) -> Path:
    """Every code payload, saved in each protocol and loaded without the defence (``torch.load``, in this process:
    each only touches its marker); return the folder of the markers they left (named after family and protocol)."""
    folder = tmp_path_factory.mktemp("live")
    for index, (family, protocol) in enumerate((f, p) for f in CODE_PAYLOADS for p in PROTOCOLS.values()):
        payload = _code_payloads(folder / f"{family}-{protocol}")[family]
        torch.load(yolov6_file(folder / f"{index}.pt", payload, protocol, yolov6=False), weights_only=False)
    return folder


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("family", CODE_PAYLOADS)
def test_code_payloads_run_under_plain_pickle_and_never_under_the_reader(family, protocol, live_payloads, tmp_path):
    protocol, marker = PROTOCOLS[protocol], tmp_path / "marker"
    assert (live_payloads / f"{family}-{protocol}").exists(), "the payload does not run even without the defence"
    source = yolov6_file(tmp_path / "evil.pt", _code_payloads(marker)[family], protocol)
    refused(source, "nothing in the file was run", tmp_path)
    assert not marker.exists()


def test_a_protocol_0_instruction_is_refused_unrun(tmp_path):
    live, marker = tmp_path / "live", tmp_path / "marker"
    instruction = "(S'touch {}'\nios\nsystem\n."  # INST: module and name inline, called with the marked arguments
    assert pickle.loads(instruction.format(live).encode()) == 0 and live.exists()
    source = with_pickle(tmp_path / "evil.pt", yolov6_file(tmp_path / "base.pt"), instruction.format(marker).encode())
    with pytest.raises(YOLOv6ImportError, match="pickles os.system"):
        read_checkpoint(source)
    assert not marker.exists()


# --- payloads that make the parser allocate what the file asks for ------------------------------------------------

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


ALLOCATION_PAYLOADS = {  # name -> (build the refused file, what the refusal says)
    "torch layer constructor (nn.Linear(20000, 20000))": (
        lambda t: yolov6_file(t / "linear.pt", Call(nn.Linear, 20000, 20000)), "pickles torch.nn.modules.linear.Linear"),
    "allow-listed layer class called (Conv2d(8192, 8192, 15))": (
        lambda t: yolov6_file(t / "conv.pt", Call(nn.Conv2d, 8192, 8192, 15)),
        "calls 'torch.nn.modules.conv.Conv2d' with arguments"),
    "plugin block constructor (RepBlock(8, 8, 10**6))": (
        lambda t: yolov6_file(t / "repblock.pt", Call(RepBlock, 8, 8, 10**6)), "pickles yolov8_efficientrep.blocks"),
    "tensor view beyond its storage": (_view_bomb, "reaches beyond its storage record of 1 elements"),
    "zip bomb (deflated tensor record)": (_zip_bomb, "holds compressed records"),
    "bytes length the file does not hold (2**40)": (
        lambda t: _raw(t, "bytes8", b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"x" * 10 + b"."),
        "its pickle is malformed"),
    "memo index 2**31": (lambda t: _raw(t, "memo", b"\x80\x02N" + b"r" + struct.pack("<I", 2**31 - 1) + b"."),
                         "not a checkpoint dict"),
    "nesting 100,000 deep": (lambda t: _raw(t, "nested", attribute_pickle(b"]" * 100_000 + b"a" * 99_999)),
                             "nests more than 32 levels deep"),
}


@pytest.mark.parametrize("family", list(ALLOCATION_PAYLOADS))
def test_allocation_payloads_are_refused_quickly(family, tmp_path):
    build, message = ALLOCATION_PAYLOADS[family]
    refused(build(tmp_path), message, tmp_path)


@pytest.mark.slow
def test_the_allocation_mechanisms_allocate_without_the_defence(tmp_path):
    def extra(path: Path) -> torch.Tensor:
        return torch.load(path, weights_only=True, map_location="cpu")["extra"]

    assert extra(_view_bomb(tmp_path, yolov6=False)).numel() == 10**10  # ready to be materialized
    assert extra(_zip_bomb(tmp_path, yolov6=False)).numel() == 16 << 20  # torch inflates deflated records
    with torch.serialization.safe_globals([nn.Conv2d]):  # a class on torch's list is called with the file's arguments
        small = yolov6_file(tmp_path / "small.pt", Call(nn.Conv2d, 3, 8, 3), yolov6=False)
        assert isinstance(torch.load(small, weights_only=True)["extra"], nn.Conv2d)
    for data in (b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"x" * 10 + b".",
                 b"\x80\x02N" + b"r" + struct.pack("<I", 2**31 - 1) + b"."):
        assert outcome(PLAIN_LOAD, data, limit_mb=2048) == "MemoryError"  # sized from the file


# --- 1: structures hashed without end -----------------------------------------------------------------------------

def _shared_tuple(levels: int) -> bytes:
    """Push a tuple of two references to a tuple of two references ... ``levels`` deep: 2**levels leaves."""
    data = b")q\x000"  # EMPTY_TUPLE, BINPUT 0, POP
    for level in range(levels):
        data += b"h" + bytes([level]) + b"h" + bytes([level]) + b"\x86q" + bytes([level + 1]) + b"0"  # (t, t)
    return data + b"h" + bytes([levels])


HASH_PAYLOADS = {  # name -> the value pushed, which is then hashed
    "shared tuple as a dict key": b"}" + _shared_tuple(60) + b"Ns",
    "shared tuple in a set": b"c__builtin__\nset\n(" + _shared_tuple(60) + b"l\x85R",
    "tuple nested a million deep as a dict key": b"}" + b")" + b"\x85" * 1_000_000 + b"Ns",
}


@pytest.mark.slow  # plain pickle is let hang for 1.5 s a case
@pytest.mark.parametrize("family", list(HASH_PAYLOADS))
def test_hashed_structures_hang_or_crash_plain_pickle_and_are_refused(family, tmp_path):
    without = outcome(PLAIN_LOAD, b"\x80\x02" + HASH_PAYLOADS[family] + b".", timeout=1.5)
    assert without in ("timeout", "signal SIGSEGV"), without  # hashing 2**60 leaves, or past the C stack
    refused(_raw(tmp_path, "hash", attribute_pickle(HASH_PAYLOADS[family])), "set item" if "set" in family else
            "dict key", tmp_path)


# --- 2: many objects per byte of pickle ---------------------------------------------------------------------------

@pytest.mark.slow  # plain pickle builds three million lists first
def test_millions_of_small_objects_exhaust_plain_pickle_and_are_refused_by_budget(tmp_path):
    lists = b"(" + b"]" * 3_000_000 + b"l"  # 3 MB of opcodes: three million lists
    assert outcome(PLAIN_LOAD, b"\x80\x02" + lists + b".", limit_mb=160) == "MemoryError"
    source = _raw(tmp_path, "lists", attribute_pickle(lists))
    with pytest.raises(UntrustedFileError, match="more than 2,000,000") as error:
        read_untrusted(source, RECORD_CLASSES, limits=Limits(address_space=384 << 20))  # the budget, not memory
    assert error.value.reason == "budget"


# --- 3: refusals that would format file-built structures ----------------------------------------------------------

def _shared_list(levels: int) -> bytes:
    data = b"]q\x000"
    for level in range(levels):
        data += b"]h" + bytes([level]) + b"ah" + bytes([level]) + b"aq" + bytes([level + 1]) + b"0"  # [l, l]
    return data + b"h" + bytes([levels])


FORMAT_PAYLOADS = {  # name -> a call whose refusal could format the shared list
    "an allowed function given it as its encoding": b"c_codecs\nencode\nX\x01\x00\x00\x00x" + _shared_list(60)
                                                    + b"\x86R",
    "a storage reference made of it": _shared_list(60) + b"Q",
    "a numpy dtype named by it": b"cnumpy\ndtype\n" + _shared_list(60) + b"\x85R",
}


@pytest.mark.parametrize("family", list(FORMAT_PAYLOADS))
def test_refusals_never_format_what_the_file_built(family, tmp_path):
    shared = b"\x80\x02" + _shared_list(60) + b"."
    assert outcome("import pickle, sys\nprint(len(repr(pickle.loads(open(sys.argv[1], 'rb').read()))))", shared,
                   timeout=1.5, limit_mb=1024) in ("timeout", "MemoryError")  # 2**60 elements to write out
    message = refused(_raw(tmp_path, "format", attribute_pickle(FORMAT_PAYLOADS[family])),
                      "cannot be read as a PyTorch checkpoint", tmp_path)
    assert len(message) < 400 + len(str(tmp_path))


# --- 4: a sparse hole that would size the reader's buffers ---------------------------------------------------------

@pytest.mark.slow
def test_a_sparse_hole_standing_for_tensor_data_is_refused(tmp_path):
    source = yolov6_file(tmp_path / "sparse.pt", weights=torch.zeros(64, 8, 256, 256))  # 128 MB of float32
    with zipfile.ZipFile(source) as archive:
        record = max(archive.infolist(), key=lambda info: info.file_size)
    subprocess.run(["fallocate", "--punch-hole", "--offset", str(record.header_offset + 4096), "--length",
                    str(record.file_size - 8192), str(source)], check=True)
    if source.stat().st_blocks * 512 > 32 << 20:
        pytest.skip("this file system does not keep holes (fallocate --punch-hole)")
    weight = torch.load(source, weights_only=False)["model"].conv.weight  # YOLOv6's own classes (yolov6detect)
    assert weight.numel() == 64 * 8 * 256 * 256  # a few kB on disk read as 128 MB
    refused(source, "is a hole of a sparse file", tmp_path)


# --- 5: a file that would change the reader for the rest of the process -------------------------------------------

# BUILD with slot state on an allowed function: pickle would setattr(function, "__defaults__", (2,))
SLOT_STATE = b"N}X\x0c\x00\x00\x00__defaults__K\x02\x85s\x86b"
POISON = attribute_pickle(b"ctorch._utils\n_rebuild_tensor_v2\n" + SLOT_STATE)


def test_state_given_to_an_allowed_function_is_refused_and_later_reads_are_unchanged(tmp_path):
    code = ("import pickle, sys\ndef rebuild(x=1): return x\nclass Allowed(pickle.Unpickler):\n"
            "    def find_class(self, module, name): return rebuild\n"
            "Allowed(open(sys.argv[1], 'rb')).load()\nprint(rebuild())")
    assert outcome(code, b"\x80\x02crebuild\nrebuild\n" + SLOT_STATE + b".") == "2"  # the function changed
    honest = yolov6_file(tmp_path / "honest.pt")
    before = read_untrusted(honest, RECORD_CLASSES)
    with pytest.raises(UntrustedFileError, match="sets the state of"):
        read_untrusted(_raw(tmp_path, "poison", POISON), RECORD_CLASSES)
    after = read_untrusted(honest, RECORD_CLASSES)
    assert before.root.state_dict().keys() == after.root.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(before.root.state_dict().values(), after.root.state_dict().values()))


# --- a file that two readers would read as two networks -----------------------------------------------------------

def test_legacy_data_before_an_archive_is_refused_where_torch_reads_the_legacy_network(tmp_path):
    legacy = tmp_path / "legacy.pt"
    torch.save({"network": torch.full((2,), 7.0)}, legacy, _use_new_zipfile_serialization=False)
    honest = yolov6_file(tmp_path / "honest.pt")
    source = tmp_path / "both.pt"
    source.write_bytes(legacy.read_bytes() + honest.read_bytes())
    # torch reads the legacy part; zipfile would find the archive
    assert sorted(torch.load(source, weights_only=True)) == ["network"]
    assert zipfile.is_zipfile(source)
    refused(source, "legacy (pre-1.6) format", tmp_path)
    source.write_bytes(b"PK\x03\x04 not a record " + honest.read_bytes())
    refused(source, "data before its first record", tmp_path)


# --- a tensor hidden from a state dict -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def yolov6n():
    """YOLOv6's own v3.0 N network (built by YOLOv6's code), float32, with measured-looking BN statistics."""
    ym = pytest.importorskip("yolov6_models")
    pytest.importorskip("yolov6.models.yolo", reason="YOLOv6's code is not installed: pip install --no-deps "
                                                      "yolov6detect==0.4.1")
    return ym, ym.build(ym.yolov6_config("v3", "n", "n", "repvgg"), "0.3", distill_ns=True)


def test_an_infinite_buffer_left_out_of_the_state_dict_is_refused(yolov6n, tmp_path):
    ym, model = yolov6n
    broken = __import__("copy").deepcopy(model)
    bn = broken.backbone.stem.rbr_dense.bn
    bn.running_var.fill_(float("inf"))
    bn._non_persistent_buffers_set.add("running_var")
    assert "backbone.stem.rbr_dense.bn.running_var" not in broken.state_dict()  # a state-dict check never sees it
    refused(ym.save(broken, tmp_path / "hidden.pt"), "tensor model.backbone.stem.rbr_dense.bn.running_var holds NaN",
            tmp_path)


# --- fuse reads its input as data --------------------------------------------------------------------------------------

@pytest.fixture
def evil_checkpoint(trained_checkpoint, tmp_path) -> tuple[Path, Path]:
    """The trained checkpoint with an extra entry that runs ``touch <marker>``; returns it and the marker."""
    marker = tmp_path / "marker"
    checkpoint = torch.load(trained_checkpoint, weights_only=False)
    checkpoint["notes"] = Call(os.system, f"touch {shlex.quote(str(marker))}")
    torch.save(checkpoint, tmp_path / "best.pt")
    return tmp_path / "best.pt", marker


def test_fuse_refuses_code_in_a_checkpoint_unless_trusted(evil_checkpoint, trained_checkpoint, tmp_path, capsys):
    source, marker = evil_checkpoint
    assert main(["fuse", str(source)]) == 1
    line = capsys.readouterr().err.strip()
    assert f"{source} pickles posix.system" in line and "--trusted" in line and len(line.splitlines()) == 1
    assert not marker.exists() and not source.with_name("best-fused.pt").exists()
    assert main(["fuse", str(source), "--trusted"]) == 0  # the file is the user's: Ultralytics' loader runs it
    assert marker.exists() and source.with_name("best-fused.pt").exists()
    # the same weights read as data (the honest file) fuse into the same checkpoint
    data = fuse_checkpoint(trained_checkpoint, tmp_path / "data.pt")
    written = [torch.load(path, weights_only=False)["model"].state_dict()
               for path in (data.path, source.with_name("best-fused.pt"))]
    assert written[0].keys() == written[1].keys()
    assert all(torch.equal(written[0][key], written[1][key]) for key in written[0])


@pytest.mark.parametrize("stem", ["yolov8-efficientrep-seg", "yolov8-efficientrep-cls", "yolo26-efficientrep",
                                  "yolov6-repbifpan"])
def test_honest_checkpoints_of_every_head_are_rebuilt_exactly_from_data(stem, scale_n_model, tmp_path):
    from yolov8_efficientrep.checkpoints import ultralytics_checkpoint
    from yolov8_efficientrep.rebuild import read_restricted, rebuild

    task = scale_n_model(stem).task
    model = __import__("copy").deepcopy(scale_n_model(stem).model).half()  # stored as Ultralytics stores it
    torch.save(ultralytics_checkpoint(model, train_args={"imgsz": 64, "task": task}), tmp_path / "best.pt")
    rebuilt, _ = rebuild(read_restricted(tmp_path / "best.pt"))
    assert type(rebuilt) is type(model) and rebuilt.yaml == model.yaml and rebuilt.task == task
    stored = model.float().state_dict()
    assert rebuilt.state_dict().keys() == stored.keys()
    assert all(torch.equal(tensor, stored[key]) for key, tensor in rebuilt.state_dict().items())


@pytest.mark.parametrize("arguments", [(16,), (0,), (3, 10), (3, 10, 3), (10, 3, -2), (0.5, 3.2, 0.7)])
def test_the_yaml_check_sizes_meta_aranges_as_torch_does(arguments):
    """The stored YAML's meta build sizes ``torch.arange`` itself (torch's own meta arange imports torch._dynamo)."""
    from yolov8_efficientrep.rebuild import _SizedMetaArange

    expected = torch.arange(*arguments)
    with torch.device("meta"), _SizedMetaArange():
        made, floats = torch.arange(*arguments), torch.arange(*arguments, dtype=torch.float16)
    assert made.device.type == "meta" and (made.shape, made.dtype) == (expected.shape, expected.dtype)
    assert floats.shape == expected.shape and floats.dtype == torch.float16


def test_fuse_trusted_still_refuses_legacy_data_before_an_archive(evil_checkpoint, tmp_path):
    source, marker = evil_checkpoint
    legacy = tmp_path / "legacy.pt"
    torch.save({"model": Call(os.system, f"touch {shlex.quote(str(marker))}")}, legacy,
               _use_new_zipfile_serialization=False)
    both = tmp_path / "both.pt"
    both.write_bytes(legacy.read_bytes() + source.read_bytes())
    torch.load(both, weights_only=False)
    assert marker.exists()  # the loader Ultralytics uses reads the legacy part, and runs it
    marker.unlink()
    with pytest.raises(EfficientRepError, match="legacy"):
        fuse_checkpoint(both, trusted=True)
    assert not marker.exists()


def test_fuse_refuses_a_stored_yaml_that_would_run_code(trained_checkpoint, tmp_path):
    checkpoint = torch.load(trained_checkpoint, weights_only=False)
    checkpoint["model"].yaml["activation"] = "__import__('os').system('touch marker')"
    torch.save(checkpoint, tmp_path / "best.pt")
    with pytest.raises(EfficientRepError, match="sets the activation to") as error:
        fuse_checkpoint(tmp_path / "best.pt")
    assert "--trusted" in str(error.value) and not (tmp_path / "marker").exists()


# --- the jail's limits ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def busy_file(tmp_path_factory) -> Path:
    """A checkpoint whose pickle runs 1.9 million cheap opcodes, within every budget: seconds of CPU time."""
    tmp = tmp_path_factory.mktemp("busy")
    return _raw(tmp, "busy", attribute_pickle(b"N" + b"N0" * 950_000))


@pytest.mark.parametrize("limits, which", [
    (Limits(cpu_seconds=1), "CPU-time limit (1 s)"),
    (Limits(wall_seconds=0.5), "wall-clock limit (0.5 s)"),
    (Limits(address_space=64 << 20), "address-space limit (64 MiB)"),
], ids=["cpu", "wall", "memory"])
def test_a_child_that_overruns_a_limit_ends_in_one_line_naming_it(limits, which, busy_file, tmp_path):
    source = busy_file if "address" not in which else _raw(tmp_path, "lists", attribute_pickle(b"(" + b"]" * 1_900_000
                                                                                              + b"l"))
    start = time.monotonic()
    with pytest.raises(UntrustedFileError, match=rf"stopped at its {which.replace('(', '.').replace(')', '.')}"):
        read_untrusted(source, RECORD_CLASSES, limits=limits)
    assert time.monotonic() - start < FAST


def test_a_child_that_crashes_is_named_as_a_crash():
    with pytest.raises(UntrustedFileError, match=r"the reader crashed \(SIGSEGV\); nothing of the file reached"):
        _answer(-signal.SIGSEGV, b"", b"", None, Limits())


# --- what a refusal says ------------------------------------------------------------------------------------------------

def test_control_characters_from_a_file_reach_no_terminal(tmp_path, capsys):
    strings = b"".join(b"X" + struct.pack("<I", len(text)) + text for text in (b"os\x1b[2K\rok", b"sys\ntem"))
    source = _raw(tmp_path, "escape", b"\x80\x04" + strings + b"\x93.")  # a global named by two strings
    assert main(["import-yolov6", str(source), "-o", str(tmp_path / "out.pt")]) == 1
    line = capsys.readouterr().err
    assert line.count("\n") == 1 and "\x1b" not in line and "\r" not in line and "\\x1b[2K\\rok" in line


def _edited(source: Path, target: Path, edit) -> Path:
    data = bytearray(source.read_bytes())
    edit(data, zipfile.ZipFile(source).infolist())
    target.write_bytes(bytes(data))
    return target


DAMAGE = {  # name -> edit of an honest archive's bytes
    "encrypted flag": lambda data, infos: data.__setitem__(slice(6, 7), bytes([data[6] | 1])),
    "bad checksum": lambda data, infos: data.__setitem__(
        slice(infos[-3].header_offset + 200, infos[-3].header_offset + 201), b"\xff"),
    "name mismatch": lambda data, infos: data.__setitem__(slice(30, 31), b"Z"),
    "central directory": lambda data, infos: data.__setitem__(
        slice(data.rfind(b"PK\x01\x02"), data.rfind(b"PK\x01\x02") + 4), b"XXXX"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_archive_damage_of_every_kind_is_named_as_damage(damage, tmp_path):
    honest = yolov6_file(tmp_path / "honest.pt", weights=torch.rand(8, 3, 16, 16))
    refused(_edited(honest, tmp_path / "damaged.pt", DAMAGE[damage]), "its zip archive is damaged", tmp_path)


def test_a_module_that_contains_itself_is_named(tmp_path):
    with yolov6_classes() as (model_class, _):
        model = model_class()
        model._modules["again"] = model
        torch.save({"model": model}, tmp_path / "cycle.pt")
    refused(tmp_path / "cycle.pt", "a module of its network contains itself", tmp_path)


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_folder_or_a_named_pipe_is_named_as_such(kind, tmp_path):
    source = tmp_path / "in.pt"
    source.mkdir() if kind == "folder" else os.mkfifo(source)
    expected = "is a folder" if kind == "folder" else r"is a named pipe \(FIFO\), not a file"
    with pytest.raises(YOLOv6ImportError, match=expected):
        import_yolov6(source, tmp_path / "out.pt")
    with pytest.raises((EfficientRepError, IsADirectoryError), match=expected):
        fuse_checkpoint(source, tmp_path / "out.pt")


# --- the plugin's blocks refuse absurd sizes --------------------------------------------------------------------------

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
    with pytest.raises(ValueError) as refusal:
        build()
    assert len(str(refusal.value).splitlines()) == 1


def test_the_config_with_the_largest_shipped_block_builds_within_the_bounds():
    from ultralytics.nn.tasks import parse_model, yaml_model_load

    config = yaml_model_load("yolov6x-repbifpan.yaml")  # its 98M-parameter RepBlock is the bound's stated reference
    with torch.device("meta"):  # built as Ultralytics builds it, without allocating
        layers, _ = parse_model(config, ch=3, verbose=False)
    largest = max(sum(p.numel() for p in layer.parameters()) for layer in layers)
    assert largest == 98_350_080 and largest * 2.7 < MAX_BLOCK_PARAMETERS


# --- sizes and values a YOLOv6 file or a flag chooses ------------------------------------------------------------------

def test_a_class_count_beyond_the_bounds_is_refused_before_building(tmp_path):
    source = yolov6_file(tmp_path / "any.pt")
    with pytest.raises(LimitError, match="number of classes must be a positive integer up to 25,000, got 100000000"):
        import_yolov6(source, tmp_path / "out.pt", nc=100_000_000)


@pytest.mark.parametrize("where, value, message", [
    ("backbone.stem.rbr_dense.conv.weight", float("nan"), "tensor model.backbone.stem.rbr_dense.conv.weight holds NaN"),
    ("neck.Rep_p4.conv1.rbr_dense.bn.running_var", float("inf"),
     "tensor model.neck.Rep_p4.conv1.rbr_dense.bn.running_var holds NaN or infinite values"),
])
def test_non_finite_weights_are_refused_naming_the_tensor(yolov6n, where, value, message, tmp_path):
    ym, model = yolov6n
    broken = __import__("copy").deepcopy(model)
    broken.get_parameter(where).data.fill_(value) if where.endswith("weight") else \
        broken.get_buffer(where).fill_(value)
    refused(ym.save(broken, tmp_path / "broken.pt"), message, tmp_path)


def test_a_head_class_count_from_the_file_is_bounded(yolov6n, tmp_path):
    ym, model = yolov6n
    broken = __import__("copy").deepcopy(model)
    broken.detect.nc = 10**9
    source = ym.save(broken, tmp_path / "huge_nc.pt")
    with pytest.raises(LimitError, match="its head's nc: the number of classes must be .* got 1000000000"):
        import_yolov6(source, tmp_path / "out.pt")
