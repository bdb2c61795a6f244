"""Build TensorRT engines of a plugin model on a GPU machine and check them against the unfused PyTorch model.

Usage: python benchmarks/tensorrt_check.py [CHECKPOINT.pt] [--imgsz 640] [--workdir DIR]

CI has no GPU, so this is a script, not a test. It needs a CUDA GPU, ``tensorrt`` (``pip install tensorrt``),
``onnxruntime`` and this package installed (``pip install -e .``: its start-up hook lets the plain ``yolo`` CLI load
the plugin); it never downloads anything. Without a checkpoint it first trains yolov8n-efficientrep for one epoch
on the generated shapes data. For each precision (FP32, FP16) it runs ``yolo export format=engine`` in a fresh process
(the plain CLI, so the plugin's export check runs and logs "fused N blocks, max |diff| = ..."), checks that the ONNX
graph TensorRT consumed has no BatchNormalization and no branch Add, runs that ONNX in ONNX Runtime and the engine in
TensorRT (through Ultralytics' AutoBackend), and compares both with the unfused model on the GPU. TensorRT's FP32
builds may use TF32 on Ampere and later GPUs, hence their looser bound. Exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# lib first: importing it makes Ultralytics offline (lib/offline.py); the yolo commands run here inherit that
from lib.timing import log

import numpy as np
import torch
from yolov8_efficientrep.checkpoints import load_checkpoint
from yolov8_efficientrep.fusion import sample_image
from yolov8_efficientrep.graphs import onnx_unfused_nodes
from yolov8_efficientrep.precision import full_fp32

BOUNDS = {"onnxruntime": 1e-4, "fp32": 1e-2, "fp16": 5e-2}  # see relative_difference


def relative_difference(output: np.ndarray, reference: np.ndarray) -> float:
    """Return the larger of the boxes' max |diff| relative to the largest coordinate and the scores' max |diff|."""
    boxes = np.abs(output[:, :4] - reference[:, :4]).max() / np.abs(reference[:, :4]).max()
    return float(max(boxes, np.abs(output[:, 4:] - reference[:, 4:]).max()))


def train_tiny(workdir: Path) -> Path:
    """Train yolov8n-efficientrep for one epoch on the generated shapes data; return best.pt."""
    from ultralytics import YOLO

    from yolov8_efficientrep.shapes import make_shapes_dataset

    log(f"no checkpoint given: training yolov8n-efficientrep for one epoch in {workdir}")
    data = make_shapes_dataset(workdir / "shapes", train=64, val=16, imgsz=128)
    YOLO("yolov8n-efficientrep.yaml").train(data=str(data), epochs=1, imgsz=128, batch=16, device=0, plots=False,
                                            project=str(workdir), name="train", exist_ok=True)
    return workdir / "train" / "weights" / "best.pt"


def export_engine(checkpoint: Path, imgsz: int, half: bool) -> tuple[Path, str]:
    """Run ``yolo export format=engine`` in a fresh process; return the engine path and the log."""
    yolo = Path(sys.executable).with_name("yolo")
    command = [str(yolo) if yolo.exists() else "yolo", "export", f"model={checkpoint}", "format=engine",
               f"imgsz={imgsz}", "device=0", *(["quantize=16"] if half else [])]
    result = subprocess.run(command, capture_output=True, text=True)
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{log[-4000:]}")
    return checkpoint.with_suffix(".engine"), log


def main() -> int:
    """Build and check the engines; return the exit status (1 if any check failed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="a trained plugin .pt (default: train a tiny one)")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--workdir", default=None, help="where to train and export (default: a temporary folder)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("tensorrt_check: needs a CUDA GPU")
    import onnxruntime
    import tensorrt
    from ultralytics.nn.autobackend import AutoBackend

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tensorrt-check-"))
    source = Path(args.checkpoint) if args.checkpoint else train_tiny(workdir)
    checkpoint = workdir / source.name
    if checkpoint.resolve() != source.resolve():
        shutil.copy(source, checkpoint)  # exports are written next to the model: keep them out of the user's folder
    device = torch.device("cuda:0")
    model, _ = load_checkpoint(checkpoint)
    image = sample_image(args.imgsz, args.imgsz).to(device)
    with torch.no_grad(), full_fp32([device]):  # an exact float32 reference; TF32 settings restored after
        reference = model.to(device)(image)[0].cpu().numpy()
    print(f"TensorRT {tensorrt.__version__}, {torch.cuda.get_device_name(0)}, {checkpoint}, imgsz {args.imgsz}")

    failures = 0
    for precision in ("fp32", "fp16"):
        log(f"[{precision}] yolo export format=engine in a fresh process")
        engine, export_log = export_engine(checkpoint, args.imgsz, half=precision == "fp16")
        fused_line = next((line for line in export_log.splitlines() if "fused" in line and "max |diff|" in line),
                          None)
        print(f"[{precision}] export check: {fused_line or 'MISSING'}")
        onnx_file = engine.with_suffix(".onnx")  # the graph TensorRT built the engine from
        leftovers = onnx_unfused_nodes(onnx_file)
        session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
        onnx_output = session.run(None, {session.get_inputs()[0].name: image.cpu().numpy()})[0]
        backend = AutoBackend(str(engine), device=device, verbose=False)  # casts the input to the engine's dtype
        engine_output = backend(image)
        engine_output = engine_output[0] if isinstance(engine_output, (list, tuple)) else engine_output
        results = {
            "onnxruntime": relative_difference(onnx_output, reference),
            precision: relative_difference(engine_output.float().cpu().numpy(), reference),
        }
        ok = fused_line is not None and not leftovers and all(v < BOUNDS[k] for k, v in results.items())
        failures += not ok
        print(f"[{precision}] ONNX leftovers: {leftovers or 'none'}; "
              + "; ".join(f"{k} vs unfused PyTorch: {v:.2e} (bound {BOUNDS[k]:.0e})" for k, v in results.items())
              + f"; {'OK' if ok else 'FAILED'}")
        engine.rename(engine.with_name(f"{engine.stem}-{precision}.engine"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
