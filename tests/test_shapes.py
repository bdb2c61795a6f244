"""The shipped data YAML ``cfg/shapes.yaml``: its ``download:`` script generates the data set on first use.

``yolo train`` runs in a fresh process with its own Ultralytics settings (a private ``datasets_dir``), so the generated
set never lands in the user's or the repository's data set folders.
"""

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from yolov8_efficientrep.shapes import generate_for_data_yaml, make_shapes_dataset

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "cfg" / "shapes.yaml"


@pytest.fixture
def private_settings(run_fresh, tmp_path) -> dict:
    """A new Ultralytics config dir whose settings put data sets in ``tmp_path/datasets``, fonts seeded; its env."""
    env = {"YOLO_CONFIG_DIR": str(tmp_path / "config")}
    code = (f"from ultralytics.utils import SETTINGS; SETTINGS.update(datasets_dir={str(tmp_path / 'datasets')!r}); "
            "from yolov8_efficientrep.offline import seed_fonts; seed_fonts()")
    run_fresh(sys.executable, "-c", code, env=env)
    return env


def test_yolo_train_with_the_shipped_data_yaml_generates_the_set_on_first_use(run_fresh, private_settings, tmp_path):
    spec = yaml.safe_load(SHIPPED.read_text())
    root = tmp_path / "datasets" / spec["path"]
    result = run_fresh("yolo", "train", "model=cfg/yolov8n-efficientrep.yaml", f"data={SHIPPED.relative_to(REPO)}",
                       "epochs=1", "imgsz=64", "fraction=0.0625", "batch=16", "workers=0", "plots=False",
                       f"project={tmp_path / 'runs'}", "name=train", cwd=REPO, env=private_settings)
    assert "Dataset download success" in result.stdout + result.stderr
    assert (tmp_path / "runs" / "train" / "weights" / "best.pt").is_file()
    assert not (REPO / spec["path"]).exists()

    counts = {split: len(list((root / "images" / split).glob("*.png"))) for split in ("train", "val")}
    assert counts == {"train": spec["generate"]["train"], "val": spec["generate"]["val"]}
    # the same generator, the same files: the first images of each split, made directly
    direct = make_shapes_dataset(tmp_path / "direct", train=2, val=2, imgsz=spec["generate"]["imgsz"],
                                 seed=spec["generate"]["seed"]).parent
    for relative in ("images/train/00001.png", "labels/train/00001.txt", "images/val/00000.png",
                     "labels/val/00000.txt"):
        assert (root / relative).read_bytes() == (direct / relative).read_bytes(), relative


def data_spec(tmp_path, **generate) -> dict:
    """A parsed data YAML as Ultralytics hands it to the ``download:`` script."""
    return {"yaml_file": str(tmp_path / "my-shapes.yaml"), "path": tmp_path / "set", "generate": generate}


@pytest.mark.parametrize("generate, message", [
    ({"images": 10}, "'generate:' accepts only train, val, imgsz, seed"),
    ({"train": 0}, "generate: train: 0 must be an integer >= 1"),
    ({"imgsz": "160"}, "generate: imgsz: '160' must be an integer >= 1"),
    ({"seed": -1}, "generate: seed: -1 must be an integer >= 0"),
])
def test_bad_generate_settings_name_the_yaml_and_the_key(tmp_path, generate, message):
    with pytest.raises(ValueError, match="my-shapes.yaml") as error:
        generate_for_data_yaml(data_spec(tmp_path, **generate))
    assert message in str(error.value)
    assert not (tmp_path / "set").exists()


def test_generation_never_writes_into_a_folder_of_other_files(tmp_path):
    spec = data_spec(tmp_path, train=2, val=1, imgsz=64)
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        generate_for_data_yaml(spec)
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == ["notes.txt"]


def test_generating_again_writes_the_same_files(tmp_path):
    spec = data_spec(tmp_path, train=3, val=2, imgsz=64, seed=7)
    first = generate_for_data_yaml(spec).parent
    files = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    shutil.rmtree(first / "images" / "val")  # Ultralytics runs the download script again when val images are missing
    generate_for_data_yaml(spec)
    assert {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()} == files
    assert len([f for f in files if f.suffix == ".png"]) == 5
