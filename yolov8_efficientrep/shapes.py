"""A deterministic, generated YOLO-format detection data set of coloured shapes, for offline training and tests.

Each image has a noisy gradient background, unlabeled clutter (lines and specks) and 1-6 labeled shapes of random
class, colour, size and rotation; shapes may partly overlap. The same arguments always write the same files. The same
drawings, labelled for every Ultralytics task: boxes, outlines, keypoints, rotated boxes, crops, per-pixel class masks
and depth maps (``make_task_dataset``).

It writes only into a folder of its own, and never through a symbolic link: ``dataset_folders.py`` holds that policy.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import yaml

from .dataset_folders import claim_folder, make_folder, write_file

CLASS_NAMES = ("circle", "square", "triangle", "cross")
MAX_OVERLAP = 0.4  # of the smaller box: partial overlaps happen, but no shape hides another


def _png(image: np.ndarray) -> bytes:
    """Encode ``image`` as ``cv2.imwrite`` would write it to a .png file."""
    return cv2.imencode(".png", image)[1].tobytes()


def _polygon(kind: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Return the outline of a square, triangle or cross centred on (cx, cy), rotated by ``angle`` radians."""
    if kind == "square":
        corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        points = np.array(corners, dtype=np.float64) * radius / math.sqrt(2)
    elif kind == "triangle":
        points = np.array([(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 4)[:3] - math.pi / 2])
        points *= radius
    else:  # cross: a plus sign of arm width radius / 3
        w, r = radius / 3, radius
        points = np.array([(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w),
                           (-r, -w), (-w, -w)])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return (points @ rotation.T + (cx, cy)).round().astype(np.int32)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection of two (x1, y1, x2, y2) boxes as a fraction of the smaller one."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller if smaller > 0 else 0.0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Return a noisy two-colour gradient image."""
    start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    image = start * (1 - ramp) + end * ramp  # vertical gradient, (size, 1, 3)
    image = np.repeat(image, size, axis=1) + rng.normal(0, 12, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _add_clutter(rng: np.random.Generator, image: np.ndarray) -> None:
    """Draw unlabeled distractors: a few thin lines and small specks."""
    size = image.shape[0]
    for _ in range(int(rng.integers(0, 4))):
        p1, p2 = tuple(int(v) for v in rng.integers(0, size, 2)), tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.line(image, p1, p2, tuple(int(c) for c in rng.integers(0, 256, 3)), 1, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 6))):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(image, centre, max(1, size // 80), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)


class Shape(NamedTuple):
    """One drawn shape, in pixels: its class, clipped box, outline polygon, four keypoints, centre and radius."""

    cls: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2, clipped to the image
    outline: np.ndarray  # (points, 2) polygon; a circle's is sampled every 10 degrees
    keypoints: np.ndarray  # (4, 3) x, y, visibility (2 visible, 1 covered by a later shape, 0 none: a triangle's 3rd)
    centre: tuple[float, float]
    radius: float  # of the circle the shape is drawn in: its apparent size


def _paint(canvas: np.ndarray, shape: Shape, value: tuple[int, ...] | int, line_type: int) -> None:
    """Fill ``shape`` on ``canvas`` as the image shows it: a circle as a circle, every other shape as its outline."""
    if CLASS_NAMES[shape.cls] == "circle":
        centre = (round(shape.centre[0]), round(shape.centre[1]))
        cv2.circle(canvas, centre, round(shape.radius), value, -1, line_type)
    else:
        cv2.fillPoly(canvas, [shape.outline], value, line_type)


def _keypoints(kind: str, cx: float, cy: float, radius: float, outline: np.ndarray) -> np.ndarray:
    """Return a shape's four keypoints, top, right, bottom, left of the unrotated shape, so clockwise on the image.

    A circle's N/E/S/W points, a square's corners from top-left, a cross's arm tips; a triangle's apex, right and left
    vertices, its "bottom" unlabeled. A mirror image turns the order counter-clockwise; ``FLIP_IDX`` swaps right and
    left back.
    """
    points = np.zeros((4, 3))
    if kind == "circle":
        points[:, :2] = [(cx, cy - radius), (cx + radius, cy), (cx, cy + radius), (cx - radius, cy)]
    elif kind == "cross":  # each arm's tip is the midpoint of its two outer corners
        points[:, :2] = [(outline[i] + outline[i + 1]) / 2 for i in (0, 3, 6, 9)]
    elif kind == "triangle":
        points[[0, 1, 3], :2] = outline
    else:
        points[:, :2] = outline
    points[:, 2] = 2
    if kind == "triangle":
        points[2] = 0
    return points


def draw_shapes(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[Shape]]:
    """Draw one image and return it with its shapes, in drawing order (later shapes may partly cover earlier ones)."""
    image = _background(rng, size)
    _add_clutter(rng, image)
    boxes: list[tuple[float, float, float, float]] = []
    shapes = []
    for _ in range(int(rng.integers(1, 7))):
        for _attempt in range(20):  # rejection-sample a place that overlaps earlier shapes only partly
            radius = rng.uniform(0.06, 0.2) * size
            cx, cy = rng.uniform(radius, size - radius, 2)
            cls = int(rng.integers(len(CLASS_NAMES)))
            kind = CLASS_NAMES[cls]
            if kind == "circle":
                box = (cx - radius, cy - radius, cx + radius, cy + radius)
            else:
                outline = _polygon(kind, cx, cy, radius, rng.uniform(0, 2 * math.pi))
                box = (*outline.min(0), *(outline.max(0) + 1))
            if all(_overlap(box, other) < MAX_OVERLAP for other in boxes):
                break
        else:
            continue
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if kind == "circle":
            outline = cv2.ellipse2Poly((round(cx), round(cy)), (round(radius), round(radius)), 0, 0, 360, 10)[:-1]
        shape = Shape(cls, tuple(min(max(v, 0.0), size) for v in box), outline,
                      _keypoints(kind, cx, cy, radius, outline), (cx, cy), radius)
        _paint(image, shape, colour, cv2.LINE_AA)
        for earlier in shapes:  # keypoints this shape covers are no longer visible
            covered = [cv2.pointPolygonTest(outline, (float(x), float(y)), False) >= 0 for x, y, _ in earlier.keypoints]
            earlier.keypoints[np.array(covered) & (earlier.keypoints[:, 2] > 0), 2] = 1
        boxes.append(box)
        shapes.append(shape)
    return image, shapes


def draw_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """Draw one image and return it with its labels ``(class, x_center, y_center, width, height)`` (normalized)."""
    image, shapes = draw_shapes(rng, size)
    labels = [(shape.cls, (x1 + x2) / 2 / size, (y1 + y2) / 2 / size, (x2 - x1) / size, (y2 - y1) / size)
              for shape in shapes for x1, y1, x2, y2 in [shape.box]]
    return image, labels


def make_shapes_dataset(root: str | Path, train: int = 64, val: int = 16, imgsz: int = 128, seed: int = 0) -> Path:
    """Write the data set under ``root`` (images/ and labels/ with train and val splits) and its data YAML.

    Args:
        root (str | Path): Output directory: new, empty, or written by this generator before (its files are rewritten
            identically).
        train (int): Number of training images.
        val (int): Number of validation images.
        imgsz (int): Side of the square images in pixels.
        seed (int): Random seed; the same arguments always give the same files.

    Returns:
        (Path): The data YAML (``root/shapes.yaml``), usable as ``data=`` in Ultralytics.

    Raises:
        FileExistsError: ``root`` is a folder of other files (see ``claim_folder``).
    """
    root = Path(root).resolve()
    claim_folder(root, "make_shapes_dataset:", "pass a new or empty folder")
    for split, count, split_seed in (("train", train, seed), ("val", val, seed + 1_000_003)):
        rng = np.random.default_rng(split_seed)
        for kind in ("images", "labels"):
            make_folder(root, kind, split)
        for index in range(count):
            image, labels = draw_sample(rng, imgsz)
            write_file(root, f"images/{split}/{index:05d}.png", _png(image))
            rows = (f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, x, y, w, h in labels)
            write_file(root, f"labels/{split}/{index:05d}.txt", ("\n".join(rows) + "\n").encode())
    spec = {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(CLASS_NAMES))}
    write_file(root, "shapes.yaml", yaml.safe_dump(spec, sort_keys=False).encode())
    return root / "shapes.yaml"


TASKS = ("detect", "segment", "pose", "obb", "classify", "semantic", "depth")
KPT_SHAPE = [4, 3]  # pose: four keypoints of x, y, visibility
# Ultralytics' fliplr mirrors the keypoints and then reorders them as keypoints[flip_idx]: right and left trade places,
# so that the order stays top, right, bottom, left (clockwise) on the flipped image.
FLIP_IDX = [0, 3, 2, 1]
# semantic: the class of pixels no shape covers, after the shapes' classes (whose ids stay those of every other task)
BACKGROUND = len(CLASS_NAMES)
# depth: every shape is a flat card of one physical size facing the camera, so its depth is inversely proportional to
# its drawn radius: CARD_SIZE / (radius / image side) metres, 2.5 m for the largest shapes (radius 0.2 sides), 8.3 m
# for the smallest (0.06); behind them all a wall at BACKGROUND_DEPTH. A shape drawn over a nearer one (it covers part
# of it) is moved in front of it, to IN_FRONT times that one's depth: what covers is always nearer than what it covers.
CARD_SIZE = 0.5  # metres: the depth at which a card's radius would span the whole image side
BACKGROUND_DEPTH = 10.0  # metres
IN_FRONT = 0.9
DEPTH_SCALE = 1000  # depth PNG values per metre (Ultralytics' depth_scale): millimetres in 16 bits
DENSE_FOLDERS = {"semantic": "masks", "depth": "depth"}  # beside images/, as Ultralytics' dense datasets read them


def _task_label(task: str, shape: Shape, size: int) -> str:
    """Return one YOLO-format label line of ``shape`` for a segment, pose or obb data set (normalized coordinates)."""
    if task == "segment":
        points = shape.outline.reshape(-1)
    elif task == "obb":  # the smallest rotated rectangle around the outline
        points = cv2.boxPoints(cv2.minAreaRect(shape.outline.astype(np.float32))).reshape(-1)
    else:  # pose: the box, then x y visibility per keypoint
        x1, y1, x2, y2 = shape.box
        box = f"{(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} {(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}"
        keypoints = " ".join(f"{x / size:.6f} {y / size:.6f} {v:.0f}" for x, y, v in shape.keypoints)
        return f"{shape.cls} {box} {keypoints}"
    return f"{shape.cls} " + " ".join(f"{v:.6f}" for v in np.clip(points / size, 0.0, 1.0))


def dense_labels(shapes: list[Shape], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the per-pixel labels of one image's shapes: its class mask (uint8) and its depth map (metres, float32).

    The shapes are filled in drawing order, a later one over an earlier one as in the image, without anti-aliasing (an
    edge pixel the image blends belongs to one side). The class mask holds each pixel's shape class, or ``BACKGROUND``;
    the depth map each pixel's depth by the rule above ``CARD_SIZE``.
    """
    layers = np.zeros((size, size), np.uint8)  # 0: background; k: shapes[k - 1] is on top
    depths = [BACKGROUND_DEPTH]
    for k, shape in enumerate(shapes, 1):
        footprint = np.zeros_like(layers)
        _paint(footprint, shape, 1, cv2.LINE_8)
        covered = [depths[i] for i in np.unique(layers[footprint > 0]) if i]
        depths.append(min([CARD_SIZE * size / shape.radius, *(IN_FRONT * depth for depth in covered)]))
        layers[footprint > 0] = k
    classes = np.array([BACKGROUND, *(shape.cls for shape in shapes)], np.uint8)
    return classes[layers], np.array(depths, np.float32)[layers]


def _write_crops(root: Path, split: str, index: int, image: np.ndarray, shapes: list[Shape]) -> None:
    """Save a square crop around each shape (a quarter of its size as margin) under ``root/split/<class name>/``."""
    size = image.shape[0]
    for k, shape in enumerate(shapes):
        x1, y1, x2, y2 = shape.box
        half = max(x2 - x1, y2 - y1) * 0.625
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        left, top = max(round(cx - half), 0), max(round(cy - half), 0)
        crop = image[top:min(round(cy + half), size), left:min(round(cx + half), size)]
        write_file(root, f"{split}/{CLASS_NAMES[shape.cls]}/{index:05d}_{k}.png", _png(crop))


def make_task_dataset(root: str | Path, task: str, train: int = 64, val: int = 16, imgsz: int = 128,
                      seed: int = 0) -> Path:
    """Write the shapes data set for an Ultralytics task: the same images as ``make_shapes_dataset``, task labels.

    - ``detect``: exactly ``make_shapes_dataset``.
    - ``segment``: each shape's outline polygon (a shape drawn later may cover part of it).
    - ``pose``: the box and four keypoints per shape (``kpt_shape: [4, 3]``, ``flip_idx: [0, 3, 2, 1]``), top, right,
      bottom and left of the unrotated shape: a circle's N/E/S/W points, a square's corners, a cross's arm tips, a
      triangle's apex, right and left vertices (the bottom unlabeled); a keypoint covered by a later shape is marked
      occluded (visibility 1).
    - ``obb``: the smallest rotated rectangle around each outline.
    - ``classify``: a crop around every shape, in ``train/<class>/`` and ``val/<class>/`` folders.
    - ``semantic``: a class mask per image (``masks/<split>/<stem>.png``, 8-bit, ``masks_dir: masks``): each pixel's
      shape class, the top one where shapes overlap, or ``BACKGROUND`` (4), named ``background``.
    - ``depth``: a depth map per image (``depth/<split>/<stem>.png``, 16-bit millimetres, ``depth_scale: 1000``), by
      the rule above ``CARD_SIZE``: each shape at a depth inversely proportional to its size, in front of every shape
      it covers, before a wall at 10 m.

    Args:
        root (str | Path): Output directory: new, empty, or written by this generator before (its files are rewritten
            identically).
        task (str): One of ``TASKS``.
        train (int): Number of training images (classification: images the crops come from).
        val (int): Number of validation images.
        imgsz (int): Side of the square images in pixels.
        seed (int): Random seed; the same arguments always give the same files.

    Returns:
        (Path): What Ultralytics takes as ``data=``: the data YAML (``root/shapes-<task>.yaml``), or for
            classification the data set directory.

    Raises:
        ValueError: ``task`` is unknown, or a classification split lacks a class (use more images).
        FileExistsError: ``root`` is a folder of other files (see ``claim_folder``).
    """
    if task not in TASKS:
        raise ValueError(f"make_task_dataset: unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if task == "detect":
        return make_shapes_dataset(root, train, val, imgsz, seed)
    root = Path(root).resolve()
    claim_folder(root, "make_task_dataset:", "pass a new or empty folder")
    labels = DENSE_FOLDERS.get(task, "labels")
    for split, count, split_seed in (("train", train, seed), ("val", val, seed + 1_000_003)):
        rng = np.random.default_rng(split_seed)
        for kind in ("images", labels) if task != "classify" else ():
            make_folder(root, kind, split)
        for index in range(count):
            image, shapes = draw_shapes(rng, imgsz)
            if task == "classify":
                _write_crops(root, split, index, image, shapes)
                continue
            write_file(root, f"images/{split}/{index:05d}.png", _png(image))
            if task in DENSE_FOLDERS:
                classes, depth = dense_labels(shapes, imgsz)
                dense = classes if task == "semantic" else np.round(depth * DEPTH_SCALE).astype(np.uint16)
                write_file(root, f"{labels}/{split}/{index:05d}.png", _png(dense))
                continue
            rows = (_task_label(task, shape, imgsz) for shape in shapes)
            write_file(root, f"labels/{split}/{index:05d}.txt", ("\n".join(rows) + "\n").encode())
        if task == "classify" and (missing := [n for n in CLASS_NAMES if not (root / split / n).is_dir()]):
            raise ValueError(f"make_task_dataset: the {split} split of {count} images has no {', '.join(missing)}; "
                             f"use more images")
    if task == "classify":
        return root
    spec = {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(CLASS_NAMES))}
    if task == "pose":
        spec.update(kpt_shape=KPT_SHAPE, flip_idx=FLIP_IDX)
    elif task == "semantic":
        spec.update(names=dict(enumerate((*CLASS_NAMES, "background"))), masks_dir=DENSE_FOLDERS[task])
    elif task == "depth":
        spec.update(names={0: "depth"}, depth_scale=DEPTH_SCALE)
    write_file(root, f"shapes-{task}.yaml", yaml.safe_dump(spec, sort_keys=False).encode())
    return root / f"shapes-{task}.yaml"


def generate_for_data_yaml(data: dict) -> Path:
    """Write the data set of a data YAML such as ``cfg/shapes.yaml``; called by that YAML's ``download:`` script.

    Ultralytics runs the script when the YAML's val images are missing, with ``yaml`` bound to the parsed YAML whose
    ``path`` it has resolved (a relative ``path:`` lies under its ``datasets_dir``). The YAML's ``generate:`` mapping
    holds ``make_task_dataset``'s keyword arguments; ``task`` defaults to ``detect``. Ultralytics logs this step as a
    "Dataset download"; the line logged before it says that the set is generated, offline.

    Returns:
        (Path): What ``make_task_dataset`` returns.

    Raises:
        ValueError: ``generate:`` has an unknown key, an unknown task, or a count, size or seed that is not a positive
            integer (``seed``: >= 0).
        FileExistsError: ``path`` is a folder this generator did not create (see ``claim_folder``).
    """
    source = data.get("yaml_file", "the data YAML")
    settings = data.get("generate") or {}
    allowed = tuple(inspect.signature(make_task_dataset).parameters)[1:]  # all but root
    if not isinstance(settings, dict) or set(settings) - set(allowed):
        raise ValueError(f"{source}: 'generate:' accepts only {', '.join(allowed)} (got {settings!r}); fix the YAML")
    settings = dict(settings)
    task = settings.pop("task", "detect")
    if task not in TASKS:
        raise ValueError(f"{source}: generate: task: {task!r} must be one of {', '.join(TASKS)}; fix the YAML")
    for key, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "seed" else 1):
            raise ValueError(f"{source}: generate: {key}: {value!r} must be an integer >= {int(key != 'seed')}; "
                             f"fix the YAML")
    from ultralytics.utils import LOGGER

    root = Path(data["path"])
    claim_folder(root, f"{source}: its path:", "change 'path:' in the YAML to a new folder, or move that folder")
    LOGGER.info(f"{source}: generating the shapes data set in {root}, offline (nothing is downloaded: Ultralytics "
                f"runs the YAML's download: script, which draws the images)")
    return make_task_dataset(root, task, **settings)
