"""The one model line-up: every model the benchmarks run, its names, how it is built, and what each benchmark picks.

A model is named by its YAML stem (``--models`` takes stems). A latency benchmark runs an ``Entry``: a model in one
form, deployed (after Ultralytics' ``model.fuse()``: Conv+BN folded and each Rep block one 3x3 conv; Ultralytics' own
models run fused too, as Ultralytics deploys them) or, for a model with Rep blocks, unfused (its three-branch training
form). The ablation's variants, most of them YAMLs of ``benchmarks/ablation/``, are listed here too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from ultralytics import YOLO

ABLATION_DIR = Path(__file__).resolve().parents[1] / "ablation"


@dataclass(frozen=True)
class Model:
    """One model of the line-up.

    Attributes:
        stem (str): The YAML's stem, a bare name Ultralytics or the plugin resolves (``yolov8n-efficientrep``).
        title (str): Its name in the training reports (``EfficientRep-n``).
        rep (bool): It has Rep blocks, so the latency reports name its form (fused or unfused).
        note (str): Said in brackets after its name in the latency reports.
    """

    stem: str
    title: str
    rep: bool = False
    note: str = ""


MODELS = {model.stem: model for model in (
    Model("yolov8n", "YOLOv8n"),
    Model("yolov8s", "YOLOv8s"),
    Model("yolo11n", "YOLO11n"),
    Model("yolo11s", "YOLO11s"),
    Model("yolo26n", "YOLO26n"),
    Model("yolo26s", "YOLO26s"),
    Model("yolov6n", "YOLOv6n", note="Ultralytics, plain"),
    Model("yolov8n-efficientrep", "EfficientRep-n", rep=True),
    Model("yolov8n-efficientrep-relu", "EfficientRep-n, ReLU", rep=True, note="ReLU neck and head"),
    Model("yolov8n-reppan", "EfficientRep-n + Rep-PAN", rep=True, note="Rep-PAN neck"),
    Model("yolov8s-efficientrep", "EfficientRep-s", rep=True),
    Model("yolov8n-qarepvgg", "QARepVGG-n", rep=True),
    Model("yolov8s-qarepvgg", "QARepVGG-s", rep=True),
    Model("yolov6n-repbifpan", "YOLOv6-N 3.0", rep=True, note="YOLOv6-N 3.0"),
    Model("yolov6s-repbifpan", "YOLOv6-S 3.0", rep=True, note="YOLOv6-S 3.0"),
)}
BASELINE = "yolov8n"  # the latency reports' reference


@dataclass(frozen=True)
class Entry:
    """One model in one form: a display name, the YAML it is built from, and whether it runs fused."""

    name: str
    cfg: str
    fused: bool

    @property
    def stem(self) -> str:
        """The YAML's name without suffix, as ``--models`` takes it."""
        return self.cfg.rsplit(".", 1)[0]


def pick(*specs: str) -> tuple[Entry, ...]:
    """Return the entries ``specs`` name, in order: a stem for the deployed form, ``"<stem> unfused"`` for the other.

    The name is the stem, with the form for a model with Rep blocks and the model's note in brackets, e.g.
    ``yolov6n-repbifpan fused (YOLOv6-N 3.0)``.
    """
    entries = []
    for spec in specs:
        stem, _, form = spec.partition(" ")
        model, fused = MODELS[stem], form != "unfused"
        if form not in ("", "unfused") or not (fused or model.rep):
            raise ValueError(f"{spec!r}: a stem, or a stem of a model with Rep blocks and ' unfused'")
        name = stem
        if model.rep:
            name += " fused" if fused else " unfused"
        if model.note:
            name += f" ({model.note})"
        entries.append(Entry(name, f"{stem}.yaml", fused))
    return tuple(entries)


# What each latency benchmark runs, in report order.
CPU = pick("yolov8n", "yolov6n", "yolov8n-efficientrep unfused", "yolov8n-efficientrep", "yolov8s",
           "yolov8s-efficientrep unfused", "yolov8s-efficientrep")
GPU = pick("yolov8n", "yolo11n", "yolo26n", "yolov6n", "yolov8n-efficientrep", "yolov8n-efficientrep unfused",
           "yolov8n-qarepvgg", "yolov6n-repbifpan", "yolov8s", "yolov8s-efficientrep", "yolov6s-repbifpan")
INT8 = pick("yolov8n", "yolo11n", "yolo26n", "yolov8n-efficientrep", "yolov8n-qarepvgg", "yolov8n-efficientrep-relu",
            "yolov8n-reppan", "yolov8s", "yolo11s", "yolo26s", "yolov8s-efficientrep", "yolov8s-qarepvgg")
INT8_DEFAULT = [entry.stem for entry in INT8[:5]]  # the n scale; INT8 accuracy trains the same models
QAT = pick("yolov8n-efficientrep", "yolov8n-qarepvgg", "yolov8n-efficientrep-relu", "yolov8n-reppan")  # Rep blocks
QAT_DEFAULT = [entry.stem for entry in QAT[:2]]  # EfficientRep-n and QARepVGG-n
SIDE_BY_SIDE = ("yolov8n", "yolov8n-efficientrep", "yolov8n-qarepvgg", "yolov6n-repbifpan")  # the first two: default


def select(names: list[str] | None, lineup: tuple[Entry, ...]) -> tuple[Entry, ...]:
    """Return the ``lineup`` entries whose YAML stem (e.g. ``yolov8n-efficientrep``) is in ``names``; all if None."""
    if not names:
        return lineup
    stems = {entry.stem for entry in lineup}
    unknown = sorted(set(names) - stems)
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(sorted(stems))}")
    return tuple(entry for entry in lineup if entry.stem in names)


def seeded_yolo(cfg: str) -> YOLO:
    """Build ``cfg`` with the benchmarks' seeded random weights (latency does not depend on their values)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return YOLO(cfg, verbose=False)


def build(entry: Entry) -> nn.Module:
    """Build the entry's detection model from its YAML, in eval mode, in its form.

    The weights are random (latency does not depend on them) but seeded: the fused and unfused entries of one YAML
    are the same network, so their outputs can be compared.
    """
    model = seeded_yolo(entry.cfg).model.eval()
    return copy.deepcopy(model).fuse(verbose=False) if entry.fused else model


@dataclass(frozen=True)
class AblationVariant:
    """One line of the ablation: a model YAML and what it changes."""

    name: str
    cfg: str
    change: str


ABLATION = (
    AblationVariant("YOLOv8n", "yolov8n.yaml", "Ultralytics' model, the reference"),
    AblationVariant("EfficientRep-n v0.1", str(ABLATION_DIR / "yolov8n-efficientrep-v01.yaml"),
                    "as version 0.1 shipped yolov8-efficientrep: ReLU everywhere (backbone, SPPF, YOLOv8 neck and "
                    "head)"),
    AblationVariant("EfficientRep-n, SiLU", str(ABLATION_DIR / "yolov8n-efficientrep-silu.yaml"),
                    "v0.1 with its activation line deleted: SiLU everywhere"),
    AblationVariant("EfficientRep-n, ReLU backbone + SiLU head", "yolov8n-efficientrep.yaml",
                    "ReLU in the Rep rows and SimSPPF, SiLU in YOLOv8's neck and head (YOLOv6's split): the shipped "
                    "default"),
    AblationVariant("EfficientRep-n layers, plain", str(ABLATION_DIR / "yolov8n-efficientrep-plain.yaml"),
                    "each Rep block trained as one Conv+BN+ReLU: the fused network without the training branches"),
    AblationVariant("EfficientRep-n, BottleRep", str(ABLATION_DIR / "yolov8n-efficientrep-bottlerep.yaml"),
                    "RepBlock stages of BottleRep units: a learnable-weight shortcut around every two RepVGG layers"),
    AblationVariant("EfficientRep-n, CSP stages", str(ABLATION_DIR / "yolov8n-efficientrep-csp.yaml"),
                    "YOLOv6's CSPBep stages (BepC3, e=1/2, BottleRep units on half the channels) in place of RepBlock"),
    AblationVariant("EfficientRep-n, CSP stages, SiLU", str(ABLATION_DIR / "yolov8n-efficientrep-csp-silu.yaml"),
                    "the CSP-stage variant with SiLU everywhere"),
    AblationVariant("QARepVGG-n", "yolov8n-qarepvgg.yaml", "shipped yolov8n-qarepvgg (QARepVGG blocks, Rep-PAN neck)"),
    AblationVariant("YOLO11n", "yolo11n.yaml", "Ultralytics' model"),
    AblationVariant("YOLO11n-EfficientRep", "yolo11n-efficientrep.yaml",
                    "shipped: EfficientRep backbone (ReLU Rep rows), YOLO11's SPPF, C2PSA, neck and head"),
    AblationVariant("YOLO11n-EfficientRep, SiLU", str(ABLATION_DIR / "yolo11n-efficientrep-silu.yaml"),
                    "the same with SiLU in the Rep rows"),
    AblationVariant("YOLO26n", "yolo26n.yaml", "Ultralytics' model (end-to-end head)"),
    AblationVariant("YOLO26n-EfficientRep", "yolo26n-efficientrep.yaml",
                    "shipped: EfficientRep backbone (ReLU Rep rows), YOLO26's neck and end-to-end head"),
    AblationVariant("YOLO26n-EfficientRep, SiLU", str(ABLATION_DIR / "yolo26n-efficientrep-silu.yaml"),
                    "the same with SiLU in the Rep rows"),
)
ABLATION_LONG = ("YOLOv8n", "EfficientRep-n v0.1")  # also trained for the ablation's --long-epochs
