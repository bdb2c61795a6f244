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


def _root(node: ast.AST) -> str | None:
    """The name an expression such as ``a.b[0].c`` or ``a.b()`` starts from."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call, ast.Starred)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _bindings(node: ast.AST) -> list[tuple[ast.AST, ast.AST]]:
    """``(target, value)`` of a statement or clause that binds names."""
    if isinstance(node, ast.Assign):
        return [(target, node.value) for target in node.targets]
    if isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)) and node.value is not None:
        return [(node.target, node.value)]
    if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
        return [(node.target, node.iter)]
    if isinstance(node, ast.withitem) and node.optional_vars is not None:
        return [(node.optional_vars, node.context_expr)]
    return []


def _foreign_names(scope: ast.AST, imported: set[str], own_classes: set[str]) -> set[str]:
    """Names in ``scope`` that may hold an object the plugin did not make: Ultralytics' imports, modules imported by a
    name held in a variable, the function's parameters (an exporter, a trainer, a user's model) and every name bound
    from an expression that reads one of them (``args = trainer.args``, ``for block in rep_blocks(model)``), except an
    object built from the plugin's own class."""
    arguments = getattr(scope, "args", None)
    foreign = set(imported)
    if arguments is not None:
        foreign |= {a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                                    *filter(None, (arguments.vararg, arguments.kwarg)))} - {"self", "cls"}
    nodes = list(ast.walk(scope))
    grown = True
    while grown:
        grown = False
        for node in nodes:
            for target, value in _bindings(node):
                if isinstance(value, ast.Call) and _root(value.func) in own_classes:
                    continue  # a new object of the plugin's own
                imports = isinstance(value, ast.Call) and "import_module" in ast.unparse(value.func)  # by a name
                if imports or {n.id for n in ast.walk(value) if isinstance(n, ast.Name)} & foreign:
                    bound = {n.id for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
                    grown |= bool(bound - foreign)
                    foreign |= bound
    return foreign


def assignments_into_ultralytics(source: str, own_classes: set[str]) -> list[str]:
    """``x.attr = ...``, ``del x.attr``, ``setattr(x, ...)`` and ``delattr(x, ...)`` in ``source`` on an object that
    may be Ultralytics' (``_foreign_names``): a module, class or function of it, or an object of it such as a model."""
    tree = ast.parse(source)
    imported = _ultralytics_names(tree)
    found = set()
    functions = (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    for scope in (tree, *functions):
        foreign = _foreign_names(scope, imported, own_classes)
        for node in ast.walk(scope):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else (
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
            found.update(ast.unparse(target) for target in targets
                         if isinstance(target, ast.Attribute) and _root(target) in foreign)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("setattr", "delattr") and node.args and _root(node.args[0]) in foreign):
                found.add(ast.unparse(node))
    return sorted(found)


def package_classes() -> set[str]:
    """Names of the classes the plugin defines."""
    trees = (ast.parse(path.read_text(encoding="utf-8")) for path in PACKAGE.rglob("*.py"))
    return {node.name for tree in trees for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}


# Assignments outside integration/ that the scan finds, each to an object the plugin itself made or was handed to
# change, never to Ultralytics' modules, classes or a run's state; anything else it finds fails.
OWN_OBJECTS = {
    "evaluation.py": ["unfused.fuse", "yolo.model"],  # the YOLO and model it loaded for one validation
    "fusion.py": ["block.forward", "setattr(other, key, types.MethodType(value.__func__, other))",
                  "setattr(other, key, value)"],  # fusing is running a block's fused forward, as Ultralytics' own
    # fuse() does; the settings and an exporter's head decoder go onto the plugin's own unfused reference
    "importer/convert.py": ["target.names"],  # the model the import built
    "rebuild.py": ["model.args", "model.names", "model.pt_path", "model.task"],  # the model rebuilt from data
}


def test_every_assignment_into_ultralytics_lives_in_the_integration_package():
    own = package_classes()
    outside = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "integration" not in path.relative_to(PACKAGE).parts:
            if found := assignments_into_ultralytics(path.read_text(encoding="utf-8"), own):
                outside[path.relative_to(PACKAGE).as_posix()] = found
    assert outside == OWN_OBJECTS


def test_the_assignment_scan_follows_ultralytics_objects_and_sees_every_seam():
    """The scan sees each way code reaches an Ultralytics object, and every patch integration/ makes."""
    code = """
import importlib
from ultralytics.nn import tasks
from ultralytics import YOLO
from .blocks import RepVGGBlock

tasks.parse_model = None  # a module imported from Ultralytics
module = importlib.import_module("ultralytics.utils")
module.LOGGER = None  # imported by name
for name in ("ultralytics.nn.tasks",):
    found = importlib.import_module(name)
    found.guess_model_task = None  # imported by a name in a variable

def callback(trainer, model):
    args = trainer.args
    setattr(args, "lr0", 0.1)  # an object Ultralytics passes in
    for block in model.modules():
        block.forward = None  # an object reached through one
    built = YOLO("yolov8n.yaml")
    built.model.names = {}  # an object built from an Ultralytics class
    unit = RepVGGBlock(8, 8)
    unit.act = None  # the plugin's own object: not Ultralytics'
    self.count = 1  # neither
"""
    assert assignments_into_ultralytics(code, {"RepVGGBlock"}) == [
        "block.forward", "built.model.names", "found.guess_model_task", "module.LOGGER", "setattr(args, 'lr0', 0.1)",
        "tasks.parse_model"]
    own = package_classes()
    routes = ("wrap_once(", "default_callbacks.setdefault(")  # the wrapping helper; the callback table's list
    seams = {path.stem: assignments_into_ultralytics(text, own) or [r for r in routes if r in text]
             for path in (PACKAGE / "integration").glob("*.py") if path.stem not in ("__init__", "notice")
             for text in (path.read_text(encoding="utf-8"),)}
    assert seams and all(seams.values()), seams  # each seam module's patch is seen, or goes through a helper
    assert seams["wrapping"] == ["setattr(module, name, wrapper)", "setattr(owner, name, wrapper)",
                                 "setattr(wrapper, WRAPS, original)"]


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


@pytest.mark.slow  # a third console script in a fresh process, after yolo and yolov8-efficientrep
def test_ultralytics_ul_command_sees_the_plugin(installed_hook, run_fresh, tmp_path):
    ul = str(Path(sys.executable).with_name("ul"))
    if not Path(ul).is_file():
        pytest.skip("Ultralytics' ul command is not installed (it comes with ultralytics-platform)")
    log = run_fresh(ul, "predict", "model=yolov8n-efficientrep.yaml", f"source={ASSETS / 'bus.jpg'}", "imgsz=64",
                    "device=cpu", f"project={tmp_path}", "save=False").stdout
    assert "YOLOv8n-efficientrep summary (fused)" in log  # the plugin's model was built and fused, then predicted
    assert f"image 1/1 {ASSETS / 'bus.jpg'}: 64x64" in log
