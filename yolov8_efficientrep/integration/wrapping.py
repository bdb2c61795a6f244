"""Wrap an Ultralytics function once: the one way every seam replaces a function, idempotently.

A wrapper is marked with ``WRAPS`` (its value is the function it wraps), so installing twice changes nothing, and a
function Ultralytics has bound by name in other modules (``from .tasks import yaml_model_load``) is rebound there
too, where it is still the original.
"""

from __future__ import annotations

import sys
from typing import Callable, Iterable

WRAPS = "__yolov8_efficientrep_wraps__"  # set on every wrapper the plugin installs: the function it wraps


def is_wrapped(function: object) -> bool:
    """Return True if ``function`` is one of the plugin's wrappers."""
    return getattr(function, WRAPS, None) is not None


def mark(wrapper: Callable, original: object) -> Callable:
    """Mark ``wrapper`` as the plugin's wrapper of ``original``; return it."""
    setattr(wrapper, WRAPS, original)
    return wrapper


def wrap_once(owner: object, name: str, make: Callable[[Callable], Callable], rebind: Iterable[str] = ()) -> bool:
    """Replace ``owner.name`` with ``make(original)`` unless it is the plugin's wrapper already.

    Args:
        owner (object): A module or class of Ultralytics'.
        name (str): The attribute: a function, or (on a class) a method as the class stores it.
        make (Callable): Builds the wrapper from the original.
        rebind (Iterable[str]): Modules that bind the original by name: those imported already and still holding it
            are rebound to the wrapper.

    Returns:
        (bool): True if the wrapper was installed now, False if it was there already.
    """
    original = vars(owner)[name] if isinstance(owner, type) else getattr(owner, name)
    if is_wrapped(original):
        return False
    wrapper = mark(make(original), original)
    setattr(owner, name, wrapper)
    for module_name in rebind:  # modules imported later bind the wrapper themselves
        module = sys.modules.get(module_name)
        if getattr(module, name, None) is original:
            setattr(module, name, wrapper)
    return True
