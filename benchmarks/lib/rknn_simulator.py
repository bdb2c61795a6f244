"""RKNN on this CPU: rknn-toolkit2's simulator runs the network that ``format=rknn`` compiles for a Rockchip NPU.

Ultralytics' RKNN backend needs the board (rknn-toolkit-lite2 on the NPU), and the toolkit's simulator cannot load a
``.rknn`` file: it runs a model built in the same session. So this module builds what Ultralytics' exporter builds,
from the same ONNX file with the same ``config`` (pixels 0-255 in, the ``/255`` folded into the graph, the chip
``rk3588``), in FP16 or INT8, and runs it in the simulator. Its outputs are the NPU's arithmetic, simulated; its speed
says nothing about the NPU's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

TARGET = "rk3588"  # Ultralytics' default name= for format=rknn


def simulator(onnx_file: Path, dataset: Path | None = None,
              target: str = TARGET) -> Callable[[torch.Tensor], np.ndarray]:
    """Build ``onnx_file`` as Ultralytics' RKNN export does (INT8 when ``dataset``, an image-list file, is given,
    else FP16) and start the simulator; return a call: one image batch in [0, 1] (NCHW) -> the first output."""
    from rknn.api import RKNN

    rknn = RKNN(verbose=False)
    steps = (
        ("config", lambda: rknn.config(mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]],
                                       target_platform=target)),
        ("load_onnx", lambda: rknn.load_onnx(model=str(onnx_file))),
        ("build", lambda: rknn.build(do_quantization=dataset is not None,
                                     **({"dataset": str(dataset)} if dataset else {}))),
        ("init_runtime", lambda: rknn.init_runtime()),  # no target: the toolkit's simulator on this CPU
    )
    for name, step in steps:
        if step() != 0:
            raise RuntimeError(f"rknn-toolkit2 {name} failed for {onnx_file}")

    def run(batch: torch.Tensor) -> np.ndarray:
        pixels = (batch[0].permute(1, 2, 0).numpy() * 255).astype(np.float32)[None]  # NHWC, 0-255
        return np.asarray(rknn.inference(inputs=[pixels], data_format="nhwc")[0])

    return run


def image_list(images: list[Path], folder: Path) -> Path:
    """Write the calibration image-list file rknn-toolkit2 reads (one absolute path a line)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dataset.txt"
    path.write_text("".join(f"{Path(p).resolve()}\n" for p in images))
    return path
