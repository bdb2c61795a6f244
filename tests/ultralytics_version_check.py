"""Check the plugin against the Ultralytics release first on ``PYTHONPATH``; write the findings as JSON.

Run as ``python ultralytics_version_check.py OUT.json hook|import`` in a fresh interpreter with the start-up hook on.
``hook`` imports only Ultralytics and relies on the hook (as the ``yolo`` CLI does); ``import`` imports the plugin
first (the Python route, which meets the hook half-way through its own import). Checks: registration;
building every model YAML in cfg/ (weights left uninitialized: only parameter counts and row types are compared), and
scale s from folders named ``a6n0m/2024models`` (hook route only, to save time); for the EfficientRep detector, one
training batch forward and backward and Ultralytics' ``fuse()`` against the unfused model; for YOLOv6-Seg's head, whose
forward differs before 8.4, a training forward and backward and the inference outputs' shapes. Errors are recorded,
not raised, so the test can assert on them. JSON goes to a file because Ultralytics logs to stdout.
"""

import copy
import json
import re
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

# tests/, this script's folder, is on sys.path
from helpers import REPO, layers_left_uninitialized, rows_at_scale_n, shipped_model_yamls

OUT, ROUTE = Path(sys.argv[1]), sys.argv[2]
CFG = REPO / "cfg"
result = {"route": ROUTE}


def record_error(key: str, error: BaseException) -> None:
    """Store an error's type, message and traceback tail under ``key``."""
    result[key] = {"type": type(error).__name__, "message": str(error), "traceback": traceback.format_exc()[-3000:]}


def tensors(output) -> list:
    """Return the tensors in a model output, however nested (training outputs differ across versions)."""
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in tensors(item)]
    return [output] if hasattr(output, "float") else []


try:
    if ROUTE == "import":
        import yolov8_efficientrep  # noqa: F401
    import torch
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.nn import tasks

    import yolov8_efficientrep_hook
except Exception as error:
    record_error("import_error", error)
    OUT.write_text(json.dumps(result))
    sys.exit()

result.update(version=ultralytics.__version__, file=ultralytics.__file__, hook_failure=yolov8_efficientrep_hook.failure)
result["stock_yolov8n_params"] = sum(p.numel() for p in YOLO("yolov8n.yaml").model.parameters())  # never changed
plugin = sys.modules.get("yolov8_efficientrep")
result["registered"] = bool(plugin) and getattr(tasks, "RepVGGBlock", None) is plugin.RepVGGBlock and bool(getattr(
    tasks.parse_model, "__yolov8_efficientrep_wraps__", False))

models = {}
for path in shipped_model_yamls() if ROUTE == "hook" else []:  # once per version
    needs = re.search(r"^# Needs Ultralytics >= ([\d.]+)", path.read_text(), re.M)  # YOLO11 / YOLO26 rows
    if needs and tuple(map(int, needs[1].split("."))) > tuple(map(int, re.findall(r"\d+", ultralytics.__version__)[:3])):
        models[path.name] = {"needs": needs[1]}
        continue
    try:  # parsed as this release's YOLO() parses it: every layer built, no forward pass (the forward pass, training
        # and fusion are checked on the real model below); on the CPU, which builds them faster than the meta device
        with layers_left_uninitialized():
            models[path.name] = rows_at_scale_n(path)
    except Exception as error:
        models[path.name] = {"error": f"{type(error).__name__}: {error}"}
result["models"] = models

if ROUTE == "hook":  # a scaled path under folders with a digit before n/s/l/m/x (integration/scaled_paths.py)
    with tempfile.TemporaryDirectory() as root:
        odd = Path(root) / "a6n0m" / "2024models"
        odd.mkdir(parents=True)
        shutil.copy(CFG / "yolov8-efficientrep.yaml", odd)
        try:
            model = YOLO(odd / "yolov8s-efficientrep.yaml").model
            result["odd_folder"] = {"scale": model.yaml["scale"], "stem_width": model.model[0].c2}
        except Exception as error:
            result["odd_folder"] = {"error": f"{type(error).__name__}: {error}"}

try:
    # the unified file, scale n by default: without the plugin (outside the range) a scaled name in a checkout under a
    # folder such as a6n0m/ fails on that folder before the unknown row (integration/scaled_paths.py)
    model = YOLO(CFG / "yolov8-efficientrep.yaml").model
    generator = torch.Generator().manual_seed(0)
    for bn in model.modules():  # random statistics, so fusion has real work to do
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-1, 1, generator=generator)
            bn.running_var.uniform_(0.5, 2, generator=generator)
            bn.weight.data.uniform_(0.5, 1.5, generator=generator)
            bn.bias.data.uniform_(-0.5, 0.5, generator=generator)
    x = torch.rand(2, 3, 64, 64, generator=generator)

    model.train()  # one training batch: every branch of every RepVGG block gets a gradient
    loss = sum(output.float().square().mean() for output in tensors(model(x)))
    loss.backward()
    rep_params = [p for m in model.modules() if type(m).__name__ == "RepVGGBlock" for p in m.parameters()]
    result["train_forward"] = {"loss": loss.item(), "rep_params": len(rep_params),
                               "rep_params_with_grad": sum(p.grad is not None and bool(p.grad.abs().sum() > 0)
                                                           for p in rep_params)}

    model.eval()
    with torch.no_grad():
        unfused = model(x)[0]
        fused_model = copy.deepcopy(model).fuse(verbose=False)  # Ultralytics' own fuse()
        fused = fused_model(x)[0]
    blocks = [m for m in fused_model.modules() if type(m).__name__ == "RepVGGBlock"]
    result["fuse"] = {"relative_diff": ((fused - unfused).abs().max() / unfused.abs().max()).item(),
                      "blocks": len(blocks), "unfused_blocks": sum(hasattr(b, "conv1") for b in blocks)}
except Exception as error:
    record_error("check_error", error)

try:  # YOLOv6-Seg's head: before 8.4 it runs Segment's forward body itself, with YOLOv6's stems before the branches
    model = YOLO(CFG / "yolov6-repbifpan-seg.yaml").model
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model.train()
    loss = sum(output.float().square().mean() for output in tensors(model(x)))
    loss.backward()
    model.eval()
    with torch.no_grad():
        output = model(x)
    decoded = output[0] if isinstance(output[0], torch.Tensor) else output[0][0]  # 8.4: ((decoded, protos), raw)
    protos = output[1][-1] if isinstance(output[0], torch.Tensor) else output[0][1]
    result["seg_head"] = {"loss": loss.item(), "decoded": list(decoded.shape), "protos": list(protos.shape),
                          "stems_with_grad": all(stem.conv.weight.grad is not None for stem in model.model[-1].stems)}
except Exception as error:
    record_error("seg_error", error)

OUT.write_text(json.dumps(result))
