"""The seam with Ultralytics: one sub-package holds every assignment into it, a patch that cannot apply says so, the
start-up hook survives a look-up, and the INT8 route takes parameters a later Ultralytics adds."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from ultralytics.utils import ASSETS

import yolov8_efficientrep
from yolov8_efficientrep.integration import exporter

PACKAGE = Path(yolov8_efficientrep.__file__).parent


def _ultralytics_names(tree: ast.Module) -> set[str]:
    """Names a module binds to Ultralytics' modules, classes and functions by importing them."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and "import_module" in ast.unparse(
                node.value.func) and ast.unparse(node.value.args[0]).strip("'\"").startswith("ultralytics"):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ultralytics"):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.asname or alias.name.partition(".")[0] for alias in node.names
                         if alias.name.startswith("ultralytics"))
    return names


def _assignments_into(tree: ast.Module, names: set[str]) -> list[str]:
    """``x.attr = ...`` and ``setattr(x, ...)`` where ``x`` (or the root of ``x.y``) is one of ``names``."""
    def root(node: ast.AST) -> str | None:
        while isinstance(node, ast.Attribute):
            node = node.value
        return node.id if isinstance(node, ast.Name) else None

    found = [ast.unparse(target) for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AugAssign))
             for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
             if isinstance(target, ast.Attribute) and root(target) in names]
    found += [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Call)
              and isinstance(node.func, ast.Name) and node.func.id == "setattr" and root(node.args[0]) in names]
    return found


def test_every_assignment_into_ultralytics_lives_in_the_integration_package():
    outside = {}
    for path in PACKAGE.rglob("*.py"):
        if "integration" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if found := _assignments_into(tree, _ultralytics_names(tree)):
            outside[str(path.relative_to(PACKAGE))] = found
    assert outside == {}
    integration = ast.parse((PACKAGE / "integration" / "exporter.py").read_text(encoding="utf-8"))
    assert _assignments_into(integration, _ultralytics_names(integration))  # the scan sees real assignments


def test_a_patch_that_cannot_apply_names_the_release_and_the_loss(run_fresh):
    code = ("import ultralytics.utils.export.onnx as onnx_export\n"
            "def onnx_int8_quantize(model, output, settings):  # a release with other parameters\n"
            "    pass\n"
            "onnx_export.onnx_int8_quantize = onnx_int8_quantize\n"
            "import yolov8_efficientrep\n"
            "print(onnx_export.onnx_int8_quantize is onnx_int8_quantize)")
    result = run_fresh(sys.executable, "-c", code, env={"YOLOV8_EFFICIENTREP_HOOK": "0"})
    import ultralytics

    assert result.stdout.strip().splitlines()[-1] == "True"  # left as it was
    assert (f"yolov8-efficientrep: the plugin's ONNX INT8 route (onnx_int8_quantize lacks onnx_file, output_file, "
            f"dataset, transform_fn) cannot apply on Ultralytics {ultralytics.__version__}, so format=onnx quantize=8 of plugin "
            f"models uses Ultralytics' settings") in result.stdout + result.stderr


def test_the_int8_route_passes_parameters_a_later_ultralytics_adds(monkeypatch):
    calls = []

    def onnx_int8_quantize(onnx_file, output_file, dataset, transform_fn, input_name="images", prefix="", batch=1):
        """Ultralytics' signature with a parameter a later release adds (the default route is Ultralytics')."""
        calls.append(batch)

    routed = exporter._routing_int8(onnx_int8_quantize)
    routed("in.onnx", "out.onnx", [], lambda batch: batch, batch=4)  # no export in progress: a stock model's route
    assert calls == [4]
    taken = {}
    monkeypatch.setattr(exporter, "quantize_onnx_int8", lambda **arguments: taken.update(arguments))
    monkeypatch.setattr(exporter, "ort_int8_route", lambda uses_plugin: "plugin")
    routed("in.onnx", "out.onnx", [], str, prefix="INT8:", batch=4)
    assert taken == {"onnx_file": "in.onnx", "output_file": "out.onnx", "dataset": [], "transform_fn": str,
                     "prefix": "INT8:", "batch": 4}


def test_the_plugin_route_takes_and_reports_parameters_it_does_not_use(scale_n_model, tmp_path):
    from ultralytics.utils import LOGGER

    from yolov8_efficientrep.quantize import quantize_onnx_int8

    onnx_file = Path(__import__("copy").deepcopy(scale_n_model("yolov8-efficientrep")).export(
        format="onnx", imgsz=64, device="cpu", simplify=False))
    images = [__import__("numpy").random.default_rng(0).random((1, 3, 64, 64), dtype="float32") for _ in range(2)]
    messages = []
    LOGGER.addFilter(lambda record: messages.append(record.getMessage()) or True)
    written = quantize_onnx_int8(onnx_file, tmp_path / "int8.onnx", images, lambda image: image, batch=2)
    assert Path(written).is_file()
    assert any("does not use batch" in message for message in messages)


def test_the_start_up_hook_survives_a_look_up_before_the_import(run_fresh):
    code = ("import importlib.util, sys\n"
            "assert importlib.util.find_spec('ultralytics') is not None\n"
            "assert 'yolov8_efficientrep' not in sys.modules\n"
            "import ultralytics.nn.tasks as tasks\n"
            "print('yolov8_efficientrep' in sys.modules, hasattr(tasks, 'RepVGGBlock'))")
    assert run_fresh(sys.executable, "-c", code).stdout.split()[-2:] == ["True", "True"]


def test_ultralytics_ul_command_sees_the_plugin(installed_hook, run_fresh, tmp_path):
    ul = str(Path(sys.executable).with_name("ul"))
    if not Path(ul).is_file():
        pytest.skip("Ultralytics' ul command is not installed (it comes with ultralytics-platform)")
    result = run_fresh(ul, "predict", "model=yolov8n-efficientrep.yaml", f"source={ASSETS / 'bus.jpg'}", "imgsz=64",
                       "device=cpu", f"project={tmp_path}", "save=False")
    assert "YOLOv8n-efficientrep" in result.stdout + result.stderr or "bus.jpg" in result.stdout + result.stderr
