"""``python -m yolov8_efficientrep demo``: EfficientRep end to end on the generated shapes data set, offline.

Trains EfficientRep on the data set that ``cfg/shapes.yaml`` generates, validates the trained network unfused and
fused, exports ONNX (the plugin's export callback fuses and checks), compares ONNX Runtime with PyTorch, predicts on a
validation image with the ONNX file and prints a summary.

Ultralytics reads its offline switches and its config dir when it is imported, and ``python -m yolov8_efficientrep``
has imported it before any command runs. ``run`` therefore does the work in a child interpreter
(``python -m yolov8_efficientrep.demo``) started with ``YOLO_OFFLINE=true``, ``YOLO_AUTOINSTALL=false`` and a
temporary ``YOLO_CONFIG_DIR`` whose settings put the generated data set under the output folder: the run never waits
on the network and the user's own Ultralytics settings file is never touched.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
import torch

from .configs import CFG_DIR
from .evaluation import check_onnx, sample_val_image, validate_unfused_and_fused
from .fusion import fused_rep_blocks
from .limits import check_imgsz

DEFAULT_OUT = Path("runs") / "efficientrep-demo"
DEFAULT_DATA = CFG_DIR / "shapes.yaml"
REQUIREMENTS = {"onnx": "onnx", "onnxruntime": "onnxruntime", "onnxslim": "onnxslim"}  # import name: PyPI name
SUMMARY = "summary.json"
BATCH = 8
# At 10 epochs in 5 minutes on 2 CPU cores, 1000 epochs already take over 8 hours: a larger number is a typo.
MAX_EPOCHS = 1000


def output_dir(out: str | Path | None) -> Path:
    """Return the demo's output folder: ``out``, which must be new or empty, or a new ``runs/efficientrep-demo<N>``.

    Raises:
        FileExistsError: ``out`` is a file or a folder with files in it (they are never overwritten).
        NotADirectoryError: A folder on the way to ``out`` is a file.
    """
    if out is None:
        from ultralytics.utils.files import increment_path

        return increment_path(DEFAULT_OUT.resolve(), sep="")  # like Ultralytics' runs/detect/train2
    out = Path(out).resolve()
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise FileExistsError(f"--out {out} exists and is not an empty folder; choose another --out or remove it")
    blocking = next((parent for parent in out.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise NotADirectoryError(f"--out {out}: {blocking} is a file, not a folder; choose another --out")
    return out


def check_requirements() -> None:
    """Raise ``ModuleNotFoundError`` naming what to install if ONNX export, simplification or ONNX Runtime is missing.

    Offline, Ultralytics cannot auto-install them in the middle of the run.
    """
    missing = [pypi for name, pypi in REQUIREMENTS.items() if importlib.util.find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(f"the demo exports and runs ONNX and needs {', '.join(missing)}: "
                                  f"pip install 'yolov8-efficientrep[demo]' (or pip install {' '.join(missing)})")


def check_device(device: str) -> None:
    """Raise a one-line ``ValueError`` if ``device`` is not a device list, or names GPUs or MPS that torch does not see.

    Ultralytics would only find out in the child process, after start-up, with a multi-line traceback. Device names
    without digits (``cpu``, ``cuda``, ...) are left for Ultralytics to judge.
    """
    spec = device.lower().replace("cuda:", "").replace(" ", "").strip("[]()")
    if spec in {"mps", "mps:0"}:
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {device}: torch {torch.__version__} sees no Apple MPS device; use --device cpu")
        return
    if re.fullmatch(r"[a-z]*", spec):
        return
    if not re.fullmatch(r"-?\d+(,-?\d+)*", spec):
        raise ValueError(f"--device {device}: not a device; use cpu, mps, a GPU index such as 0, or GPU indices "
                         f"separated by single commas such as 0,1")
    indices = [int(index) for index in spec.split(",")]  # -1: an idle GPU, picked by Ultralytics
    if max(indices) >= torch.cuda.device_count() or not torch.cuda.device_count():
        count = torch.cuda.device_count()
        seen = f"only {count} CUDA GPU{'s' * (count != 1)} (0-{count - 1})" if count else "no CUDA GPU"
        raise ValueError(f"--device {device}: torch {torch.__version__} sees {seen} on this machine; use --device cpu"
                         f"{' or a GPU index it sees' if count else ''}")


@contextlib.contextmanager
def offline_config_dir(datasets_dir: Path):
    """Yield a temporary ``YOLO_CONFIG_DIR`` whose settings put data sets in ``datasets_dir``; removed afterwards.

    The settings file is written here, in the parent, because Ultralytics reads ``datasets_dir`` once at import. Its
    place inside the config dir (a sub-folder in some versions) is asked of Ultralytics' own ``get_user_config_dir``.
    """
    from ultralytics.utils import LOGGER, SETTINGS, SettingsManager, get_user_config_dir

    with tempfile.TemporaryDirectory(prefix="yolov8-efficientrep-demo-") as config:
        saved = os.environ.get("YOLO_CONFIG_DIR")
        os.environ["YOLO_CONFIG_DIR"] = config
        silent = logging.Filter("no record passes")  # its "Creating new Ultralytics Settings" notice is about a file
        LOGGER.addFilter(silent)  # the user never sees
        try:
            settings = SettingsManager(Path(get_user_config_dir()) / Path(SETTINGS.file).name)
        finally:
            LOGGER.removeFilter(silent)
            if saved is None:
                del os.environ["YOLO_CONFIG_DIR"]
            else:
                os.environ["YOLO_CONFIG_DIR"] = saved
        settings.update(datasets_dir=str(datasets_dir), sync=False)
        yield config


def run(epochs: int, imgsz: int, scale: str, device: str, out: str | Path | None = None,
        data: str | Path | None = None, traceback: bool = False) -> int:
    """Run the demo in a child interpreter with Ultralytics offline; return its exit status.

    Args:
        epochs (int): Training epochs.
        imgsz (int): Training, validation and export image size.
        scale (str): Model scale, one of n, s, m, l, x.
        device (str): Ultralytics device, e.g. ``cpu`` or ``0``.
        out (str | Path, optional): New or empty output folder; by default a new ``runs/efficientrep-demo<N>``.
        data (str | Path, optional): Data YAML; by default the generated shapes set of ``cfg/shapes.yaml``.
        traceback (bool): Let the child process show a failure's traceback instead of its one-line message.

    Raises:
        ValueError: ``epochs`` or ``imgsz`` is out of bounds, or ``device`` is malformed or names a GPU that torch
            does not see.
        FileExistsError: ``out`` holds files.
        FileNotFoundError: ``data`` does not exist.
        ModuleNotFoundError: ONNX or ONNX Runtime is not installed.
        OSError: ``out`` cannot be created.
    """
    from ultralytics.utils import SETTINGS

    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        raise ValueError(f"--epochs {epochs}: train from 1 to {MAX_EPOCHS} epochs")
    check_imgsz("--imgsz", imgsz)
    check_device(device)
    data = Path(data).resolve() if data else DEFAULT_DATA
    if not data.is_file():
        raise FileNotFoundError(f"--data {data}: no such data YAML")
    check_requirements()
    out = output_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"--out {out}: the folder cannot be created ({error.strerror or error}); choose another --out"
                      ) from error
    options = {"epochs": epochs, "imgsz": imgsz, "scale": scale, "device": device, "out": str(out), "data": str(data),
               "traceback": traceback}
    # the generated set goes with the demo's other files; a data YAML of yours finds its data where yolo finds it
    datasets_dir = out / "datasets" if data == DEFAULT_DATA else Path(SETTINGS["datasets_dir"])
    with offline_config_dir(datasets_dir) as config:
        env = {**os.environ, "YOLO_OFFLINE": "true", "YOLO_AUTOINSTALL": "false", "YOLO_CONFIG_DIR": config}
        return subprocess.run([sys.executable, "-m", __name__, json.dumps(options)], env=env).returncode


def demo(epochs: int, imgsz: int, scale: str, device: str, out: str, data: str) -> dict:
    """Train, validate unfused and fused, export ONNX, check it, predict; write and return the summary.

    Runs in the child interpreter (see ``run``), with Ultralytics offline.
    """
    from ultralytics import YOLO
    from ultralytics.utils import AUTOINSTALL, ONLINE, SETTINGS

    from .offline import seed_fonts

    seed_fonts()  # plotting finds "Arial" in the private config dir instead of downloading it
    ultralytics = {"online": ONLINE, "autoinstall": AUTOINSTALL, "settings": str(SETTINGS.file)}
    out = Path(out)
    model = YOLO(f"yolov8{scale}-efficientrep.yaml")
    # An optimizer step per batch of 8 (nbs=batch): Ultralytics' default accumulates gradients over 64 images, which
    # leaves a small data set few steps per epoch (measured in docs/demo.md, "Training recipe")
    model.train(data=data, epochs=epochs, imgsz=imgsz, device=device, batch=BATCH, nbs=BATCH, seed=0,
                deterministic=True, project=str(out), name="train", exist_ok=True)
    checkpoint, dataset = Path(model.trainer.best), model.trainer.data
    settings = {"data": data, "imgsz": imgsz, "device": device, "project": str(out), "name": "val", "exist_ok": True}
    scores = validate_unfused_and_fused(checkpoint, **settings)
    with contextlib.suppress(OSError):  # Ultralytics' validator makes its folder even when it saves nothing there
        (out / "val").rmdir()
    onnx_file = Path(YOLO(checkpoint).export(format="onnx", imgsz=imgsz, device=device))  # fused, checked
    max_abs, max_rel = check_onnx(onnx_file, checkpoint, imgsz)
    image, objects = sample_val_image(dataset["val"])
    result = YOLO(onnx_file, task="detect").predict(image, imgsz=imgsz, device=device, save=True, project=str(out),
                                                    name="predict", exist_ok=True)[0]
    summary = {
        "model": f"yolov8{scale}-efficientrep", "epochs": epochs, "imgsz": imgsz, "device": device, "data": data,
        "ultralytics": ultralytics,
        "map50_95": {"unfused": scores.unfused.map50_95, "fused": scores.fused.map50_95},
        "map50": {"unfused": scores.unfused.map50, "fused": scores.fused.map50},
        "parameters": {name: sum(p.numel() for p in network.parameters())
                       for name, network in (("unfused", scores.unfused_model), ("fused", scores.fused_model))},
        "fused_rep_blocks": fused_rep_blocks(scores.fused_model)[0],
        "onnx_vs_pytorch": {"max_abs": max_abs, "max_rel": max_rel},
        "prediction": {"image": str(image), "labelled": objects, "detections": len(result.boxes)},
        "files": {"training run": str(checkpoint.parent.parent), "checkpoint": str(checkpoint),
                  "ONNX": str(onnx_file), "prediction": str(next((out / "predict").glob(f"{image.stem}.*"))),
                  "data set": str(dataset["path"])},
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary


def format_summary(summary: dict) -> str:
    """Return the summary as the few lines the demo prints."""
    maps, map50, diff = summary["map50_95"], summary["map50"], summary["onnx_vs_pytorch"]
    params, network = summary["parameters"], "offline" if not summary["ultralytics"]["online"] else "ONLINE"
    predicted = summary["prediction"]
    lines = [
        f"{summary['model']}: {summary['epochs']} epoch{'s' * (summary['epochs'] != 1)} at imgsz {summary['imgsz']} "
        f"on {summary['device']}, Ultralytics {network} with temporary settings (removed after the run)",
        f"  mAP50-95  unfused {maps['unfused']:.3f}  fused {maps['fused']:.3f}  "
        f"(|difference| {abs(maps['unfused'] - maps['fused']):.1e})",
        f"  mAP50     unfused {map50['unfused']:.3f}  fused {map50['fused']:.3f}",
        f"  fused model: {params['fused']:,} parameters (unfused {params['unfused']:,}), "
        f"{summary['fused_rep_blocks']} Rep blocks re-parameterized into single 3x3 convolutions",
        f"  ONNX Runtime vs PyTorch (unfused): max |diff| = {diff['max_abs']:.2e} ({diff['max_rel']:.2e} relative)",
        f"  ONNX prediction on {Path(predicted['image']).name}: {predicted['detections']} "
        f"box{'es' * (predicted['detections'] != 1)} at confidence >= 0.25 ({predicted['labelled']} objects labelled)",
        "Files:",
        *(f"  {name:<13} {path}" for name, path in summary["files"].items()),
    ]
    return "\n".join(lines)


def child(options: dict) -> int:
    """Run ``demo`` with ``run``'s options; print the summary and return 0, or report a failure in one line, return 1.

    With ``options["traceback"]`` a failure raises, so that Python shows its traceback.
    """
    from .messages import describe

    traceback = options.pop("traceback", False)
    try:
        print(f"\n{format_summary(demo(**options))}")
    except Exception as error:
        if traceback:
            raise
        print(describe(error, "demo"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # the child interpreter started by run()
    sys.exit(child(json.loads(sys.argv[1])))
