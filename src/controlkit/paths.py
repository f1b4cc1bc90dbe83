"""Where things are: a local folder or a Hub repo, controlkit's own cache folder, and how a local path is
shown in what a user may publish (cards, settings records: its last component only).

Every stage accepts a Hub id wherever it accepts a folder; this is the one rule that tells them apart.
A name that exists here is local. Otherwise ``owner/name`` is a Hub id, and anything else (``./x``,
``/x``, ``~/x``, ``a/b/c``, a bare name) is a local path that is missing: a typo gets "not found" at once
instead of a Hub request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from controlkit.errors import UserError


def is_hub_id(name: str | os.PathLike) -> bool:
    """``owner/name`` that is not a path here and that the Hub accepts as a repo id."""
    text = str(name)
    if Path(text).exists() or text.startswith((".", "/", "~")) or "\\" in text or text.count("/") != 1:
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def check_exists(name: str | os.PathLike, what: str) -> bool:
    """True for a local path, False for a Hub id; a UserError naming ``what`` for neither."""
    if Path(name).exists():
        return True
    if is_hub_id(name):
        return False
    raise UserError(f"{what} not found: {name} (neither a folder here nor a valid Hub id)")


def cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/controlkit/...`` (``~/.cache`` when unset): what controlkit keeps between runs."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root, "controlkit", *parts)


def _is_local_path(text: str) -> bool:
    try:
        return os.path.isabs(text) or Path(text).expanduser().exists()
    except (OSError, ValueError):  # a name too long for a path, a NUL byte: not a path
        return False


def public_name(value: Any) -> Any:
    """A local path (``/home/me/photos``, ``blip:/models/blip``) as its last component (``photos``,
    ``blip:blip``); anything else (a Hub id, a word, a number) as it is."""
    if not isinstance(value, str | os.PathLike):
        return value
    text = str(value)
    head, colon, tail = text.partition(":")
    if colon and tail and not _is_local_path(text) and _is_local_path(tail):
        return f"{head}:{public_name(tail)}"
    return (Path(text).expanduser().name or text) if _is_local_path(text) else text


def public_settings(settings: Any) -> Any:
    """``settings`` (dicts and lists of them) with every local path shortened by ``public_name``."""
    if isinstance(settings, dict):
        return {key: public_settings(value) for key, value in settings.items()}
    if isinstance(settings, list | tuple):
        return [public_settings(value) for value in settings]
    return public_name(settings)
