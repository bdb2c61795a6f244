"""Models trained once with the recipe (``recipe.RECIPE``) on the generated shapes set, for the accuracy benchmarks.

The ablation (``ablation.py``) and the INT8 accuracy table (``int8_accuracy.py``) need the same trained models; each
costs minutes of CPU. ``trained()`` trains a model YAML with ``RECIPE`` once and keeps its ``best.pt``, results.csv and
the seconds of each training epoch in a cache folder keyed by everything that decides the result (the YAML's text,
the recipe, epochs, seed and the library versions). Training is deterministic, so a cached model is the model a rerun
would train; the key makes any change train anew. ``qat_trained()`` caches a quantization-aware fine-tune of such a
run the same way (the QAT benchmark, ``qat.py``). Delete the folder (``--zoo``, default ``~/.cache/yolov8-efficientrep/
zoo``) to start over.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import ultralytics

import yolov8_efficientrep
from yolov8_efficientrep.shapes import make_shapes_dataset

from .environment import environment
from .recipe import GENERATE, RECIPE

DEFAULT_ZOO = Path.home() / ".cache" / "yolov8-efficientrep" / "zoo"


@dataclass
class TrainedModel:
    """One cached training run."""

    cfg: str
    best: Path  # best.pt
    results_csv: Path
    epoch_seconds: list[float]  # training time of each epoch, validation excluded (as measured when it trained)

    def final(self, column: str) -> float:
        """Return a results.csv column at the last epoch, e.g. ``metrics/mAP50-95(B)``."""
        with self.results_csv.open() as file:
            rows = [{key.strip(): value for key, value in row.items()} for row in csv.DictReader(file)]
        return float(rows[-1][column])


def _fit(model, folder: Path, **train_args) -> list[float]:
    """Train ``model`` (a ``YOLO``) into ``folder`` with ``train_args``; return each training epoch's seconds."""
    started: list[float] = []
    seconds: list[float] = []
    model.add_callback("on_train_epoch_start", lambda trainer: started.append(time.perf_counter()))
    model.add_callback("on_train_epoch_end", lambda trainer: seconds.append(time.perf_counter() - started[-1]))
    model.train(project=str(folder.parent), name=folder.name, exist_ok=True, **train_args)
    return seconds


def dataset(zoo: Path = DEFAULT_ZOO) -> Path:
    """Return the data YAML of the generated set the recipe trains on (written once, deterministic)."""
    folder = zoo / f"shapes-{GENERATE['train']}-{GENERATE['val']}-{GENERATE['imgsz']}"
    data = folder / "shapes.yaml"
    return data if data.is_file() else make_shapes_dataset(folder, GENERATE["train"], GENERATE["val"],
                                                           GENERATE["imgsz"])


def _yaml_text(cfg: str) -> str:
    """Return the model YAML ``cfg`` resolves to (a bare name of Ultralytics or of this package), as canonical text."""
    from ultralytics.nn.tasks import yaml_model_load

    spec = {k: v for k, v in yaml_model_load(cfg).items() if k != "yaml_file"}  # the network, not where it was read
    return json.dumps(spec, sort_keys=True, default=str)


def key(cfg: str, epochs: int, seed: int, overrides: dict) -> str:
    """Return the cache key: a hash of everything that decides what training produces."""
    parts = {"yaml": _yaml_text(cfg), "recipe": RECIPE, "epochs": epochs, "seed": seed, "overrides": overrides,
             "versions": [torch.__version__, ultralytics.__version__, yolov8_efficientrep.__version__],
             "data": GENERATE}
    return _digest(parts)


def _digest(parts: dict) -> str:
    """Return a short hash of ``parts``, the cache key of a run."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _folder(cfg: str, epochs: int, seed: int, zoo: Path, overrides: dict) -> Path:
    """Return the cache folder of a run: named by content, not by file name, so the same network under another name
    (a variant that became a shipped config's default) is the same cached run."""
    return zoo / f"e{epochs}-s{seed}-{key(cfg, epochs, seed, overrides)}"


def cached(cfg: str, epochs: int, seed: int = 0, zoo: Path = DEFAULT_ZOO, **overrides) -> TrainedModel | None:
    """Return the cached run of ``cfg`` (as ``trained`` would), or None if it has not been trained to the end."""
    folder = _folder(cfg, epochs, seed, zoo, overrides)
    record = folder / "trained.json"
    if not record.is_file():
        return None
    saved = json.loads(record.read_text())
    return TrainedModel(cfg, folder / "weights" / "best.pt", folder / "results.csv", saved["epoch_seconds"])


def trained(cfg: str, epochs: int, seed: int = 0, zoo: Path = DEFAULT_ZOO, log: Callable[[str], object] = print,
            **overrides) -> TrainedModel:
    """Return ``cfg`` trained with ``RECIPE`` for ``epochs`` (and any training ``overrides``), training it if needed."""
    from ultralytics import YOLO

    done = cached(cfg, epochs, seed, zoo, **overrides)
    if done:
        return done
    folder = _folder(cfg, epochs, seed, zoo, overrides)
    record = folder / "trained.json"
    log(f"training {cfg} for {epochs} epochs (seed {seed}{', ' if overrides else ''}"
        f"{', '.join(f'{k}={v}' for k, v in overrides.items())}) into {folder}")
    seconds = _fit(YOLO(cfg), folder, data=str(dataset(zoo)), epochs=epochs, seed=seed, **{**RECIPE, **overrides})
    record.write_text(json.dumps({"cfg": cfg, "epochs": epochs, "seed": seed, "overrides": overrides,
                                  "epoch_seconds": seconds}, indent=1))  # written last: marks the run complete
    return TrainedModel(cfg, folder / "weights" / "best.pt", folder / "results.csv", seconds)


def _qat_folder(source: TrainedModel, epochs: int, route: str, seed: int, zoo: Path, overrides: dict) -> Path:
    """Return the cache folder of a QAT fine-tune: keyed by the float run's folder (itself a content key), the QAT
    epochs, route, seed and overrides, the recipe and the library versions (ModelOpt's included)."""
    import modelopt

    parts = {"source": source.best.parents[1].name, "epochs": epochs, "route": route, "seed": seed, "recipe": RECIPE,
             "overrides": overrides, "versions": [torch.__version__, ultralytics.__version__,
                                                  yolov8_efficientrep.__version__, modelopt.__version__]}
    return zoo / f"qat-{route}-e{epochs}-s{seed}-{_digest(parts)}"


def qat_trained(source: TrainedModel, epochs: int, route: str, seed: int = 0, zoo: Path = DEFAULT_ZOO,
                log: Callable[[str], object] = print, **overrides) -> TrainedModel:
    """Return ``source``'s ``best.pt`` fine-tuned quantization-aware (``quantize=8``) for ``epochs``; train if needed.

    Ultralytics' QAT (NVIDIA ModelOpt) with the float run's recipe (and any training ``overrides``), under
    ``YOLOV8_EFFICIENTREP_QAT=route``: ``fused`` trains the re-parameterized network, ``ultralytics`` Ultralytics' own
    unfused QAT (the variable is restored after).
    """
    from ultralytics import YOLO

    from yolov8_efficientrep.fused_qat import QAT_ROUTE_VARIABLE, QAT_ROUTES

    if route not in QAT_ROUTES:
        raise ValueError(f"QAT route {route!r}: use one of {', '.join(QAT_ROUTES)}")
    folder = _qat_folder(source, epochs, route, seed, zoo, overrides)
    record = folder / "qat.json"
    if not record.is_file():
        log(f"QAT ({route}) of {source.best} for {epochs} epochs (seed {seed}{', ' if overrides else ''}"
            f"{', '.join(f'{k}={v}' for k, v in overrides.items())}) into {folder}")
        with environment(QAT_ROUTE_VARIABLE, route):
            seconds = _fit(YOLO(str(source.best)), folder, data=str(dataset(zoo)), epochs=epochs, seed=seed,
                           quantize=8, **{**RECIPE, **overrides})
        record.write_text(json.dumps({"cfg": source.cfg, "source": str(source.best), "epochs": epochs, "route": route,
                                      "seed": seed, "overrides": overrides, "epoch_seconds": seconds},
                                     indent=1))  # written last: marks the run complete
    saved = json.loads(record.read_text())
    return TrainedModel(source.cfg, folder / "weights" / "best.pt", folder / "results.csv", saved["epoch_seconds"])
