"""Print, as JSON, the layer types and parameter count of every Ultralytics model YAML (first scale).

Run as ``python builtin_models.py OUT.json [--plugin]`` in a fresh interpreter (``--plugin`` imports
yolov8_efficientrep first); the test compares both files. JSON goes to a file because Ultralytics logs to stdout. YAMLs with TorchVision rows are skipped (they download weights).
"""

import json
import sys
from pathlib import Path

if "--plugin" in sys.argv:
    import yolov8_efficientrep  # noqa: F401

import ultralytics
from ultralytics import RTDETR, YOLO

summary = {}
for path in sorted((Path(ultralytics.__file__).parent / "cfg" / "models").rglob("*.yaml")):
    if "TorchVision" in path.read_text():
        continue
    try:
        model = (RTDETR if "rtdetr" in path.name else YOLO)(path).model
        summary[path.name] = [sum(p.numel() for p in model.parameters()), [type(m).__name__ for m in model.modules()]]
    except Exception as error:  # a YAML that fails must fail the same way with the plugin
        summary[path.name] = f"{type(error).__name__}: {error}"
Path(sys.argv[1]).write_text(json.dumps(summary))
