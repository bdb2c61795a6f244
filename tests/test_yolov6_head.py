"""``import-yolov6 --head yolov6``: YOLOv6 checkpoints become whole Ultralytics models predicting what YOLOv6 predicts.

The YOLOv6 networks are real (YOLOv6's own code, PyPI ``yolov6detect``; ``yolov6_models.py`` says how each release's
tree is made), with BN statistics measured on the photos (so the scores follow the image, as a trained model's do),
random BN affine values and random prediction weights, saved as YOLOv6 saves them. On Ultralytics' bus.jpg and
zidane.jpg at 640, letterboxed by YOLOv6's own code, YOLOv6's own inference output (xywh boxes, objectness 1, class
scores) is compared with the imported model's decoded output before NMS, and YOLOv6's NMS with Ultralytics' at
YOLOv6's inference thresholds; then Ultralytics' predictor, ONNX Runtime running the export, validation, and one
fine-tuning epoch for another class count.

The default run covers every head layout (YOLOv6 3.0 N/S's distillation head, the plain head without and with DFL,
a --fuse_ab head) and every naming, the M and L designs at N's depth and width; ``YOLOV6_IMPORT_ALL=1`` adds every
published size at full size.
"""

import csv
import math
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import ultralytics
import yaml

pytest.importorskip("yolov6.models.yolo", reason="YOLOv6's code is not installed: pip install --no-deps "
                                                  "yolov6detect==0.4.1 tqdm (the test extra lists tqdm)")
import onnxruntime  # noqa: E402
import yolov6_models as ym  # noqa: E402
from ultralytics import YOLO  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils import ASSETS  # noqa: E402
from ultralytics.utils.nms import non_max_suppression  # noqa: E402
from yolov6.core.inferer import Inferer  # noqa: E402
from yolov6.data.data_augment import letterbox  # noqa: E402
from yolov6.utils.nms import non_max_suppression as yolov6_nms  # noqa: E402

from yolov8_efficientrep.cli import main  # noqa: E402
from yolov8_efficientrep.checkpoints import load_checkpoint  # noqa: E402
from yolov8_efficientrep.graphs import onnx_unfused_nodes  # noqa: E402
from yolov8_efficientrep.heads import PRIOR, EffiDeHead  # noqa: E402
from yolov8_efficientrep.importer.forms import FORMS  # noqa: E402

from helpers import REPO, RTOL, first_then_slow  # noqa: E402
from yolov6_zoo_models import (CONF, IOU, MAX_DET, MAX_WH, PHOTOS, compare, import_with_head,  # noqa: E402
                               same_detections)

COCO_NAMES = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/datasets/coco.yaml").read_text())["names"]

# (generation, design, size, training_mode, naming, head) -> the model the import must pick, the YOLOv6 head
# ModuleLists it must leave out. "head": distill_ns (YOLOv6 3.0 N/S as released: distillation runs, reg_preds of
# 4 x 17 DFL bins beside reg_preds_lrtb), plain (effidehead.Detect: v2.0, v3.0 M/L), fuse_ab (a --fuse_ab run).
CASES = {
    "v3.0 N, 0.3.x (distillation head)": (("v3", "n", "n", "repvgg", "0.3", "distill_ns"), "yolov6n-repbifpan",
                                          {"reg_preds", "proj", "proj_conv"}),
    "v3.0 M design at N size, 0.3.x (DFL)": (("v3", "m", "n", "repvgg", "0.3", "plain"), "yolov6n-cspbifpan", set()),
    "v3.0 L design at N size, 0.4.x (DFL)": (("v3", "l", "n", "conv_silu", "0.4", "plain"),
                                             "yolov6n-cspbifpan-silu", set()),
    "v2.0 N, 0.2.x": (("v2", "n", "n", "repvgg", "0.3", "plain"), "yolov6n-reppan", {"proj", "proj_conv"}),
    "v2.0 L design at N size, 0.2.x (DFL)": (("v2", "l", "n", "conv_silu", "0.3", "plain"), "yolov6n-cspbep-silu",
                                             set()),
    "v3.0 M design at N size, --fuse_ab run": (("v3", "m", "n", "repvgg", "0.3", "fuse_ab"), "yolov6n-cspbifpan",
                                               {"cls_preds_ab", "reg_preds_ab"}),
}
MORE_CASES = {  # every published size at full size
    "v3.0 S, 0.3.x (distillation head)": (("v3", "n", "s", "repvgg", "0.3", "distill_ns"), "yolov6s-repbifpan",
                                          {"reg_preds", "proj", "proj_conv"}),
    "v3.0 M, 0.3.x": (("v3", "m", "m", "repvgg", "0.3", "plain"), "yolov6m-cspbifpan", set()),
    "v3.0 L, 0.3.x": (("v3", "l", "l", "conv_silu", "0.3", "plain"), "yolov6l-cspbifpan-silu", set()),
    "v3.0 S, 0.4.x (distillation head)": (("v3", "n", "s", "repvgg", "0.4", "distill_ns"), "yolov6s-repbifpan",
                                          {"reg_preds", "proj", "proj_conv"}),
    "v3.0 L, 0.4.x": (("v3", "l", "l", "conv_silu", "0.4", "plain"), "yolov6l-cspbifpan-silu", set()),
    "v3.0 N-qa, 0.4.x QARepVGGBlockV2": (("v3", "n", "n", "qarepvggv2", "0.4", "distill_ns"), "yolov6n-repbifpan",
                                         {"reg_preds", "proj", "proj_conv"}),
    "v3.0 M-qa, 0.3.1 QARepVGGBlock": (("v3", "m", "m", "qarepvgg", "0.3", "plain"), "yolov6m-cspbifpan", set()),
    "v2.0 T, 0.2.x": (("v2", "n", "t", "repvgg", "0.3", "plain"), "yolov6t-reppan", {"proj", "proj_conv"}),
    "v2.0 S, 0.2.x": (("v2", "n", "s", "repvgg", "0.3", "plain"), "yolov6s-reppan", {"proj", "proj_conv"}),
    "v2.0 M, 0.2.x": (("v2", "m", "m", "repvgg", "0.3", "plain"), "yolov6m-cspbep", set()),
    "v2.0 L, 0.2.x": (("v2", "l", "l", "conv_silu", "0.3", "plain"), "yolov6l-cspbep-silu", set()),
}
if os.environ.get("YOLOV6_IMPORT_ALL") == "1":
    CASES.update(MORE_CASES)
N, M = "v3.0 N, 0.3.x (distillation head)", "v3.0 M design at N size, 0.3.x (DFL)"
OWN_NAMES = "v2.0 N, 0.2.x"  # this file stores its own class names (the others store none: COCO's apply)


def photo(name: str, rect: bool = True, size: int = 640) -> torch.Tensor:
    """Return an Ultralytics asset letterboxed by YOLOv6's own code (a minimal rectangle, or a square), RGB, 0-1."""
    image = letterbox(cv2.imread(str(ASSETS / name)), size, auto=rect, stride=32)[0]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[::-1])).float()[None] / 255


@pytest.fixture(scope="module")
def photos() -> dict[str, torch.Tensor]:
    return {name: photo(name) for name in PHOTOS}


@pytest.fixture(scope="module")
def imported(photos, tmp_path_factory):
    """Return a function: case -> (YOLOv6's network, its file, the import, what the command printed); made once."""
    made = {}

    def get(case: str):
        if case not in made:
            (generation, design, size, mode, naming, head), _, _ = CASES[case]
            config = ym.yolov6_config(generation, design, size, mode, dfl=True if head == "distill_ns" else None)
            model = ym.build(config, naming, distill_ns=head == "distill_ns", fuse_ab=head == "fuse_ab")
            model = ym.calibrate_bn(model, torch.cat([photo(name, rect=False, size=320) for name in PHOTOS]))
            if case == OWN_NAMES:
                model.names = [f"thing {i}" for i in range(80)]
            folder = tmp_path_factory.mktemp("import")
            source = ym.save(model, folder / f"yolov6{size}.pt", naming)
            output, printed = import_with_head(source)
            made[case] = model, source, output, printed
        return made[case]

    return get


@pytest.mark.parametrize("case", first_then_slow(CASES))
def test_import_with_its_head_computes_yolov6s_output_and_detections(case, imported, photos):
    yolov6, _, output, printed = imported(case)
    _, model_name, dropped = CASES[case]
    assert printed.startswith(f"yolov6{model_name[6]} (") and f"-> {model_name}" in printed
    ours, checkpoint = load_checkpoint(output)  # as yolo loads it: float32, eval, unfused
    head = ours.model[-1]
    assert type(head) is EffiDeHead and head.nc == 80 and ours.yaml["yaml_file"] == f"{model_name}.yaml"
    assert {key.split(".")[1] for key in checkpoint["yolov6_import"]["dropped"]} == dropped  # only training-only parts
    assert f"left out: {', '.join(sorted(dropped))})" in printed if dropped else "left out" not in printed
    assert ours.names == ({i: f"thing {i}" for i in range(80)} if case == OWN_NAMES else COCO_NAMES)

    differences = []
    for name, image in photos.items():
        theirs = ym.inference(yolov6, image)
        with torch.no_grad():
            decoded = ours(image)[0]
        boxes, scores = compare(decoded, theirs)
        assert boxes <= RTOL and scores <= RTOL, (name, boxes, scores)
        expected = yolov6_nms(theirs.clone(), CONF, IOU, max_det=MAX_DET)[0]
        ultralytics_nms = non_max_suppression(decoded, CONF, IOU, max_det=MAX_DET, max_wh=MAX_WH)[0]
        detected = same_detections(ultralytics_nms, expected, box_atol=RTOL * theirs[..., :4].abs().max().item())
        differences.append((boxes, scores, *detected, len(expected)))
    boxes, scores, box_pixels, score_points, _ = (max(column) for column in zip(*differences))
    print(f"{case}: {printed.splitlines()[0]}\n  pre-NMS relative difference: boxes {boxes:.1e}, scores {scores:.1e}; "
          f"after NMS (conf {CONF}, iou {IOU}) {[d[-1] for d in differences]} detections on {list(photos)}, the same "
          f"classes, boxes within {box_pixels:.1e} px, scores within {score_points:.1e}")


def test_yolo_predict_gives_yolov6s_detections(imported):
    yolov6, _, output, _ = imported(N)
    model = YOLO(output)
    for name in PHOTOS:  # one at a time: Ultralytics letterboxes a batch of different shapes to squares
        result = model.predict(ASSETS / name, imgsz=640, conf=CONF, iou=IOU, max_det=MAX_DET, device="cpu",
                               verbose=False)[0]  # fused by AutoBackend
        image = photo(name)
        theirs = yolov6_nms(ym.inference(yolov6, image), CONF, IOU, max_det=MAX_DET)[0]
        theirs[:, :4] = Inferer.rescale(image.shape[2:], theirs[:, :4], result.orig_shape)  # to the photo's pixels
        boxes, scores = same_detections(result.boxes.data, theirs, box_atol=RTOL * max(result.orig_shape))
        print(f"yolo predict vs YOLOv6 on {name} ({N}, conf {CONF}, iou {IOU}): the same {len(theirs)} detections, "
              f"boxes within {boxes:.1e} px, scores within {scores:.1e}")


@pytest.mark.parametrize("case", first_then_slow([N, M]))
def test_onnx_export_runs_in_onnxruntime_with_yolov6s_output(case, imported, tmp_path):
    yolov6, _, output, _ = imported(case)
    onnx_file = YOLO(output).export(format="onnx", imgsz=640, device="cpu")  # fused and checked by the plugin
    assert onnx_unfused_nodes(onnx_file) == []
    session = onnxruntime.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    largest = [0.0] * 4
    for name in PHOTOS:
        image = photo(name, rect=False)  # the export's fixed 640x640 input
        theirs = ym.inference(yolov6, image)
        exported = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: image.numpy()})[0])
        boxes, scores = compare(exported, theirs)
        assert boxes <= RTOL and scores <= RTOL, (name, boxes, scores)
        detected = same_detections(non_max_suppression(exported, CONF, IOU, max_det=MAX_DET, max_wh=MAX_WH)[0],
                                   yolov6_nms(theirs.clone(), CONF, IOU, max_det=MAX_DET)[0],
                                   box_atol=RTOL * theirs[..., :4].abs().max().item())
        largest = [max(a, b) for a, b in zip(largest, (boxes, scores, *detected))]
    print(f"ONNX Runtime vs YOLOv6, {case}: pre-NMS boxes {largest[0]:.1e}, scores {largest[1]:.1e} relative; the same "
          f"detections, boxes within {largest[2]:.1e} px, scores within {largest[3]:.1e}")


def test_the_import_validates_with_coco_names(imported, shapes_data, tmp_path):
    _, _, output, _ = imported(N)
    data = {**yaml.safe_load(shapes_data.read_text()), "names": COCO_NAMES}  # the shapes' labels 0-3 as COCO's
    coco_like = tmp_path / "coco-named-shapes.yaml"
    coco_like.write_text(yaml.safe_dump(data))
    metrics = YOLO(output).val(data=str(coco_like), imgsz=64, batch=8, device="cpu", plots=False,
                               project=str(tmp_path), name="val")
    assert 0 <= metrics.box.map <= 1 and len(metrics.names) == 80


@pytest.mark.slow
def test_fine_tuning_reinitializes_only_the_class_predictions(imported, installed_hook, run_fresh, shapes_data,
                                                              tmp_path):
    _, _, output, _ = imported(N)
    source = load_checkpoint(output)[0]
    tuned = DetectionModel(source.yaml, nc=4, verbose=False)  # what Ultralytics' trainer builds for a 4-class set,
    tuned.load(source, verbose=False)  # then loads the checkpoint into
    head = f"model.{len(tuned.model) - 1}"
    new = {f"{head}.cv3.{i}.1.{p}" for i in range(3) for p in ("weight", "bias")}  # the class predictions
    old_state, tuned_state = source.state_dict(), tuned.state_dict()
    assert all(torch.equal(tensor, old_state[key]) for key, tensor in tuned_state.items() if key not in new)
    for i in range(3):  # YOLOv6's initialization of a prediction
        prediction = tuned.model[-1].cv3[i][1]
        assert prediction.out_channels == 4 and not prediction.weight.any()
        assert torch.allclose(prediction.bias, torch.full((4,), -math.log((1 - PRIOR) / PRIOR)))

    result = run_fresh("yolo", "train", f"model={output}", f"data={shapes_data}", "epochs=1", "imgsz=64", "batch=8",
                       "workers=0", "device=cpu", "plots=False", "val=False", f"project={tmp_path}", "name=tuned",
                       env={"ULTRALYTICS_SAFE_LOAD": "1"})  # the stock CLI, Ultralytics' restricted loader
    transferred = re.search(r"Transferred (\d+)/(\d+) items", result.stdout + result.stderr)
    assert transferred and (int(transferred[1]), int(transferred[2])) == (len(tuned_state) - 6, len(tuned_state))
    rows = list(csv.DictReader((tmp_path / "tuned" / "results.csv").open()))
    losses = {k.strip(): float(v) for k, v in rows[0].items() if k.strip().startswith("train/")}
    assert len(rows) == 1 and len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses.values()), losses
    print(f"one epoch from {N} at imgsz 64: Transferred {transferred[1]}/{transferred[2]}, losses {losses}")


def test_head_yolov6_keeps_yolov6s_classes(imported, tmp_path, capsys):
    _, source, _, _ = imported(N)
    assert main(["import-yolov6", str(source), "-o", str(tmp_path / "out.pt"), "--head", "yolov6", "--nc", "4"]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--head yolov6 keeps YOLOv6's head and its 80 classes, not nc=4" in error
    assert not any(tmp_path.iterdir())


def test_yolov6_configs_are_the_yolov8_rows_with_effidehead_last():
    for form in FORMS:
        ours = yaml.safe_load((REPO / "cfg" / f"{form.whole_config}.yaml").read_text())
        theirs = yaml.safe_load((REPO / "cfg" / f"{form.config}.yaml").read_text())
        *rows, last = ours["backbone"] + ours["head"]
        assert rows == (theirs["backbone"] + theirs["head"])[:-1] and ours.get("scales") == theirs.get("scales")
        head = "EffiDeSegHead" if form.task == "segment" else "EffiDeHead" if form.scaled else "LiteEffiDeHead"
        assert last[:3] == [list(form.neck_outputs), 1, head] and last[3][0] == "nc"
        if form.scaled:
            assert last[3][1] == (0 if form.published in ("nts", "ns") else 16)  # as the releases infer
