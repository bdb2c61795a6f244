"""Load an Ultralytics checkpoint the plugin did not write without running anything it holds: read, check, rebuild.

``fuse`` takes checkpoints from anywhere. Ultralytics' loader unpickles them in full (code in the file runs), and even
its restricted loader calls the classes a file names with the file's arguments. Here the file is read by the jailed
reader (``untrusted/``) with an exact allow-list: the module classes of Ultralytics' layers and models, the plugin's
and torch's layers, all as inert records. The model is then built anew, by this process, from the model YAML the
checkpoint stores, once that YAML is checked: every row names a layer class (no ``eval``, no loader rows), the
activation is a plain ``nn.<Activation>(literals)``, repeats and rows are bounded. The YAML is first built on the
``meta`` device (no memory), and its state dict must have exactly the keys and shapes of the file's tensors, so
every allocation of the real build is backed by the file's own bytes. Then the file's tensors are loaded.
"""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import math
from pathlib import Path

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import EfficientRepError
from .limits import MAX_IMAGE_CHANNELS, MAX_REPEATS, whole_number
from .messages import printable
from .rows import plugin_classes
from .untrusted.decode import UntrustedCheckpoint, read_untrusted
from .untrusted.records import Record

# Ultralytics' model classes that fuse rebuilds (the tasks the plugin's configs cover, where the release has them).
MODEL_CLASSES = ("DetectionModel", "SegmentationModel", "PoseModel", "OBBModel", "ClassificationModel",
                 "SemanticSegmentationModel", "DepthModel")
# Ultralytics layers a stored YAML may not name: TorchVision loads (and downloads) weights of its own.
UNSAFE_ROWS = frozenset({"TorchVision"})
# Plain entries of a checkpoint that are training state, never carried into a deploy checkpoint.
TRAINING_STATE = frozenset({"model", "ema", "optimizer", "scaler", "updates", "stopper"})
MAX_ROWS = 512  # rows of a model YAML: the largest Ultralytics or plugin config has 47
TRUST_HINT = "if the file is yours, pass --trusted (trusted=True), which loads it with Ultralytics' full unpickler " \
             "and runs code stored in it"


class RestrictedLoadError(EfficientRepError, ValueError):
    """A checkpoint cannot be loaded as data: the message names the file, what was found and what to do."""


def allowed_classes() -> frozenset[str]:
    """Return the exact class paths an Ultralytics checkpoint of a plugin model may pickle as module objects.

    Every ``nn.Module`` class defined in Ultralytics' layer modules and ``ultralytics.nn.tasks``, the plugin's layer
    classes, torch's layer classes, and Ultralytics' ``IterableSimpleNamespace`` (a model's ``args`` before training
    ends). Built from the installed releases, by exact name: no prefix admits anything else.
    """
    classes: set[type] = set(plugin_classes())
    modules = [importlib.import_module(name) for name in ("ultralytics.nn.tasks", "ultralytics.nn.modules.conv",
                                                          "ultralytics.nn.modules.block", "ultralytics.nn.modules.head",
                                                          "ultralytics.nn.modules.transformer")]
    for module in modules:
        classes.update(obj for obj in vars(module).values() if inspect.isclass(obj) and issubclass(obj, nn.Module)
                       and obj.__module__ == module.__name__)
    classes.update(obj for name in dir(nn) for obj in (getattr(nn, name),)
                   if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__.startswith("torch.nn."))
    namespace = getattr(importlib.import_module("ultralytics.utils"), "IterableSimpleNamespace", None)
    paths = {f"{cls.__module__}.{cls.__qualname__}" for cls in classes}
    return frozenset(paths | ({f"{namespace.__module__}.{namespace.__qualname__}"} if namespace else set()))


def read_restricted(path: Path) -> UntrustedCheckpoint:
    """Read ``path`` in the jailed reader with ``allowed_classes()``; its network comes from ``ema`` or ``model``."""
    return read_untrusted(path, allowed_classes(), roots=("ema", "model"))


def rep_block_records(root: Record) -> list[Record]:
    """Return the records of Rep blocks (classes with ``fuse_convs`` and ``forward_fuse``, as ``fusion.rep_blocks``)."""
    classes = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in plugin_classes()}
    repconv = importlib.import_module("ultralytics.nn.modules").RepConv
    classes[f"{repconv.__module__}.{repconv.__qualname__}"] = repconv
    return [record for record in root.modules() if record.class_path in classes
            and callable(getattr(classes[record.class_path], "fuse_convs", None))
            and hasattr(classes[record.class_path], "forward_fuse")]


def is_fused_record(record: Record) -> bool:
    """Return True for a Rep block stored fused: its one ``conv`` replaced the branches."""
    return "conv" in record.children and "conv1" not in record.children


def _activation_ok(text: object) -> bool:
    """Whether a YAML's ``activation`` is ``[torch.]nn.<Module>(<literals>)``, which Ultralytics evaluates."""
    if not isinstance(text, str) or len(text) > 100:
        return False
    try:
        call = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return False
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
        return False
    owner = call.func.value
    spelled = ast.unparse(owner) in ("nn", "torch.nn")
    layer = getattr(nn, call.func.attr, None)
    literals = all(isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool))
                   for node in [*call.args, *(keyword.value for keyword in call.keywords)])
    return spelled and inspect.isclass(layer) and issubclass(layer, nn.Module) and literals


def _row_classes() -> dict[str, type]:
    """The layer classes a stored YAML row may name by bare name: Ultralytics' layers and the plugin's rows."""
    from .rows import ROWS

    modules = importlib.import_module("ultralytics.nn.modules")
    rows = {name: getattr(modules, name) for name in getattr(modules, "__all__", ()) if name not in UNSAFE_ROWS}
    rows = {name: cls for name, cls in rows.items() if inspect.isclass(cls) and issubclass(cls, nn.Module)}
    return {**rows, **{row.name: row.cls for row in ROWS}}


def check_model_yaml(source: Path, yaml: object) -> dict:
    """Return a checkpoint's stored model YAML if Ultralytics can build it without evaluating or loading anything.

    Raises:
        RestrictedLoadError: A row names anything but a layer class, the activation is not a plain torch activation,
            or sizes, repeats or input channels are beyond the bounds.
    """
    def refuse(problem: str) -> RestrictedLoadError:
        return RestrictedLoadError(f"{source}: its stored model YAML {problem}; fuse rebuilds the model from it "
                                   f"without running anything, so it cannot take this file ({TRUST_HINT})")

    if not isinstance(yaml, dict) or not all(isinstance(key, str) for key in yaml):
        raise refuse("is missing or not a mapping")
    rows = yaml.get("backbone"), yaml.get("head")
    if not all(isinstance(section, list) for section in rows) or len(rows[0]) + len(rows[1]) > MAX_ROWS:
        raise refuse(f"has no backbone and head lists of at most {MAX_ROWS} rows")
    known = _row_classes()
    for index, row in enumerate(rows[0] + rows[1]):
        if not (isinstance(row, list) and len(row) == 4 and whole_number(row[1]) is not None
                and isinstance(row[2], str) and isinstance(row[3], list)):
            raise refuse(f"has a row {index} that is not [from, repeats, module, args]")
        name = row[2]
        layer = getattr(nn, name[3:], None) if name.startswith("nn.") else known.get(name)
        if not (inspect.isclass(layer) and issubclass(layer, nn.Module)):
            raise refuse(f"names {printable(name, 60)} in row {index}, which is not a layer class it may build")
        if not 1 <= row[1] <= MAX_REPEATS:
            raise refuse(f"repeats row {index} {printable(row[1])} times (at most {MAX_REPEATS})")
    if "activation" in yaml and yaml["activation"] is not None and not _activation_ok(yaml["activation"]):
        raise refuse(f"sets the activation to {printable(yaml['activation'], 60)}, not a plain nn.<Activation>()")
    channels = yaml.get("channels", yaml.get("ch", 3))
    if not (whole_number(channels) is not None and 1 <= channels <= MAX_IMAGE_CHANNELS):
        raise refuse(f"takes {printable(channels)} input channels (1 to {MAX_IMAGE_CHANNELS})")
    return yaml


def _plain_args(record: Record, entries: dict) -> dict:
    """Return the training arguments a loaded model carries, as Ultralytics' loader merges them."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    stored = entries.get("train_args")
    stored = stored if isinstance(stored, dict) else {}
    return {**DEFAULT_CFG_DICT, **{key: value for key, value in stored.items() if isinstance(key, str)}}


def _names(source: Path, record: Record, nc: object) -> dict[int, str] | None:
    names = record.attributes.get("names")
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if names is None:
        return None
    if not (isinstance(names, dict) and all(whole_number(k) is not None and isinstance(v, str)
                                            for k, v in names.items())
            and (whole_number(nc) is None or len(names) <= max(nc, 1))):
        raise RestrictedLoadError(f"{source}: its model's class names are not a list or mapping of the model's "
                                  f"classes; {TRUST_HINT}")
    return names


def rebuild(checkpoint: UntrustedCheckpoint) -> tuple[nn.Module, dict]:
    """Build the model a checkpoint read by ``read_restricted`` stores; return (model, checkpoint entries).

    The model is float32, in eval mode, unfused, with the file's tensors, names and training arguments, as
    Ultralytics' loader returns it. The entries are the checkpoint's plain data (``train_args``, ``date``, ...).

    Raises:
        RestrictedLoadError: The file holds no Ultralytics model, its YAML cannot be built safely, or its tensors are
            not exactly the ones that YAML's model has.
    """
    from ultralytics.nn import tasks

    source, root = checkpoint.path, checkpoint.root
    if root is None:
        raise RestrictedLoadError(f"{source} holds no model under 'ema' or 'model' (a state dict or another layout); "
                                  f"pass a .pt that Ultralytics training wrote")
    cls = next((getattr(tasks, name) for name in MODEL_CLASSES
                if hasattr(tasks, name) and root.class_path == f"ultralytics.nn.tasks.{name}"), None)
    if cls is None:
        raise RestrictedLoadError(f"{source}: its model is a {printable(root.class_path, 80)}, not one of "
                                  f"Ultralytics' {', '.join(MODEL_CLASSES)} that fuse rebuilds; {TRUST_HINT}")
    unknown = sorted(set(checkpoint.unread) - TRAINING_STATE)
    if unknown:
        raise RestrictedLoadError(f"{source}: its entry {printable(unknown[0], 60)} holds objects other than plain "
                                  f"data, which fuse does not carry into the deploy checkpoint; {TRUST_HINT}")
    yaml = check_model_yaml(source, root.attributes.get("yaml"))
    state = root.state_dict()
    expected = _meta_state(source, tasks, yaml)
    found = {key: tuple(tensor.shape) for key, tensor in state.items()}
    if expected != found:
        difference = sorted(set(expected.items()) ^ set(found.items()))[0][0]
        raise RestrictedLoadError(f"{source}: its tensors are not those of the model its own YAML builds (first "
                                  f"difference: {printable(difference, 80)}), so it is not a model as Ultralytics "
                                  f"saves one; {TRUST_HINT}")
    with torch.random.fork_rng():
        model = cls(copy.deepcopy(yaml), verbose=False)
    model.load_state_dict({key: tensor.float() if tensor.is_floating_point() else tensor
                           for key, tensor in state.items()}, strict=True)
    names = _names(source, root, yaml.get("nc"))
    if names is not None:
        model.names = names
    model.args = _plain_args(root, checkpoint.entries)
    model.pt_path = str(source)
    model.task = tasks.guess_model_task(model)
    entries = {key: value for key, value in checkpoint.entries.items() if key not in TRAINING_STATE}
    return model.float().eval(), entries


class _SizedMetaArange(TorchFunctionMode):
    """Make ``torch.arange`` of plain numbers an empty meta tensor of its length (its values are never read there).

    torch computes a meta ``arange`` through its Python references, whose first use imports ``torch._dynamo``: a
    second of every ``fuse`` command (Ultralytics' DFL calls it). Anything else goes on to the meta device context.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        numbers = (*args, *(kwargs[key] for key in ("start", "end", "step") if key in kwargs))
        if func is torch.arange and 1 <= len(numbers) <= 3 and all(type(n) in (int, float) for n in numbers):
            start, end, step = (0, numbers[0], 1) if len(numbers) == 1 else (*numbers, 1)[:3]
            integers = all(type(n) is int for n in numbers)
            dtype = kwargs.get("dtype") or (torch.int64 if integers else torch.get_default_dtype())
            return torch.empty(max(0, math.ceil((end - start) / step)), dtype=dtype, device="meta")
        return func(*args, **kwargs)


def _meta_state(source: Path, tasks, yaml: dict) -> dict[str, tuple[int, ...]]:
    """Return the state-dict keys and shapes of the model ``yaml`` builds, built on the meta device (no memory)."""
    try:
        with torch.device("meta"), _SizedMetaArange(), torch.no_grad():
            layers, _ = tasks.parse_model(copy.deepcopy(yaml), ch=yaml.get("channels", yaml.get("ch", 3)),
                                          verbose=False)
    except Exception as error:  # whatever the YAML makes the parser raise: the file cannot be rebuilt
        cause = printable(str(error).splitlines()[0] if str(error) else type(error).__name__, 120)
        raise RestrictedLoadError(f"{source}: its stored model YAML does not build ({cause}); {TRUST_HINT}"
                                  ) from None
    return {f"model.{key}": tuple(tensor.shape) for key, tensor in layers.state_dict().items()}
