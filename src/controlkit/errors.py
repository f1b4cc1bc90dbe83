"""One-line errors for the user, and the message for a missing optional extra."""

from __future__ import annotations

import importlib
from types import ModuleType


class UserError(Exception):
    """A problem with the user's input: the CLI prints its message on one line, no traceback."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for a UserError."""
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def require(module: str, extra: str) -> ModuleType:
    """Import an optional heavy dependency, or say in one line which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(
            f"{module} is not installed; install it with: pip install 'controlkit[{extra}]' ({exc})"
        ) from exc
