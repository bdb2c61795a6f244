"""Semantic segmentation and depth estimation with EfficientRep: the shipped configs and the generated data through
Ultralytics' own trainers (``yolo train``, a real process), validators, predictors and exporter; the fused model against
the unfused one; ``fuse`` of the trained checkpoints; the message a release without the task gives (one fresh
interpreter on Ultralytics 8.4.0 builds both tasks' configs). The stock yolo26-sem and yolo26-depth build as without the
plugin in test_registration.py."""

import copy
import csv
import json
import math
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import ultralytics
import yaml
from torch import nn
from ultralytics import YOLO

from yolov8_efficientrep import cli
from yolov8_efficientrep.fusion import fused_rep_blocks, rep_blocks
from yolov8_efficientrep.shapes import (BACKGROUND, BACKGROUND_DEPTH, CARD_SIZE, CLASS_NAMES, DEPTH_SCALE, IN_FRONT,
                                        Shape, dense_labels, make_shapes_dataset, make_task_dataset)

from helpers import REPO, RTOL, cpus_per_worker, relative_difference

DENSE = {"semantic": "sem", "depth": "depth"}  # task: the suffix of its model config and data YAML
FIRST_RELEASE = {"semantic": "8.4.52", "depth": "8.4.104"}  # the first Ultralytics releases with the task (PyPI)
STOCK = Path(ultralytics.__file__).parent / "cfg" / "models" / "26"
MATRIX_840 = REPO / ".ci" / "ultralytics-matrix" / "8.4.0"  # a supported release that has neither task
IMGSZ = 64


def config(task: str, scale: str = "") -> str:
    """The shipped model config of ``task``, with a scale letter or as the unified file name."""
    return f"yolo26{scale}-efficientrep-{DENSE[task]}.yaml"


def image_tensor(path: Path) -> torch.Tensor:
    """A generated image as the 1x3xHxW float32 RGB tensor in [0, 1] that Ultralytics feeds its model."""
    return torch.from_numpy(cv2.imread(str(path))[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255


def export_mode(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output ``model``'s head computes in export mode (upsampled to the input), before any format's own step."""
    reference = copy.deepcopy(model).eval()
    reference.model[-1].export, reference.model[-1].format = True, None
    with torch.no_grad():
        return reference(x)


def onnx_convs(onnx_file: Path) -> int:
    """Conv nodes of an ONNX graph."""
    return sum(node.op_type == "Conv" for node in onnx.load(str(onnx_file)).graph.node)


# --- the configs ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", DENSE)
def test_config_is_efficientrep_under_ultralytics_unchanged_head_and_builds_as_its_task(task):
    spec = yaml.safe_load((REPO / "cfg" / config(task)).read_text())
    detection = yaml.safe_load((REPO / "cfg" / "yolo26-efficientrep.yaml").read_text())
    stock = yaml.safe_load((STOCK / f"yolo26-{DENSE[task]}.yaml").read_text())
    assert spec["backbone"] == detection["backbone"]  # the same EfficientRep, SPPF and C2PSA as the detection config
    assert spec["head"] == stock["head"] and spec["scales"] == stock["scales"]  # Ultralytics' head, unchanged
    header = (REPO / "cfg" / config(task)).read_text()
    assert re.search(rf"^# Needs Ultralytics >= {re.escape(FIRST_RELEASE[task])} ", header, re.M)

    model = YOLO(config(task, "n"), verbose=False)
    assert model.task == task and model.model.yaml["scale"] == "n" and len(rep_blocks(model.model)) == 19


# --- the generated data -----------------------------------------------------------------------------------------------


def square(cls: int, cx: float, cy: float, radius: float) -> Shape:
    """An axis-aligned square (a cross, triangle or square class: filled as its outline) of half-side ``radius``."""
    outline = np.array([(cx - radius, cy - radius), (cx + radius, cy - radius), (cx + radius, cy + radius),
                        (cx - radius, cy + radius)]).round().astype(np.int32)
    return Shape(cls, (cx - radius, cy - radius, cx + radius, cy + radius), outline, np.zeros((4, 3)), (cx, cy),
                 radius)


def test_dense_labels_put_each_shape_at_its_size_depth_and_in_front_of_what_it_covers():
    size = 100
    big = square(1, 30, 30, 20)  # 2.5 m by its size
    small_over_big = square(3, 45, 45, 8)  # 6.25 m by its size, but drawn over big: moved in front of it
    circle = Shape(0, (60, 60, 90, 90), np.zeros((36, 2), np.int32), np.zeros((4, 3)), (75.0, 75.0), 10.0)  # 5 m
    classes, depth = dense_labels([big, small_over_big, circle], size)
    assert classes.dtype == np.uint8 and depth.dtype == np.float32 and classes.shape == depth.shape == (size, size)
    expected = {(30, 30): (1, CARD_SIZE * size / 20), (45, 45): (3, IN_FRONT * CARD_SIZE * size / 20),
                (52, 52): (3, IN_FRONT * CARD_SIZE * size / 20), (75, 75): (CLASS_NAMES.index("circle"), 5.0),
                (5, 95): (BACKGROUND, BACKGROUND_DEPTH)}
    for (x, y), (cls, metres) in expected.items():
        assert (classes[y, x], depth[y, x]) == (cls, pytest.approx(metres)), (x, y)
    assert ((classes == BACKGROUND) == (depth == BACKGROUND_DEPTH)).all()
    assert (classes == 0).sum() == pytest.approx(math.pi * 10 ** 2, rel=0.1)  # the circle is filled as a circle


@pytest.fixture(scope="module")
def data_yamls(tmp_path_factory) -> dict[str, Path]:
    """The shipped data YAMLs, copied as their headers say to resize them: 4 train / 2 val images of 64 px in a new
    folder. Not generated yet: Ultralytics runs their ``download:`` script on first use."""
    folder = tmp_path_factory.mktemp("data")
    copies = {}
    for task, suffix in DENSE.items():
        spec = yaml.safe_load((REPO / "cfg" / f"shapes-{suffix}.yaml").read_text())
        assert spec["generate"]["task"] == task
        spec.update(path=str(folder / task), generate={**spec["generate"], "train": 4, "val": 2, "imgsz": IMGSZ})
        copies[task] = folder / f"shapes-{suffix}.yaml"
        copies[task].write_text(yaml.safe_dump(spec, sort_keys=False))
    return copies


@pytest.mark.parametrize("task", DENSE)
def test_shipped_data_yaml_says_what_the_generator_writes(task, tmp_path):
    shipped = yaml.safe_load((REPO / "cfg" / f"shapes-{DENSE[task]}.yaml").read_text())
    written = yaml.safe_load(make_task_dataset(tmp_path, task, train=1, val=1, imgsz=IMGSZ).read_text())
    assert {k: v for k, v in written.items() if k != "path"} == {k: shipped[k] for k in written if k != "path"}
    labels = written.get("masks_dir", "depth")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == [
        f"{kind}/{split}/00000.png" for kind in sorted(("images", labels)) for split in ("train", "val")]


def test_generated_masks_and_depth_maps_label_the_detection_sets_images(tmp_path):
    detect = make_shapes_dataset(tmp_path / "detect", train=3, val=2, imgsz=IMGSZ).parent
    semantic = make_task_dataset(tmp_path / "semantic", "semantic", train=3, val=2, imgsz=IMGSZ).parent
    depth = make_task_dataset(tmp_path / "depth", "depth", train=3, val=2, imgsz=IMGSZ).parent
    for image in sorted((detect / "images").rglob("*.png")):
        relative = image.relative_to(detect / "images")
        assert (semantic / "images" / relative).read_bytes() == (depth / "images" / relative).read_bytes() \
            == image.read_bytes()
        classes = cv2.imread(str(semantic / "masks" / relative), cv2.IMREAD_UNCHANGED)
        metres = cv2.imread(str(depth / "depth" / relative), cv2.IMREAD_UNCHANGED) / DEPTH_SCALE
        assert classes.dtype == np.uint8 and classes.shape == (IMGSZ, IMGSZ) and set(np.unique(classes)) <= {*range(5)}
        assert metres.shape == (IMGSZ, IMGSZ) and ((classes == BACKGROUND) == (metres == BACKGROUND_DEPTH)).all()
        assert metres[classes != BACKGROUND].min() >= IN_FRONT ** 5 * 2.5 and metres.max() == BACKGROUND_DEPTH
        boxes = np.loadtxt(detect / "labels" / relative.with_suffix(".txt"), ndmin=2)  # every labelled class shows
        visible = set(np.unique(classes)) - {BACKGROUND}
        assert visible <= set(boxes[:, 0].astype(int)) and len(visible) >= 1


# --- train, val, predict, export, fuse --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(data_yamls, run_fresh, tmp_path_factory) -> dict:
    """``yolo train`` of each task's config at scale n, by bare name, on its data YAML copy (generated by the run),
    both at once; return ``{task: (run folder, result or failure)}``."""
    folder = tmp_path_factory.mktemp("runs")

    def train(task: str):
        empty = folder / f"{task}-cwd"
        empty.mkdir()
        result = run_fresh("yolo", "train", f"model={config(task, 'n')}", f"data={data_yamls[task]}", "epochs=1",
                           f"imgsz={IMGSZ}", "batch=4", "workers=0", "device=cpu", "plots=False", "seed=0",
                           "deterministic=True", f"project={folder}", f"name={task}", cwd=empty)
        assert list(empty.iterdir()) == []  # nothing lands in the working directory
        return result

    with ThreadPoolExecutor(cpus_per_worker()) as pool:
        futures = {task: pool.submit(train, task) for task in DENSE}
    return {task: (folder / task, future.exception() or future.result()) for task, future in futures.items()}


def trained_run(trained: dict, task: str) -> Path:
    """A task's run folder, re-raising its training failure in the test that asks for it."""
    run, result = trained[task]
    if isinstance(result, BaseException):
        raise result
    return run


@pytest.mark.slow
@pytest.mark.parametrize("task", DENSE)
def test_yolo_train_generates_the_data_and_trains_the_config_as_its_task(task, trained, data_yamls):
    run = trained_run(trained, task)
    log = trained[task][1].stdout + trained[task][1].stderr
    assert f"shapes-{DENSE[task]}.yaml: generating the shapes data set" in log
    missing = "missing masks" if task == "semantic" else "missing depth"
    assert f"4 images, 0 {missing}, 0 corrupt" in log and f"2 images, 0 {missing}, 0 corrupt" in log
    rows = list(csv.DictReader((run / "results.csv").open()))
    values = {k.strip(): float(v) for k, v in rows[-1].items() if k.strip() != "epoch"}
    losses = {k: v for k, v in values.items() if k.startswith("train/")}
    metric = "metrics/mIoU" if task == "semantic" else "metrics/delta1"
    assert losses and all(math.isfinite(v) and v > 0 for v in losses.values()) and math.isfinite(values[metric])
    checkpoint = torch.load(run / "weights" / "best.pt", map_location="cpu", weights_only=False)
    assert checkpoint["train_args"]["task"] == task and rep_blocks(checkpoint["model"])


@pytest.mark.slow
@pytest.mark.parametrize("task", DENSE)
def test_trained_checkpoint_validates_predicts_and_exports_fused_with_the_plugins_check(
        task, trained, data_yamls, randomize_bn, ultralytics_log, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    best = trained_run(trained, task) / "weights" / "best.pt"
    data = yaml.safe_load(data_yamls[task].read_text())
    image = Path(data["path"]) / "images" / "val" / "00000.png"
    metrics = YOLO(best).val(data=str(data_yamls[task]), imgsz=IMGSZ, batch=2, device="cpu", plots=False,
                             project=str(tmp_path), name="val").results_dict
    metric = "metrics/mIoU" if task == "semantic" else "metrics/delta1"
    assert 0 <= metrics[metric] <= 1
    result = YOLO(best).predict(image, imgsz=IMGSZ, device="cpu", project=str(tmp_path), name="predict")[0]
    dense = (result.semantic_mask if task == "semantic" else result.depth).data
    assert tuple(dense.shape[-2:]) == (IMGSZ, IMGSZ)
    if task == "semantic":
        assert set(dense.unique().tolist()) <= set(range(len(CLASS_NAMES) + 1))
    else:
        assert dense.min() > 0 and torch.isfinite(dense).all()

    # Ultralytics' fuse() on the trained model, its BatchNorms given random statistics so that fusion has work to do
    x = image_tensor(image)
    model = randomize_bn(YOLO(best).model.float())
    fused_model = copy.deepcopy(model).fuse(verbose=False)
    assert fused_rep_blocks(fused_model) == (19, 19)
    assert not any(isinstance(m, nn.BatchNorm2d) or hasattr(m, "conv1") for m in fused_model.modules())
    with torch.no_grad():
        difference = relative_difference(fused_model(x), model(x))
    print(f"{config(task, 'n')} fused vs unfused (random BN statistics): max relative |diff| = {difference:.2e}")
    assert difference < RTOL

    onnx_file = Path(YOLO(best).export(format="onnx", imgsz=IMGSZ, device="cpu", simplify=False))
    check = next(line for line in ultralytics_log if "fused 19 blocks, max |diff| =" in line)
    print(f"{config(task, 'n')} export: {check}")
    assert "within the relative tolerance 1e-04" in check
    trained_model = YOLO(best).model.float().eval()  # as training saved it: branches and BatchNorms
    deployed = copy.deepcopy(trained_model).fuse(verbose=False)
    if task == "semantic":
        deployed.model[-1].aux_head = None  # the P4 classifier supervises training only: the exporter drops it
    assert onnx_convs(onnx_file) == sum(isinstance(m, nn.Conv2d) for m in deployed.modules())  # one per fused conv
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    exported = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    reference = export_mode(trained_model, x)
    if task == "depth":  # metres at the input's size
        difference = relative_difference(exported, reference.numpy())
        print(f"{config(task, 'n')} ONNX Runtime vs the unfused PyTorch model: max relative |diff| = {difference:.2e}")
        assert exported.shape == (1, 1, IMGSZ, IMGSZ) and difference < RTOL
    else:  # the exporter bakes the class map in: it may differ only where two classes' logits tie within rounding
        top2 = reference.topk(2, dim=1).values
        ties = (top2[:, 0] - top2[:, 1]) <= RTOL * reference.abs().max()
        mismatches = torch.from_numpy(exported).long() != reference.argmax(1)
        print(f"{config(task, 'n')} ONNX Runtime vs the unfused PyTorch model: {int(mismatches.sum())} of "
              f"{mismatches.numel()} pixels classed otherwise, {int(ties.sum())} near-ties")
        assert exported.shape == (1, IMGSZ, IMGSZ) and exported.dtype == np.uint8 and not (mismatches & ~ties).any()


@pytest.mark.slow
@pytest.mark.parametrize("task", DENSE)
def test_fuse_command_rebuilds_and_fuses_the_trained_checkpoint(task, trained, data_yamls, tmp_path, capsys):
    best = trained_run(trained, task) / "weights" / "best.pt"
    target = tmp_path / "fused.pt"
    assert cli.main(["fuse", str(best), "-o", str(target)]) == 0  # reads it as data and rebuilds it (rebuild.py)
    printed = capsys.readouterr().out
    print(printed)
    assert f"-> {target}: fused 19 Rep blocks, max |diff| = " in printed
    fused, unfused = YOLO(target), YOLO(best)
    assert fused.task == task and fused_rep_blocks(fused.model) == (19, 19)
    image = Path(yaml.safe_load(data_yamls[task].read_text())["path"]) / "images" / "val" / "00000.png"
    x = image_tensor(image)
    with torch.no_grad():
        difference = relative_difference(fused.model.float().eval()(x), unfused.model.float().eval()(x))
    assert difference < RTOL
    if task == "depth":  # the scale calibration training wrote into the head is kept
        head, trained_head = fused.model.model[-1], unfused.model.model[-1]
        assert torch.equal(head.cal_a, trained_head.cal_a) and torch.equal(head.cal_b, trained_head.cal_b)
        assert trained_head.cal_b.item() != 0  # Ultralytics calibrated it


# --- releases without the task ----------------------------------------------------------------------------------------

GUARD = """
import json, sys
import yolov8_efficientrep
from ultralytics import YOLO
errors = {}
for name in sys.argv[1:]:
    try:
        YOLO(name)
    except Exception as error:
        errors[name] = f"{type(error).__name__} {error}"
print(json.dumps(errors))
"""


@pytest.fixture(scope="module")
def release_without_the_tasks(run_fresh, tmp_path_factory) -> dict[str, str]:
    """Build each task's config at scale n under Ultralytics 8.4.0, one after the other in one fresh interpreter (the
    release is on its ``sys.path`` from the start); return ``{config: the error it raised}``."""
    if not MATRIX_840.is_dir():
        pytest.skip(f"the Ultralytics version matrix is not installed in {MATRIX_840.parent}: run "
                    f".ci/install-ultralytics-matrix")
    folder = tmp_path_factory.mktemp("release-without-the-tasks")
    (folder / "config").mkdir()  # 8.4.0 falls back to /tmp/Ultralytics for a settings dir whose parent is missing
    result = run_fresh(sys.executable, "-c", GUARD, *(config(task, "n") for task in DENSE), cwd=folder,
                       env={"PYTHONPATH": os.pathsep.join([str(MATRIX_840), str(REPO)]),
                            "YOLO_CONFIG_DIR": str(folder / "config")})
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("task", ["semantic", "depth"])
def test_release_without_the_task_stops_with_the_upgrade_message(task, release_without_the_tasks):
    line = release_without_the_tasks[config(task, "n")].splitlines()[0]  # the message says it in its first line
    print(line)
    assert f"this model YAML needs Ultralytics >= {FIRST_RELEASE[task]}" in line and config(task, "n") in line


def test_the_fusion_check_compares_a_baked_in_class_map_by_its_shape_and_the_feature_maps_behind_it():
    from yolov8_efficientrep.fusion import _differences

    features = [torch.full((1, 8), 2.0), torch.full((1, 8), 2.0 + 2e-6)]
    maps = [torch.tensor([[0, 3]], dtype=torch.uint8), torch.tensor([[0, 4]], dtype=torch.uint8)]  # a tied pixel flips
    max_abs, max_rel = _differences([features[0], maps[0]], [features[1], maps[1]])
    assert max_abs < 1e-5 and max_rel < 1e-5  # 4 - 3 would have read as a relative difference of 0.25
