"""A scaled model path (``yolov8s-efficientrep.yaml``) builds its scale from any folder (``integration/scaled_paths``).

Ultralytics' ``yaml_model_load`` names the unified YAML by deleting the first digit's n/s/l/m/x in the whole path, so
a folder such as ``2024models``, ``exp2l`` or ``a6n0m`` sent it to a folder that does not exist. Here: the unpatched
function fails on each folder (the payload is live), the seam builds, trains and exports scale s from them through
``yolo`` and ``YOLO(...)``, and Ultralytics' own models read exactly as without the seam.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import yaml
from ultralytics import YOLO
from ultralytics.nn import tasks

from yolov8_efficientrep.errors import EfficientRepError
from yolov8_efficientrep.integration.scaled_paths import ModelYAMLNotFoundError, install_scaled_paths, misread_folder
from yolov8_efficientrep.shapes import make_shapes_dataset

REPO = Path(__file__).resolve().parents[1]
STOCK = Path(tasks.__file__).resolve().parents[1] / "cfg" / "models"  # Ultralytics' own model YAMLs
ODD_FOLDERS = ("2024models", "exp2l", "a6n0m")  # a digit before m, l, n: Ultralytics' rule deletes that letter
SCALED = "yolov8s-efficientrep.yaml"  # scale s of the unified yolov8-efficientrep.yaml
unpatched = getattr(tasks.yaml_model_load, "__wrapped__", tasks.yaml_model_load)  # Ultralytics' own function


@pytest.fixture(scope="module")
def odd_root(tmp_path_factory) -> Path:
    """A folder holding ``<odd>/cfg/yolov8-efficientrep.yaml`` for each odd folder name, and no scaled file."""
    root = tmp_path_factory.mktemp("scaled")
    for folder in ODD_FOLDERS:
        (root / folder / "cfg").mkdir(parents=True)
        shutil.copy(REPO / "cfg" / "yolov8-efficientrep.yaml", root / folder / "cfg")
    return root


@pytest.fixture(scope="module")
def scale_s() -> dict:
    """Ultralytics' model dict of scale s by bare name: no folder for its rule to misread."""
    return unpatched(SCALED)


@pytest.mark.parametrize("folder", ODD_FOLDERS)
def test_without_the_seam_the_scaled_path_does_not_load(folder, odd_root):
    path = odd_root / folder / "cfg" / SCALED
    assert misread_folder(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        unpatched(path)


@pytest.mark.parametrize("absolute", [True, False], ids=["absolute", "relative"])
@pytest.mark.parametrize("folder", ODD_FOLDERS)
def test_a_scaled_path_reads_its_scale_from_any_folder(folder, absolute, odd_root, scale_s, monkeypatch):
    monkeypatch.chdir(odd_root)
    path = (odd_root if absolute else Path()) / folder / "cfg" / SCALED
    assert tasks.yaml_model_load(path) == {**scale_s, "yaml_file": str(path)}


@pytest.mark.parametrize("folder, absolute", [("2024models", True), ("exp2l", False), ("a6n0m", True)],
                         ids=["2024models-absolute", "exp2l-relative", "a6n0m-absolute"])
def test_a_scaled_path_builds_its_scale_from_any_folder(folder, absolute, odd_root, monkeypatch):
    monkeypatch.chdir(odd_root)
    path = (odd_root if absolute else Path()) / folder / "cfg" / SCALED
    model = YOLO(path).model
    assert model.yaml["scale"] == "s" and model.yaml["yaml_file"] == str(path)
    assert model.model[0].c2 == 32  # the stem's width at scale s (n 16, m 48, l 64, x 80)


def test_a_scaled_file_that_exists_is_read_itself(tmp_path):
    folder = tmp_path / "run3s"
    folder.mkdir()
    spec = yaml.safe_load((REPO / "cfg" / "yolov8-efficientrep.yaml").read_text())
    (folder / "yolov8-efficientrep.yaml").write_text(yaml.safe_dump(spec))
    (folder / SCALED).write_text(yaml.safe_dump({**spec, "nc": 3}))  # the user's own scale-s file wins, as in 8.4
    cfg = tasks.yaml_model_load(folder / SCALED)
    assert cfg["nc"] == 3 and cfg["scale"] == "s"


def test_a_missing_file_is_named_as_given(tmp_path):
    path = tmp_path / "v8n-data" / "yolov8s-mine.yaml"
    with pytest.raises(ModelYAMLNotFoundError) as error:
        tasks.yaml_model_load(path)
    assert isinstance(error.value, (EfficientRepError, FileNotFoundError))
    assert str(error.value) == f"model YAML {path} does not exist, nor does the unified yolov8-mine.yaml beside it: " \
                               f"check the path"


def test_every_ultralytics_yaml_reads_from_an_odd_folder_as_ultralytics_reads_it(tmp_path):
    """Each stock model YAML copied to an odd folder: as itself, the seam's dict is Ultralytics' own (which resolves
    it there); at scale s (``yolov8s-seg.yaml``), it is Ultralytics' dict for that bare name, read from its folder."""
    folder = tmp_path / "2024models"
    folder.mkdir()
    compared = 0
    for stock in sorted(STOCK.rglob("*.yaml")):
        copy = Path(shutil.copy(stock, folder))
        assert tasks.yaml_model_load(copy) == unpatched(copy)
        scaled = re.sub(r"^(yolo(?:e-)?v?\d+)", r"\1s", stock.name)
        if "scales" in yaml.safe_load(stock.read_text()) and scaled != stock.name:
            assert tasks.yaml_model_load(folder / scaled) == {**unpatched(scaled), "yaml_file": str(folder / scaled)}
            compared += 1
    assert compared >= 25


@pytest.mark.parametrize("name", ["yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml", "yolov8s.yaml"])
def test_stock_models_read_as_without_the_seam(name):
    assert not misread_folder(Path(name))
    assert tasks.yaml_model_load(name) == unpatched(name)  # bare names go to Ultralytics' function unchanged


def test_every_module_that_bound_yaml_model_load_gets_the_seam_once():
    import ultralytics.engine.model
    import ultralytics.nn

    installed = tasks.yaml_model_load
    install_scaled_paths()
    assert ultralytics.engine.model.yaml_model_load is ultralytics.nn.yaml_model_load is tasks.yaml_model_load
    assert tasks.yaml_model_load is installed and installed is not unpatched


def test_the_seam_says_when_it_cannot_apply(monkeypatch, ultralytics_log):
    monkeypatch.delattr(tasks, "guess_model_scale")
    install_scaled_paths()
    assert any("scaled model paths by file name (ultralytics.nn.tasks lacks guess_model_scale) cannot apply on "
               "Ultralytics" in line and "pass it from a folder without one" in line for line in ultralytics_log)


@pytest.mark.slow
def test_yolo_train_and_export_scale_s_from_odd_folders(installed_hook, run_fresh, odd_root, tmp_path, monkeypatch):
    """``yolo train`` with a relative path through ``a6n0m/``; ``YOLO(...).export`` with an absolute one through
    ``2024models/`` (a YAML model exports to the working directory)."""
    data = make_shapes_dataset(tmp_path / "data", train=8, val=4, imgsz=64)
    run_fresh("yolo", "train", f"model={Path('a6n0m') / 'cfg' / SCALED}", f"data={data}", "epochs=1", "imgsz=64",
              "batch=8", "workers=0", "device=cpu", "plots=False", f"project={tmp_path}", "name=train", cwd=odd_root)
    trained = YOLO(tmp_path / "train" / "weights" / "last.pt")
    assert trained.model.yaml["scale"] == "s" and trained.model.model[0].c2 == 32  # 5 classes: other head sizes

    monkeypatch.chdir(tmp_path)
    exported = Path(YOLO(odd_root / "2024models" / "cfg" / SCALED).export(format="onnx", imgsz=64, device="cpu"))
    assert exported.resolve() == tmp_path / "yolov8s-efficientrep.onnx"
    graph = onnx.load(exported).graph
    first_conv = next(node for node in graph.node if node.op_type == "Conv")
    weights = {tensor.name: tensor for tensor in graph.initializer}
    assert weights[first_conv.input[1]].dims[0] == 32  # scale s's stem; n's has 16
    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {session.get_inputs()[0].name: np.zeros((1, 3, 64, 64), np.float32)})
    assert output.shape == (1, 84, 84)  # 4 box + 80 classes, for 8x8 + 4x4 + 2x2 cells
