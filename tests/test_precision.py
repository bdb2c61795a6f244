"""The fusion check runs in full float32 whatever TF32 / BF16 settings the user made, and gives them back unchanged.

The settings are torch's process-wide flags, which exist (and are read and written) without a GPU, so what the check
does to them is tested on every machine. On a machine with CUDA the last tests export a trained checkpoint with TF32
left on, as PyTorch's default has it, which made the fusion check fail before it switched TF32 off (2.3e-04 relative
on an H200, tolerance 1e-04).
"""

import copy
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from ultralytics import YOLO

from yolov8_efficientrep import FusionCheckError, fuse_model, precision
from yolov8_efficientrep.checkpoints import load_checkpoint
from yolov8_efficientrep.fusion import TOLERANCE, check_fusion, rep_blocks, sample_image
from yolov8_efficientrep.precision import full_fp32

BACKENDS = {"generic": torch.backends, "cudnn": torch.backends.cudnn, "mkldnn": torch.backends.mkldnn}
OPERATORS = ("cudnn.conv", "cudnn.rnn", "cuda.matmul", "mkldnn.conv", "mkldnn.matmul", "mkldnn.rnn")
LEGACY = {"cudnn.allow_tf32": lambda: torch.backends.cudnn.allow_tf32,
          "cuda.matmul.allow_tf32": lambda: torch.backends.cuda.matmul.allow_tf32,
          "float32_matmul_precision": torch.get_float32_matmul_precision}
needs_per_operator = pytest.mark.skipif(not precision.PER_OPERATOR, reason="torch < 2.9 has no per-operator settings")


def operator(path: str):
    """Return the torch.backends object holding a per-operator setting."""
    found = torch.backends
    for name in path.split("."):
        found = getattr(found, name)
    return found


def legacy(read) -> object:
    """A legacy flag's value, or 'refused' where torch refuses to read it (it disagrees with per-operator settings)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read()
    except RuntimeError:
        return "refused"


def settings() -> dict[str, object]:
    """Every precision setting torch reports: per-backend and per-operator values, and the legacy flags."""
    state = {name: legacy(read) for name, read in LEGACY.items()}
    if precision.PER_OPERATOR:
        state.update({name: backend.fp32_precision for name, backend in BACKENDS.items()})
        state.update({path: operator(path).fp32_precision for path in OPERATORS})
    return state


def set_defaults() -> None:
    """Put every setting back to what a fresh torch process has."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if precision.PER_OPERATOR:
            torch.backends.fp32_precision = "none"
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("highest")
        if precision.PER_OPERATOR:
            for path in ("cuda.matmul", "mkldnn.conv", "mkldnn.matmul", "mkldnn.rnn"):
                operator(path).fp32_precision = "none"


@pytest.fixture(autouse=True)
def restore_torch_defaults():
    """Each test may change torch's flags; the next test (in this worker) gets a fresh process's settings."""
    fresh = settings()
    yield
    set_defaults()
    assert settings() == fresh, "the test left torch's precision settings changed"


def per_operator(**values: str) -> None:
    """Set per-operator values through torch >= 2.9's API, e.g. ``per_operator(cudnn_conv="tf32")``."""
    for name, value in values.items():
        operator(name.replace("_", ".")).fp32_precision = value


def legacy_flags(cudnn: bool, matmul: str) -> None:
    """Set TF32 through the legacy flags, as most code written before torch 2.9 does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.set_float32_matmul_precision(matmul)


USER_SETTINGS = {  # name -> (how the user set it, what full_fp32 switches off on cuda + cpu)
    "torch defaults (TF32 convolutions on)": (lambda: None, {"TF32 cuDNN convolutions"}),
    "legacy flags, TF32 everywhere": (lambda: legacy_flags(True, "high"),
                                      {"TF32 cuDNN convolutions", "TF32 cuBLAS matmuls", "TF32 oneDNN matmuls"}),
    "legacy flags, medium matmuls": (lambda: legacy_flags(False, "medium"),
                                     {"TF32 cuBLAS matmuls", "BF16 oneDNN matmuls"}),
    "legacy flags, all off": (lambda: legacy_flags(False, "highest"), set()),
    "per-operator TF32 (legacy matmul flag refused)": (lambda: per_operator(cudnn_conv="tf32", cuda_matmul="tf32"),
                                                       {"TF32 cuDNN convolutions", "TF32 cuBLAS matmuls"}),
    "per-operator BF16 on CPU": (lambda: per_operator(mkldnn_conv="bf16", mkldnn_matmul="bf16"),
                                 {"TF32 cuDNN convolutions", "BF16 oneDNN convolutions", "BF16 oneDNN matmuls"}),
    "backend-wide TF32": (lambda: setattr(torch.backends, "fp32_precision", "tf32"),
                          {"TF32 cuDNN convolutions", "TF32 cuBLAS matmuls", "TF32 oneDNN convolutions",
                           "TF32 oneDNN matmuls"}),
}


@needs_per_operator
@pytest.mark.parametrize("user", USER_SETTINGS)
def test_full_fp32_switches_reduced_precision_off_and_restores_the_users_settings(user):
    apply, expected = USER_SETTINGS[user]
    apply()
    users = settings()
    with full_fp32(("cuda", "cpu")) as switched:
        assert set(switched) == expected
        inside = settings()
        assert all(operator(mode.operator).fp32_precision not in ("tf32", "bf16") for mode in precision.MODES)
        # a legacy flag torch could read before stays readable, and reads full precision: cuBLAS checks it
        for name, value in users.items():
            if name in LEGACY and value != "refused":
                assert inside[name] in (False, "highest"), (name, inside[name])
    assert settings() == users


@needs_per_operator
def test_full_fp32_restores_the_settings_when_the_check_raises():
    legacy_flags(True, "medium")
    users = settings()
    with pytest.raises(ZeroDivisionError), full_fp32(("cuda", "cpu")):
        assert operator("cudnn.conv").fp32_precision == "ieee"
        1 / 0
    assert settings() == users and users["cudnn.allow_tf32"] is True and users["float32_matmul_precision"] == "medium"


def test_full_fp32_touches_only_the_devices_it_is_given():
    legacy_flags(True, "high")
    users = settings()
    with full_fp32(["cpu"]) as switched:
        assert legacy(lambda: torch.backends.cudnn.allow_tf32) is True  # CUDA convolutions: the user's TF32
        assert all("cuDNN" not in s and "cuBLAS" not in s for s in switched)
    with full_fp32([torch.device("cuda", 0)]) as switched:
        assert set(switched) == {"TF32 cuDNN convolutions", "TF32 cuBLAS matmuls"}
        assert legacy(lambda: torch.backends.cudnn.allow_tf32) is False
    assert settings() == users
    legacy_flags(False, "highest")
    users = settings()
    with full_fp32(["cuda", "cpu"]) as switched:  # nothing on: nothing changed, nothing to report
        assert switched == () and settings() == users


def test_legacy_flags_alone_on_torch_before_2_9(monkeypatch):
    """Where torch has only the legacy flags (as before 2.9), those are switched and restored."""
    monkeypatch.setattr(precision, "PER_OPERATOR", False)
    legacy_flags(True, "medium")
    users = {name: legacy(read) for name, read in LEGACY.items()}
    with pytest.raises(KeyError), full_fp32(["cuda"]) as switched:
        assert set(switched) == {"TF32 cuDNN convolutions", "TF32 cuBLAS matmuls"}
        assert legacy(LEGACY["cudnn.allow_tf32"]) is False and legacy(LEGACY["float32_matmul_precision"]) == "highest"
        raise KeyError("the check failed")
    assert {name: legacy(read) for name, read in LEGACY.items()} == users


def test_check_fusion_reports_no_switch_on_cpu_and_leaves_cuda_settings_alone(randomize_bn):
    """On CPU the user's CUDA TF32 choice is not touched, and the check says it switched nothing."""
    model = randomize_bn(YOLO("yolov8n-efficientrep.yaml").model)
    users = settings()  # torch's defaults: TF32 cuDNN convolutions on
    result = check_fusion(fuse_model(model, check=False), model, sample_image(64, 64))
    assert result.switched == () and result.max_rel < TOLERANCE[torch.float32] / 20  # measured about 1e-6
    assert settings() == users


@needs_per_operator
def test_a_wrong_fusion_is_caught_by_a_wide_margin_in_full_fp32(randomize_bn):
    """With the user's BF16 oneDNN convolutions on: a right fusion passes by a wide margin, a 1% error in the first
    block (as small as a TF32 rounding: 3e-4 relative) is caught, and the user's BF16 choice is back afterwards."""
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the error's effect depends on the weights: the same ones on every run
        model = randomize_bn(YOLO("yolov8n-efficientrep.yaml").model)
    fused = fuse_model(model, check=False)
    per_operator(mkldnn_conv="bf16")
    users = settings()
    result = check_fusion(fused, model, sample_image(64, 64))
    assert result.switched == ("BF16 oneDNN convolutions",)
    assert result.max_rel < TOLERANCE[torch.float32] / 20  # measured about 1e-6, against 1e-4
    wrong = copy.deepcopy(fused)
    rep_blocks(wrong)[0].conv.weight.data *= 1.01
    with pytest.raises(FusionCheckError, match="differs from the unfused one"):
        check_fusion(wrong, model, sample_image(64, 64))
    assert settings() == users


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tf32_convolutions(state: dict[str, object]) -> bool:
    """True where the settings let cuDNN run float32 convolutions in TF32 (torch's default)."""
    return state.get("cudnn.conv", "tf32" if state["cudnn.allow_tf32"] is True else "none") == "tf32"


@needs_cuda
def test_check_fusion_on_cuda_with_tf32_left_on_passes(trained_checkpoint):
    """TF32 convolutions (torch's default on NVIDIA GPUs) made a trained model's fused and unfused outputs differ by
    about 1e-4 relative, the tolerance; the check now measures them in full FP32."""
    model, _ = load_checkpoint(trained_checkpoint)
    model = model.cuda()
    users = settings()
    result = check_fusion(fuse_model(model, check=False), model, sample_image(160, 160))
    print(f"fused vs unfused on {torch.cuda.get_device_name()}: {result.max_rel:.2e} relative, {result.switched}")
    assert result.max_rel < TOLERANCE[torch.float32] / 20 and settings() == users
    assert ("TF32 cuDNN convolutions" in result.switched) == tf32_convolutions(users)


@needs_cuda
def test_gpu_export_of_a_trained_checkpoint_passes_its_fusion_check(trained_checkpoint, tmp_path, ultralytics_log):
    checkpoint = tmp_path / "best.pt"  # the export is written next to it
    shutil.copy(trained_checkpoint, checkpoint)
    users = settings()
    exported = YOLO(checkpoint).export(format="onnx", imgsz=160, device=0)
    line = next(line for line in ultralytics_log if "fused 19 blocks" in line)
    print(line)
    assert Path(exported).is_file() and settings() == users  # the user's TF32 choice is theirs again
    assert ("in full FP32 (TF32 cuDNN convolutions off for the check)" in line) == tf32_convolutions(users)
