"""The one training recipe of the accuracy benchmarks: the side by side, the zoo's models (ablation, INT8 accuracy).

The data set is the shipped data YAML's generated shapes set; everything the recipe does not set is Ultralytics'
default. ``zoo.key`` hashes the recipe, so a change here trains the zoo's models anew.
"""

from __future__ import annotations

import yaml

from yolov8_efficientrep.demo import DEFAULT_DATA

GENERATE = yaml.safe_load(DEFAULT_DATA.read_text())["generate"]  # the generated set's sizes: train, val, imgsz
# One optimizer step per batch of 8 (nbs = batch), deterministic, CPU, no plots.
RECIPE = {"imgsz": GENERATE["imgsz"], "batch": 8, "nbs": 8, "deterministic": True, "device": "cpu", "plots": False}
EPOCHS = 30  # the side by side's and the INT8 accuracy's training length (the ablation's first length is shorter)
