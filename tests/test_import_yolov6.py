"""``import-yolov6``: YOLOv6 checkpoints of every release's naming become Ultralytics checkpoints whose backbone and
neck compute what YOLOv6's own code computes; bad inputs get one-line errors and leave no file; the result fine-tunes.

The YOLOv6 networks are real: built by YOLOv6's own code (PyPI ``yolov6detect``, YOLOv6 0.3.0's ``yolov6`` package) and
saved as its ``strip_optimizer`` saves them; ``yolov6_models.py`` says how the 0.2.x, 0.3.1 (QARepVGG) and 0.4.x trees
are produced. Outputs are compared in float32 from the same float16 weights, on a real photo.

The default run compares every design of every naming once: at full size for N and T, and at N's depth and width for
the M and L designs (their layer types, BepC3 ratios and mapping, at a fraction of the time). ``YOLOV6_IMPORT_ALL=1``
adds every other published size at full size (the README's table).
"""

import copy
import os
import pickle
import re
import sys
import types
from pathlib import Path
from unittest import mock

import pytest
import torch
from torch import nn

pytest.importorskip("yolov6.models.yolo", reason="YOLOv6's code is not installed: pip install --no-deps "
                                                  "yolov6detect==0.4.1 tqdm (the test extra lists tqdm)")
import yolov6_models as ym  # noqa: E402
from ultralytics import YOLO  # noqa: E402
from ultralytics.utils import ASSETS  # noqa: E402
from yolov6.utils.torch_utils import fuse_model as yolov6_fuse_model  # noqa: E402

from yolov8_efficientrep.cli import main  # noqa: E402
from yolov8_efficientrep.errors import EfficientRepError  # noqa: E402
from yolov8_efficientrep.checkpoints import load_checkpoint  # noqa: E402
from yolov8_efficientrep.fusion import sample_image  # noqa: E402
from yolov8_efficientrep.graphs import onnx_unfused_nodes  # noqa: E402
from yolov8_efficientrep.importer import YOLOv6ImportError, import_yolov6, read_checkpoint  # noqa: E402

from helpers import RTOL, first_then_slow, relative_difference  # noqa: E402
from yolov6_zoo_models import layer_outputs  # noqa: E402

IMGSZ = 64

# (generation, design, size, training_mode, naming) -> the Ultralytics model the import must pick. "design" is the
# YOLOv6 size whose layer types are built (n: EfficientRep, as N/T/S; m: CSPBep e=2/3; l: CSPBep e=1/2 of conv_silu
# layers), "size" the depth and width; "at N size" keeps a design's layers and mapping at a fraction of the time.
CASES = {
    "v3.0 N, 0.3.x": (("v3", "n", "n", "repvgg", "0.3"), "yolov8n-repbifpan"),
    "v3.0 M design at N size, 0.3.x": (("v3", "m", "n", "repvgg", "0.3"), "yolov8n-cspbifpan"),
    "v3.0 N-qa, 0.3.1 QARepVGGBlock": (("v3", "n", "n", "qarepvgg", "0.3"), "yolov8n-repbifpan"),
    "v3.0 N-qa, 0.4.x QARepVGGBlockV2": (("v3", "n", "n", "qarepvggv2", "0.4"), "yolov8n-repbifpan"),
    "v3.0 M-qa design at N size, 0.4.x QARepVGGBlockV2": (("v3", "m", "n", "qarepvggv2", "0.4"), "yolov8n-cspbifpan"),
    "v3.0 L design at N size, 0.4.x": (("v3", "l", "n", "conv_silu", "0.4"), "yolov8n-cspbifpan-silu"),
    "v2.0 T, 0.2.x": (("v2", "n", "t", "repvgg", "0.3"), "yolov8t-reppan"),
    "v2.0 L design at N size, 0.2.x": (("v2", "l", "n", "conv_silu", "0.3"), "yolov8n-cspbep-silu"),
}
MORE_CASES = {  # every published size at full size, for the README's table
    "v3.0 M, 0.3.x": (("v3", "m", "m", "repvgg", "0.3"), "yolov8m-cspbifpan"),
    "v2.0 N, 0.2.x": (("v2", "n", "n", "repvgg", "0.3"), "yolov8n-reppan"),
    "v2.0 S, 0.2.x": (("v2", "n", "s", "repvgg", "0.3"), "yolov8s-reppan"),
    "v2.0 M, 0.2.x": (("v2", "m", "m", "repvgg", "0.3"), "yolov8m-cspbep"),
    "v2.0 L, 0.2.x": (("v2", "l", "l", "conv_silu", "0.3"), "yolov8l-cspbep-silu"),
    "v3.0 S, 0.3.x": (("v3", "n", "s", "repvgg", "0.3"), "yolov8s-repbifpan"),
    "v3.0 L, 0.3.x": (("v3", "l", "l", "conv_silu", "0.3"), "yolov8l-cspbifpan-silu"),
    "v3.0 S-qa, 0.3.1 QARepVGGBlock": (("v3", "n", "s", "qarepvgg", "0.3"), "yolov8s-repbifpan"),
    "v3.0 M-qa, 0.3.1 QARepVGGBlock": (("v3", "m", "m", "qarepvgg", "0.3"), "yolov8m-cspbifpan"),
    "v3.0 S, 0.4.x": (("v3", "n", "s", "repvgg", "0.4"), "yolov8s-repbifpan"),
    "v3.0 M-qa, 0.4.x QARepVGGBlockV2": (("v3", "m", "m", "qarepvggv2", "0.4"), "yolov8m-cspbifpan"),
    "v3.0 L, 0.4.x": (("v3", "l", "l", "conv_silu", "0.4"), "yolov8l-cspbifpan-silu"),
}
if os.environ.get("YOLOV6_IMPORT_ALL") == "1":
    CASES.update(MORE_CASES)


def saved_yolov6(path: Path, generation: str, design: str, size: str, mode: str = "repvgg", naming: str = "0.3"):
    """Build, randomize and save a YOLOv6 network; return (the network in float32, the file)."""
    config = ym.yolov6_config(generation, design, size, mode)
    model = ym.build(config, naming, distill_ns=generation == "v3" and design == "n")  # v3.0 N/S ship that head
    return model, ym.save(model, path, naming)


@pytest.mark.parametrize("case", first_then_slow(CASES))
def test_import_computes_yolov6s_backbone_and_neck_outputs(case, tmp_path):
    spec, expected_model = CASES[case]
    yolov6, source = saved_yolov6(tmp_path / "yolov6.pt", *spec)
    result = import_yolov6(source, tmp_path / "imported.pt", nc=4, imgsz=IMGSZ)
    assert result.model_name == expected_model
    assert result.backbone[0] == result.backbone[1] > 0 and result.neck[0] == result.neck[1] > 0
    assert result.head_state and all(k.split(".")[0] in result.architecture.head.branches or "proj" in k
                                     for k in result.head_state)

    form = result.selection.form
    layers = form.backbone_outputs + form.neck_outputs
    imported, _ = load_checkpoint(result.output)  # as yolo loads it: float32, eval
    image = sample_image(IMGSZ, IMGSZ)
    ours, theirs = layer_outputs(imported, layers, image), ym.features(yolov6, image)
    assert [t.shape for t in ours] == [t.shape for t in theirs]
    difference = max(relative_difference(a, b) for a, b in zip(ours, theirs))  # each backbone and neck output
    print(f"{case}: {result.summary()}; max relative |diff| over {len(layers)} maps = {difference:.1e}")
    assert difference <= RTOL
    assert imported.model[-1].nc == 4 and type(imported.model[-1]).__name__ == "Detect"
    unit = {"qarepvgg": "QARepVGGBlock", "qarepvggv2": "QARepVGGBlockV2"}.get(spec[3])
    if unit:  # a QA checkpoint's unit replaces the config's RepVGGBlock in every Rep row
        rows = imported.yaml["backbone"] + imported.yaml["head"]
        assert rows[0][2] == unit and all(unit in row[3] for row in rows if row[2] in ("RepBlock", "BepC3"))


# --- the fine-tuning epoch, and the other Ultralytics entry points ------------------------------------------------


@pytest.fixture(scope="module")
def base_n() -> nn.Module:
    """A YOLOv6-N v3.0 network (random BN statistics), to import and to derive bad inputs from."""
    return ym.build(ym.yolov6_config("v3", "n", "n"), distill_ns=True)


@pytest.fixture(scope="module")
def yolov6n(base_n, tmp_path_factory) -> Path:
    """``base_n`` saved as YOLOv6 saves it."""
    return ym.save(base_n, tmp_path_factory.mktemp("yolov6") / "yolov6n.pt")


@pytest.fixture(scope="module")
def imported_n(yolov6n, tmp_path_factory) -> Path:
    """``yolov6n`` imported through the command line with a 4-class head, the shapes data set's classes."""
    output = tmp_path_factory.mktemp("imported") / "yolov8n-repbifpan.pt"
    assert main(["import-yolov6", str(yolov6n), "-o", str(output), "--nc", "4"]) == 0
    return output


@pytest.mark.slow
def test_ultralytics_fine_tunes_the_import_with_every_weight_transferred(imported_n, shapes_data, tmp_path,
                                                                          ultralytics_log):
    """In this process; test_yolov6_head.py fine-tunes a whole import with the stock ``yolo`` CLI in a fresh one."""
    YOLO(imported_n).train(data=str(shapes_data), epochs=1, imgsz=IMGSZ, batch=8, workers=0, device="cpu",
                           plots=False, val=False, project=str(tmp_path), name="tuned")
    transferred = re.search(r"Transferred (\d+)/(\d+) items", "\n".join(ultralytics_log))
    assert transferred and transferred[1] == transferred[2], ultralytics_log[-20:]
    assert int(transferred[2]) == len(torch.load(imported_n, weights_only=False)["model"].state_dict())
    assert len((tmp_path / "tuned" / "results.csv").read_text().splitlines()) == 2  # header + the epoch


def test_the_import_validates_predicts_and_exports_fused(imported_n, shapes_data, tmp_path):
    model = YOLO(imported_n)
    metrics = model.val(data=str(shapes_data), imgsz=IMGSZ, batch=8, device="cpu", plots=False,
                        project=str(tmp_path), name="val")
    assert 0 <= metrics.box.map <= 1
    assert len(model.predict(ASSETS / "bus.jpg", imgsz=IMGSZ, device="cpu", verbose=False)) == 1
    onnx_file = YOLO(imported_n).export(format="onnx", imgsz=IMGSZ, device="cpu")  # fused and checked by the plugin
    assert onnx_unfused_nodes(onnx_file) == []


# --- bad input: one line naming the file, nothing written -----------------------------------------------------------


def _fused(base, path):
    model = copy.deepcopy(base)
    with torch.no_grad():  # YOLOv6's own deploy conversion
        for layer in model.modules():
            if hasattr(layer, "switch_to_deploy"):
                layer.switch_to_deploy()
        return ym.save(yolov6_fuse_model(model), path)


def _truncated(base, path):
    ym.save(base, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _not_yolov6(base, path):
    torch.save({"model": nn.Conv2d(3, 8, 3).state_dict(), "epoch": 3}, path)
    return path


def _base_conv_relu(base, path):  # YOLOv6-N_base of release 0.3.0: plain Conv+BN+ReLU layers
    return ym.save(ym.build(ym.yolov6_config("v2", "n", "n", "conv_relu")), path)


def _other_bn_eps(base, path):  # a layer the config has, with other arithmetic: a mismatch is an error, not a skip
    model = copy.deepcopy(base)
    model.backbone.stem.rbr_dense.bn.eps = 1e-5
    return ym.save(model, path)


def _renamed(base, path, module: str, name: str, where: str):
    """Save ``base`` with the part at ``where`` pickled as YOLOv6's ``module.name``, a class 0.3.0's code lacks.

    Only the class path changes (the module keeps its children): the importer must refuse the model by what it is.
    """
    cls = type(name, (nn.Module,), {"__module__": module, "__qualname__": name})
    fake = sys.modules.get(module) or types.ModuleType(module)
    model = copy.deepcopy(base)
    model.get_submodule(where).__class__ = cls
    with mock.patch.dict(sys.modules, {module: fake}), mock.patch.object(fake, name, cls, create=True):
        return ym.save(model, path)


BAD = {  # builder, what the error says
    "fused (deploy)": (_fused, "is a fused (deploy) YOLOv6 checkpoint"),
    "truncated": (_truncated, "cannot be read as a PyTorch checkpoint"),
    "not YOLOv6": (_not_yolov6, "is not a YOLOv6 checkpoint"),
    "no config (conv_relu _base)": (_base_conv_relu, "no shipped config reproduces this network: detected "
                                                     "EfficientRep + RepPANNeck, Conv+BN+ReLU units"),
    "BN eps": (_other_bn_eps, "YOLOv6 backbone.stem.rbr_dense.bn does not fit model.0.conv1.bn: BatchNorm2d(16, "
                              "eps=1e-05"),
    "lite": (lambda b, p: _renamed(b, p, "yolov6.models.efficientrep", "Lite_EffiBackbone", "backbone"),
             "is a YOLOv6-Lite model"),
    "seg": (lambda b, p: _renamed(b, p, "yolov6.models.effidehead_seg", "Detect", "detect"),
            "is a YOLOv6 segmentation model"),
    "MBLA": (lambda b, p: _renamed(b, p, "yolov6.layers.common", "MBLABlock", "backbone.ERBlock_3.1"),
             "is an MBLA model"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_one_line_naming_the_file_and_writes_nothing(case, base_n, tmp_path, capsys):
    build, message = BAD[case]
    source, output = build(base_n, tmp_path / "bad.pt"), tmp_path / "out.pt"
    with pytest.raises(EfficientRepError, match=re.escape(message)):
        import_yolov6(source, output)
    assert main(["import-yolov6", str(source), "-o", str(output)]) == 1
    error = capsys.readouterr().err.strip()  # one line: a long message gives way in the middle, the file stays
    assert len(error.splitlines()) == 1 and error.startswith(f"yolov8-efficientrep import-yolov6: error: {source}")
    assert len(error.partition("error: ")[2]) <= 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]  # no output, no partial file


def test_an_ultralytics_checkpoint_is_named_as_such(imported_n, tmp_path):
    with pytest.raises(YOLOv6ImportError, match="is an Ultralytics checkpoint, not a YOLOv6 one: use it directly"):
        import_yolov6(imported_n, tmp_path / "out.pt")


class _RunsCode:
    """Pickles as a call of os.system: a checkpoint that would run a command when unpickled without weights_only."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


def test_reading_runs_no_pickled_code(base_n, tmp_path):
    source, sentinel = tmp_path / "evil.pt", tmp_path / "ran"
    model = copy.deepcopy(base_n).half()
    with open(source, "wb") as file:
        torch.save({"model": model, "hook": _RunsCode(sentinel)}, file, pickle_module=pickle)
    with pytest.raises(YOLOv6ImportError, match=r"evil.pt pickles (posix|nt).system, which a YOLOv6 training"):
        read_checkpoint(source)
    assert not sentinel.exists()


def test_an_existing_output_is_replaced_only_with_force(yolov6n, imported_n, tmp_path, capsys):
    output = tmp_path / "out.pt"
    output.write_bytes(b"keep me")
    assert main(["import-yolov6", str(yolov6n), "-o", str(output)]) == 1
    assert "exists; add --force" in capsys.readouterr().err and output.read_bytes() == b"keep me"
    output.write_bytes(imported_n.read_bytes())  # the import of the same file with nc=4, replaced below
    assert main(["import-yolov6", str(yolov6n), "-o", str(output), "--force"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("yolov6n (v3.0, EfficientRep + RepBiFPAN) -> yolov8n-repbifpan: backbone 340/340, neck "
                              "348/348 tensors; Detect head initialized for nc=80")  # by default YOLOv6's classes
    assert load_checkpoint(output)[0].model[-1].nc == 80
