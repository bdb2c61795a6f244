"""Activations by name, so one YAML row can say ``relu`` or ``silu`` whatever the model's ``activation:`` key says.

YOLOv6 mixes activations within one model (ReLU in its RepVGG backbone and neck, SiLU in its head; YOLOv6-L SiLU in
its stem and CSP stages beside ReLU neck convolutions). Ultralytics has one ``activation:`` key per YAML, applied
while ``parse_model`` runs through ``Conv.default_act``; the plugin's blocks also take an ``act`` argument per row.
"""

from __future__ import annotations

from typing import Union

from torch import nn
from ultralytics.nn.modules import Conv

# Row spelling -> activation class. Lower case, as YAML rows write plain words; `identity` for no activation.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "silu": nn.SiLU, "relu6": nn.ReLU6, "leakyrelu": nn.LeakyReLU, "hardswish": nn.Hardswish,
    "gelu": nn.GELU, "mish": nn.Mish, "identity": nn.Identity,
}

Act = Union[bool, str, nn.Module]  # the type an ``act`` argument of a plugin block accepts


def is_activation_name(value: object) -> bool:
    """Return whether ``value`` is a string that names an activation (``relu``, ``nn.ReLU()``, ...)."""
    return isinstance(value, str) and _normalized(value) in ACTIVATIONS


def _normalized(name: str) -> str:
    """Return ``name`` in ``ACTIVATIONS``' spelling: ``nn.ReLU()`` and ``ReLU`` both read ``relu``."""
    name = name.strip()
    name = name[3:] if name.startswith("nn.") else name
    return (name[:-2] if name.endswith("()") else name).lower()


def resolve_act(act: Act, owner: str) -> nn.Module:
    """Return the activation module a block's ``act`` argument asks for.

    Args:
        act (bool | str | nn.Module): True for the model's ``activation:`` (``Conv.default_act`` while the parser
            runs), False for none, a name of ``ACTIVATIONS`` (``"relu"``, also written ``ReLU`` or ``nn.ReLU()``), or a
            module.
        owner (str): The block, for the error message.

    Raises:
        ValueError: ``act`` is a string that names no known activation.
        TypeError: ``act`` is of another type.
    """
    if act is True:
        return Conv.default_act
    if act is False:
        return nn.Identity()
    if isinstance(act, nn.Module):
        return act
    if isinstance(act, str):
        if not is_activation_name(act):
            raise ValueError(f"{owner}: unknown activation {act!r}; use one of {', '.join(ACTIVATIONS)}")
        return ACTIVATIONS[_normalized(act)]()
    raise TypeError(f"{owner}: act must be an activation name ({', '.join(ACTIVATIONS)}), True for the YAML's "
                    f"'activation:', False for none, or an nn.Module; got {act!r}")
