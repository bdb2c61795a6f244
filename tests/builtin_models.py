"""Write, as JSON, what every Ultralytics model YAML builds: first without the plugin, then after importing it.

Run as ``python builtin_models.py OUT.json`` in a fresh interpreter with the start-up hook off; JSON goes to a file
because Ultralytics logs to stdout. Each YAML (first scale) goes through the steps the plugin patches, as
``YOLO(yaml)`` takes them: ``yaml_model_load`` (scaled names), ``guess_model_task`` and ``parse_model`` (rows), the
layers built without initializing their weights (their classes and parameter counts; faster than the meta device).
A few small models are also built for real, from the same seed: their task, weights (a hash), classes and the stride
found by a forward pass (YOLO26's semantic and depth models among them: the plugin adds configs for those tasks).
YAMLs with TorchVision rows are skipped (they download weights).
"""

import copy
import hashlib
import json
import sys
from pathlib import Path

import torch
import ultralytics
from ultralytics import YOLO
from ultralytics.nn import tasks

from helpers import layers_left_uninitialized  # tests/, this script's folder, is on sys.path

BUILT = ("yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml", "yolo26n-sem.yaml", "yolo26n-depth.yaml")  # built for real


def layers(path: Path) -> list | str:
    """The task, parameter count, module classes and saved outputs of a YAML's layers, or the error it raises."""
    try:
        cfg = tasks.yaml_model_load(path)
        task = tasks.guess_model_task(cfg)
        with torch.no_grad(), layers_left_uninitialized():
            model, save = tasks.parse_model(copy.deepcopy(cfg), ch=cfg.get("channels", 3), verbose=False)
        return [task, sum(p.numel() for p in model.parameters()), [type(m).__name__ for m in model.modules()], save]
    except Exception as error:  # a YAML that fails must fail the same way with the plugin
        return f"{type(error).__name__}: {error}"


def built(name: str) -> list:
    """A real build's task, weights hash, module classes and stride, from seed 0."""
    torch.manual_seed(0)
    yolo = YOLO(name, verbose=False)
    weights = hashlib.sha256(b"".join(t.numpy().tobytes() for t in yolo.model.state_dict().values())).hexdigest()
    return [yolo.task, weights, [type(m).__name__ for m in yolo.model.modules()], yolo.model.stride.tolist()]


def summary() -> dict:
    """Every model YAML's layers, and the real builds."""
    folder = Path(ultralytics.__file__).parent / "cfg" / "models"
    return {"layers": {path.name: layers(path) for path in sorted(folder.rglob("*.yaml"))
                       if "TorchVision" not in path.read_text()},
            "built": {name: built(name) for name in BUILT}}


without = summary()
import yolov8_efficientrep  # noqa: E402  registers the plugin in this interpreter

Path(sys.argv[1]).write_text(json.dumps({"without": without, "with": summary(),
                                         "registered": hasattr(tasks.parse_model, "__yolov8_efficientrep_wraps__")}))
