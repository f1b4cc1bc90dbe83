"""A command's flags come from its config dataclass: each field is one flag, its metadata the help text.

Every command declares its settings once, as a dataclass whose fields are made with ``option`` (a default
and a help text, plus argparse extras such as ``choices``); ``add_arguments`` turns the fields into flags
and ``from_namespace`` turns parsed flags back into the config. The flag's type comes from the field's
annotation: ``bool`` is ``--x/--no-x``, ``int``, ``float``, ``str`` and ``Path`` convert the value,
``list[...]`` takes several values, ``tuple[int, ...]`` takes ``1,2,3``, ``dict`` takes a JSON object.
This module imports nothing heavy, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

HIDDEN = "hidden"
"""Metadata key: a field with ``hidden=True`` is a setting for Python callers only, not a flag."""


def option(default: Any = dataclasses.MISSING, help: str = "", **argparse_kwargs: Any) -> Any:
    """A config field: its default (lists and dicts are copied per instance) and its flag's help text.

    ``argparse_kwargs`` may hold ``choices``, ``metavar``, ``required`` (a flag the command line needs
    even where Python callers may leave it out), ``type`` (a parser of the text, where the annotation's
    is not right), ``group`` (flags of one name form a required mutually exclusive group) or
    ``hidden=True``.
    """
    metadata = {"help": help, **argparse_kwargs}
    if isinstance(default, list | dict | set):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def parse_bool(value: Any) -> bool:
    """``true/false``, ``yes/no``, ``on/off``, ``1/0`` (config files and environment-style values)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def parse_ints(text: str | tuple | list) -> tuple[int, ...]:
    """``32,64,64`` -> (32, 64, 64)."""
    if isinstance(text, tuple | list):
        return tuple(int(v) for v in text)
    try:
        return tuple(int(part) for part in str(text).split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def parse_json_object(text: str | dict) -> dict:
    """A JSON object given as text, e.g. ``'{"upsample": 0}'``."""
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _annotation(f: dataclasses.Field) -> str:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return kind.replace("typing.", "").replace(" ", "")


def is_list(f: dataclasses.Field) -> bool:
    """Whether the field takes several values (``--flag a b c``)."""
    return _annotation(f).startswith("list[")


def converter(f: dataclasses.Field) -> Callable[[Any], Any]:
    """The function that turns one flag or config-file value into the field's type."""
    if "type" in f.metadata:
        return f.metadata["type"]
    kind = _annotation(f)
    if kind.startswith("list["):
        kind = kind[len("list[") :]
    for prefix, convert in (
        ("bool", parse_bool),
        ("int", int),
        ("float", float),
        ("Path", Path),
        ("tuple[int", parse_ints),
        ("dict", parse_json_object),
    ):
        if kind.startswith(prefix):
            return convert
    return str


def flag_name(f: dataclasses.Field, underscores: bool) -> str:
    return f"--{f.name if underscores else f.name.replace('_', '-')}"


def _shown_default(value: Any) -> str | None:
    if value is None or value is False or value == "" or value in ({}, []):
        return None
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are flags (all but the hidden ones)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get(HIDDEN)]


def add_arguments(
    parser: argparse.ArgumentParser, cls: type, *, underscores: bool = False, suppress: bool = False
) -> None:
    """One flag per field of the dataclass ``cls``, with its help text and default.

    ``underscores`` keeps the field names as flag names (``--output_dir``, as the diffusers trainer spells
    them) instead of dashes (``--num-workers``). With ``suppress``, flags not given stay out of the parsed
    namespace, so a caller can tell them from defaults (a config file sits between the two).
    """
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f in flag_fields(cls):
        meta = {k: v for k, v in f.metadata.items() if k not in ("help", "type", "group", "required")}
        default = _default(f)
        help_text = f.metadata["help"]
        shown = None if default is dataclasses.MISSING else _shown_default(default)
        if shown is not None:
            help_text += f" (default: {shown})"
        required = default is dataclasses.MISSING or bool(f.metadata.get("required"))
        kwargs: dict[str, Any] = {"help": help_text.replace("%", "%%"), "dest": f.name, **meta}
        kwargs["default"] = argparse.SUPPRESS if suppress or default is dataclasses.MISSING else default
        convert = converter(f)
        if convert is parse_bool and "type" not in f.metadata:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = convert
            if is_list(f):
                kwargs.setdefault("nargs", "+")
        target: Any = parser
        if "group" in f.metadata:
            name = f.metadata["group"]
            if name not in groups:
                groups[name] = parser.add_mutually_exclusive_group(required=True)
            target = groups[name]
        elif required:
            kwargs["required"] = True
        target.add_argument(flag_name(f, underscores), **kwargs)


def from_namespace(cls: type, namespace: argparse.Namespace) -> Any:
    """The config ``cls`` built from parsed flags (fields missing from the namespace keep their default)."""
    values = {f.name: getattr(namespace, f.name) for f in flag_fields(cls) if hasattr(namespace, f.name)}
    return cls(**values)
