"""Ultralytics 8.4's 22 export formats, as the deployment benchmark tries them: what each needs and offers.

One row per format of ``ultralytics.engine.exporter.export_formats()`` (PyTorch itself excluded): the packages that
Ultralytics' exporter asks for on Linux x86 with Python 3.11 (installed beforehand: ``YOLO_AUTOINSTALL=false`` makes
the exporter refuse to pip-install in the middle of an export), the modules whose presence means they are installed,
whether Ultralytics offers INT8 for it, and, for formats that cannot run here, the one-line reason.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    """One export format.

    Attributes:
        arg (str): Ultralytics' ``format=`` argument.
        title (str): Ultralytics' name of the format.
        install (str): What to ``pip install`` for it (beyond this package's ``[export]`` extra), as Ultralytics asks.
        modules (tuple): Modules that must import for the export to start.
        int8 (bool): Ultralytics' exporter offers ``quantize=8`` for it.
        blocked (str): Why it cannot be exported or run on this machine whatever is installed ("" if it can be tried).
        venv (str): The separate environment it needs, if its packages conflict with the others' (e.g. TensorFlow's
            protobuf and numpy pins).
        tools (tuple): Executables the export runs (found on PATH).
    """

    arg: str
    title: str
    install: str
    modules: tuple[str, ...] = ()
    int8: bool = False
    blocked: str = ""
    venv: str = ""
    tools: tuple[str, ...] = ()  # executables the export runs, looked up on PATH

    def missing(self) -> list[str]:
        """Return the modules of ``modules`` that do not import in this interpreter and the ``tools`` not on PATH."""
        return ([name for name in self.modules if importlib.util.find_spec(name) is None]
                + [tool for tool in self.tools if shutil.which(tool) is None])


FORMATS = (
    Format("onnx", "ONNX", "onnx onnxslim onnxruntime ([export])", ("onnx", "onnxslim", "onnxruntime"), int8=True),
    Format("torchscript", "TorchScript", "nothing"),
    Format("openvino", "OpenVINO", "openvino ([export]; INT8: nncf, [int8])", ("openvino",), int8=True),
    Format("ncnn", "NCNN", "ncnn pnnx==20260526 ([formats])", ("ncnn", "pnnx")),
    Format("mnn", "MNN", "MNN ([formats]) and pip install --no-deps aliyun-log-python-sdk (MNN's converter imports it)",
           ("MNN", "aliyun"), int8=True),
    Format("litert", "LiteRT", "litert-torch ai-edge-litert ([formats])", ("litert_torch", "ai_edge_litert"),
           int8=True),
    Format("executorch", "ExecuTorch", "executorch, numpy<=2.3.5 ([formats])", ("executorch",)),
    Format("coreml", "CoreML", "coremltools>=9.0, numpy<=2.3.5", ("coremltools",), int8=True,
           blocked="Core ML runs only on Apple's OSes (coremltools exports on Linux but cannot predict there)"),
    Format("coreai", "Core AI", "coreai-torch", ("coreai_torch",)),
    Format("paddle", "PaddlePaddle", "paddlepaddle>=3.0,<3.3 x2paddle (own venv)", ("paddle", "x2paddle"),
           venv="paddle"),
    Format("saved_model", "TensorFlow SavedModel",
           "tensorflow<=2.19 onnx2tf<1.29 tf_keras sng4onnx onnx_graphsurgeon ai-edge-litert onnx<1.19 (own venv)",
           ("tensorflow", "onnx2tf"), int8=True, venv="tf"),
    Format("pb", "TensorFlow GraphDef", "as TensorFlow SavedModel (own venv)", ("tensorflow", "onnx2tf"), venv="tf"),
    Format("edgetpu", "TensorFlow Edge TPU", "as SavedModel, plus Coral's edgetpu_compiler (Debian package from "
           "Coral's apt repository)", ("tensorflow", "onnx2tf"), int8=True, venv="tf",
           blocked="edgetpu_compiler comes from Coral's own apt repository, on neither PyPI nor Debian; the compiled "
           "model runs only on an Edge TPU"),
    Format("rknn", "RKNN", "rknn-toolkit2>=2.3.2,<2.5 with torch 2.4 (Ultralytics' isolated environment)",
           ("rknn",), int8=True, venv="rknn"),
    Format("imx", "IMX", "model-compression-toolkit edge-mdt-cl edge-mdt-tpc imx500-converter[pt], torch<2.12 "
           "and Java>=17 (own venv)", ("model_compression_toolkit",), int8=True, venv="imx"),
    Format("engine", "TensorRT", "tensorrt-cu13 (NVIDIA GPU)", ("tensorrt",), int8=True,
           blocked="needs an NVIDIA GPU: Ultralytics refuses format=engine on a CPU"),
    Format("axelera", "Axelera AI", "axelera-devkit axelera-rt (Axelera's own package index)", ("axelera",), int8=True,
           blocked="Axelera's SDK is on Axelera's own package index, not on PyPI; runs on a Metis NPU"),
    Format("deepx", "DEEPX", "dx_com (torch<2.12)", ("dx_com",), int8=True,
           blocked="the compiled model runs only on a DEEPX NPU (its runtime, dx_engine, is not on PyPI)"),
    Format("qnn", "Qualcomm QNN", "onnxruntime-qnn", ("onnxruntime_qnn",),
           blocked="the context binary runs only on a Snapdragon Hexagon NPU"),
    Format("hailo", "Hailo", "Hailo Dataflow Compiler (hailo_sdk_client, from Hailo's developer zone)",
           ("hailo_sdk_client",), int8=True,
           blocked="the Hailo Dataflow Compiler is a download from Hailo's developer zone, not on PyPI"),
    Format("ascend", "Huawei Ascend", "Huawei CANN toolkit (atc)", (), tools=("atc",),
           blocked="needs Huawei's CANN toolkit (atc), not on PyPI; runs on an Ascend NPU"),
    Format("xilinx", "AMD Xilinx", "amd-quark<0.14 plus AMD's Vitis AI compiler", ("quark",), int8=True,
           blocked="the Vitis AI compiler for Versal AI Edge Gen 2 NPUs is AMD's download, not on PyPI"),
)
BY_ARG = {fmt.arg: fmt for fmt in FORMATS}
