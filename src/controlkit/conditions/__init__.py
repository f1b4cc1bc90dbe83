"""The condition registry: every stage finds a condition by name.

Built-in conditions register themselves when their module is imported; third-party ones plug in
through the ``controlkit.conditions`` entry-point group (the entry point names a factory that takes
the condition's options as keyword arguments and returns a ``Condition``; an object that follows the
interface without subclassing it gets the base class's defaults for what it leaves out).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from importlib.metadata import entry_points

from controlkit.conditions.base import Annotation, Condition, as_condition
from controlkit.errors import UserError, first_line

ENTRY_POINT_GROUP = "controlkit.conditions"

_BUILTIN_MODULES = {
    "face-landmarks": "controlkit.conditions.face_landmarks",
    "canny": "controlkit.conditions.canny",
}
_FACTORIES: dict[str, Callable[..., Condition]] = {}

__all__ = ["Annotation", "Condition", "available", "get", "register", "registered"]


def register(name: str) -> Callable[[Callable[..., Condition]], Callable[..., Condition]]:
    """Decorator that makes a condition factory findable by ``get(name)``."""

    def decorate(factory: Callable[..., Condition]) -> Callable[..., Condition]:
        _FACTORIES[name] = factory
        return factory

    return decorate


def registered() -> dict[str, Callable[..., Condition]]:
    """The factories known in this process, so a spawned worker can register them again."""
    return dict(_FACTORIES)


def _load(name: str) -> Callable[..., Condition] | None:
    if name in _FACTORIES:
        return _FACTORIES[name]
    if name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
        return _FACTORIES.get(name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            _FACTORIES[name] = ep.load()
            return _FACTORIES[name]
    return None


def available() -> list[str]:
    """Names of every condition: built-in, registered at run time, and installed plug-ins."""
    names = set(_BUILTIN_MODULES) | set(_FACTORIES)
    names |= {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names)


def get(name: str, **options: object) -> Condition:
    """The condition called ``name``, built with ``options``."""
    factory = _load(name)
    if factory is None:
        raise UserError(f"unknown condition {name!r}; available: {', '.join(available())}")
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        accepted = [p for p in inspect.signature(factory).parameters if p != "self"]
        raise UserError(
            f"condition {name!r} does not take these options {sorted(options)}; "
            f"its options: {', '.join(accepted) or 'none'}"
        ) from exc
    try:
        made = factory(**options)
    except (TypeError, ValueError) as exc:
        if not options:
            raise
        raise UserError(f"condition {name!r}: bad option value in {options}: {first_line(exc)}") from exc
    return as_condition(made, name)
