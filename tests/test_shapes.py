"""The shipped data YAMLs (``cfg/shapes*.yaml``) by bare name from any directory: each generates its set on first use.

Every Ultralytics run is a fresh process, in an empty directory, with private Ultralytics settings (a private
``datasets_dir``), so the generated set never lands in the user's or the repository's data set folders. ``yolo train``
runs on the detection YAML; the segmentation, pose, obb and classify YAMLs go through the data set check that
``yolo train`` starts with (``check_det_dataset`` / ``check_cls_dataset``), all four in one process, since
tests/test_family.py already trains every task's config on sets from the same generator.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import ultralytics
import yaml
from ultralytics.data.augment import RandomFlip
from ultralytics.utils import SettingsManager, get_user_config_dir
from ultralytics.utils.instance import Instances

from yolov8_efficientrep.dataset_folders import MARKER
from yolov8_efficientrep.shapes import generate_for_data_yaml, make_shapes_dataset, make_task_dataset

from helpers import REPO

SHIPPED = REPO / "cfg" / "shapes.yaml"
TASK_DATA = {  # every other shipped data YAML, checked as `yolo train` checks it: its model, what its folder must hold
    "shapes-seg.yaml": ("yolov8n-efficientrep-seg.yaml", "images/val"),
    "shapes-pose.yaml": ("yolov8n-efficientrep-pose.yaml", "images/val"),
    "shapes-obb.yaml": ("yolov8n-efficientrep-obb.yaml", "images/val"),
    "shapes-cls.yaml": ("yolov8n-efficientrep-cls.yaml", "val/triangle"),
}
TRAINED_ELSEWHERE = {"shapes-sem.yaml", "shapes-depth.yaml"}  # test_dense_tasks.py trains on them by bare name


CHECK = """
import json, sys
from ultralytics.data.utils import check_cls_dataset, check_det_dataset  # the start-up hook loads the plugin
from yolov8_efficientrep.offline import seed_fonts

seed_fonts()
resolved = {}
for data, model in zip(sys.argv[1::2], sys.argv[2::2]):  # as yolo train first resolves data=<bare name>
    check = check_cls_dataset if model.endswith("-cls.yaml") else check_det_dataset
    try:
        resolved[data] = sorted(check(data))
    except Exception as error:
        resolved[data] = f"{type(error).__name__}: {error}"
print(json.dumps(resolved))
"""


@pytest.fixture(scope="module")
def private_settings(run_fresh, tmp_path_factory) -> tuple[Path, Path, dict]:
    """A new Ultralytics config dir whose settings put data sets in a new folder, fonts seeded, and ``yolo train``'s
    data set check by bare name of each task data YAML, all four in one fresh process that seeds the fonts, in a new
    empty directory that must stay empty: (the dir, the folder, ``{data YAML: the keys it resolved to, or its
    error}``).

    Shared by this module's tests: each data YAML generates its own sub-folder.
    """
    root = tmp_path_factory.mktemp("settings")
    with pytest.MonkeyPatch.context() as patch:  # Ultralytics' own settings file, where a process with it would look
        patch.setenv("YOLO_CONFIG_DIR", str(root / "config"))
        config = get_user_config_dir()
    SettingsManager(config / "settings.json").update(datasets_dir=str(root / "datasets"))
    (root / "empty").mkdir()
    checked = [arg for data, (model, _) in TASK_DATA.items() for arg in (data, model)]
    result = run_fresh(sys.executable, "-c", CHECK, *checked, cwd=root / "empty",
                       env={"YOLO_CONFIG_DIR": str(root / "config")})
    assert list((root / "empty").iterdir()) == []  # nothing lands in the working directory
    return root / "config", root / "datasets", json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def trained(run_fresh, private_settings, tmp_path_factory):
    """``yolo train model=yolov8n-efficientrep.yaml data=shapes.yaml`` at tiny settings, in a new empty directory that
    must stay empty; its result."""
    folder = tmp_path_factory.mktemp("trained")
    (folder / "empty").mkdir()
    result = run_fresh("yolo", "train", "model=yolov8n-efficientrep.yaml", f"data={SHIPPED.name}", "epochs=1",
                       "imgsz=64", "fraction=0.0625", "batch=16", "workers=0", "plots=False",
                       f"project={folder / 'runs'}", "name=train", cwd=folder / "empty",
                       env={"YOLO_CONFIG_DIR": str(private_settings[0])})
    assert (folder / "runs" / "train" / "weights" / "best.pt").is_file()
    assert list((folder / "empty").iterdir()) == []  # nothing lands in the working directory
    return result


@pytest.mark.slow
def test_yolo_train_with_the_shipped_data_yaml_generates_the_set_on_first_use(private_settings, trained, tmp_path):
    spec = yaml.safe_load(SHIPPED.read_text())
    root = private_settings[1] / spec["path"]
    log = trained.stdout + trained.stderr
    generated = (f"shapes.yaml: generating the shapes data set in {root}, offline (nothing is downloaded: Ultralytics "
                 f"runs the YAML's download: script, which draws the images)")
    assert generated in log and log.index(generated) < log.index("Dataset download success")

    counts = {split: len(list((root / "images" / split).glob("*.png"))) for split in ("train", "val")}
    assert counts == {"train": spec["generate"]["train"], "val": spec["generate"]["val"]}
    # the same generator, the same files: the first images of each split, made directly
    direct = make_shapes_dataset(tmp_path / "direct", train=2, val=2, imgsz=spec["generate"]["imgsz"],
                                 seed=spec["generate"]["seed"]).parent
    for relative in ("images/train/00001.png", "labels/train/00001.txt", "images/val/00000.png",
                     "labels/val/00000.txt"):
        assert (root / relative).read_bytes() == (direct / relative).read_bytes(), relative


@pytest.mark.slow
@pytest.mark.parametrize("data", list(TASK_DATA))
def test_yolo_train_finds_every_task_data_yaml_by_bare_name_and_generates_its_set(private_settings, data):
    resolved = private_settings[2][data]
    assert isinstance(resolved, list), f"{data}: {resolved}"
    spec = yaml.safe_load((REPO / "cfg" / data).read_text())
    assert (private_settings[1] / spec["path"] / TASK_DATA[data][1]).is_dir()


def test_every_shipped_data_yaml_is_covered_and_no_ultralytics_file_has_its_name():
    shipped = {p.name for p in (REPO / "cfg").glob("shapes*.yaml")}
    assert shipped == {SHIPPED.name, *TASK_DATA, *TRAINED_ELSEWHERE}
    names = {p.name for p in (REPO / "cfg").glob("*.yaml")}  # model and data YAMLs alike are looked up by bare name
    assert not [p for p in Path(ultralytics.__file__).parent.rglob("*.y*ml") if p.name in names]


def clockwise(keypoints: np.ndarray) -> bool:
    """Return True if the labelled keypoints, in index order, go clockwise on the image (y down: positive area)."""
    x, y = keypoints[keypoints[:, 2] > 0, :2].T
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)) > 0


@pytest.mark.parametrize("direction", ["horizontal", "vertical"])
def test_pose_keypoints_keep_their_order_through_ultralytics_flips(tmp_path, direction):
    data = yaml.safe_load(make_task_dataset(tmp_path, "pose", train=8, val=1, imgsz=64).read_text())
    shipped = yaml.safe_load((REPO / "cfg" / "shapes-pose.yaml").read_text())
    for spec in (data, shipped):
        assert (spec["kpt_shape"], spec["flip_idx"]) == ([4, 3], [0, 3, 2, 1])
    flip = RandomFlip(p=1.0, direction=direction, flip_idx=data["flip_idx"])  # as Ultralytics' pose training applies it
    rows = np.concatenate([np.loadtxt(f, ndmin=2) for f in sorted((tmp_path / "labels" / "train").glob("*.txt"))])
    keypoints = rows[:, 5:].reshape(-1, 4, 3)
    instances = Instances(rows[:, 1:5].copy(), keypoints=keypoints.copy(), normalized=True)
    flipped = flip({"img": np.zeros((64, 64, 3), np.uint8), "instances": instances})["instances"].keypoints
    assert len(keypoints) > 20 and all(map(clockwise, keypoints)) and all(map(clockwise, flipped))
    triangles = rows[:, 0] == 2
    assert triangles.any() and (keypoints[triangles, 2, 2] == 0).all() and (flipped[triangles, 2, 2] == 0).all()


def data_spec(tmp_path, **generate) -> dict:
    """A parsed data YAML as Ultralytics hands it to the ``download:`` script."""
    return {"yaml_file": str(tmp_path / "my-shapes.yaml"), "path": tmp_path / "set", "generate": generate}


@pytest.mark.parametrize("generate, message", [
    ({"images": 10}, "'generate:' accepts only task, train, val, imgsz, seed"),
    ({"task": "panoptic"}, "generate: task: 'panoptic' must be one of detect, segment, pose, obb, classify, semantic, "
                           "depth"),
    ({"train": 0}, "generate: train: 0 must be an integer >= 1"),
    ({"imgsz": "160"}, "generate: imgsz: '160' must be an integer >= 1"),
    ({"seed": -1}, "generate: seed: -1 must be an integer >= 0"),
])
def test_bad_generate_settings_name_the_yaml_and_the_key(tmp_path, generate, message):
    with pytest.raises(ValueError, match="my-shapes.yaml") as error:
        generate_for_data_yaml(data_spec(tmp_path, **generate))
    assert message in str(error.value)
    assert not (tmp_path / "set").exists()


def users_data_set(root: Path) -> dict:
    """Write a user's own YOLO data set, with the generator's file names; return its files and their bytes."""
    for folder, name, content in (("images/train", "00000.png", b"my photo"), ("labels/train", "00000.txt", b"0 .5")):
        (root / folder).mkdir(parents=True)
        (root / folder / name).write_bytes(content)
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_generation_never_writes_into_a_folder_it_did_not_create(tmp_path):
    spec = data_spec(tmp_path, train=2, val=1, imgsz=64)
    root = tmp_path / "set"
    before = users_data_set(root)
    with pytest.raises(FileExistsError) as error:
        generate_for_data_yaml(spec)
    assert str(error.value) == (f"{spec['yaml_file']}: its path: {root} is a folder the shapes generator did not "
                                f"create (it holds images, labels and no {MARKER} file), so generating could "
                                f"overwrite its files; change 'path:' in the YAML to a new folder, or move that folder")
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    with pytest.raises(FileExistsError, match=f"make_shapes_dataset: {root} is a folder the shapes generator did not "):
        make_shapes_dataset(root, train=2, val=1, imgsz=64)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_a_copied_data_yaml_pointing_at_a_users_folder_stops_ultralytics_dataset_check(tmp_path):
    """Ultralytics runs the YAML's ``download:`` script when val images are missing, as ``yolo train`` does."""
    from ultralytics.data.utils import check_det_dataset

    root = tmp_path / "my-data"
    before = users_data_set(root)
    copy = tmp_path / "my-shapes.yaml"
    copy.write_text(SHIPPED.read_text().replace("path: yolov8-efficientrep-shapes", f"path: {root}"))
    with pytest.raises(FileExistsError, match=f"{root} is a folder the shapes generator did not create"):
        check_det_dataset(str(copy))
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_generating_again_writes_the_same_files(tmp_path):
    spec = data_spec(tmp_path, train=3, val=2, imgsz=64, seed=7)
    first = generate_for_data_yaml(spec).parent
    files = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    assert (first / MARKER).is_file()  # the generator's own folder: it may write there again
    shutil.rmtree(first / "images" / "val")  # Ultralytics runs the download script again when val images are missing
    generate_for_data_yaml(spec)
    assert {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()} == files
    assert len([f for f in files if f.suffix == ".png"]) == 5
