"""The small `controlkit.json` file that travels beside a dataset or a trained ControlNet.

A dataset built by `controlkit data build` names its condition and columns in it; a ControlNet trained
by `controlkit train` records its base model and condition in it, so `generate` and `app` need no flags.
It is read from a local folder or, for a Hub id, downloaded from the repo (absent means empty).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from controlkit.errors import UserError

METADATA_FILE = "controlkit.json"


def write_metadata(folder: str | Path, fields: dict[str, Any]) -> Path:
    path = Path(folder) / METADATA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
    return path


def is_hub_id(name: str) -> bool:
    """``owner/name`` that is not a path here: where local and Hub names part ways in every stage."""
    return not Path(name).exists() and not name.startswith((".", "/", "~")) and name.count("/") == 1


def read_metadata(folder_or_repo: str | Path, repo_type: str = "model", revision: str | None = None) -> dict:
    """The metadata of a local folder or Hub repo; {} when there is none."""
    local = Path(folder_or_repo)
    if local.exists():
        path = local / METADATA_FILE
        return _parse(path) if path.is_file() else {}
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        path = hf_hub_download(str(folder_or_repo), METADATA_FILE, repo_type=repo_type, revision=revision)
    except HFValidationError as exc:
        raise UserError(f"{folder_or_repo} is neither a folder here nor a valid Hub id") from exc
    except (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError, OSError):
        return {}
    return _parse(Path(path))


def _parse(path: Path) -> dict:
    try:
        fields = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc
    if not isinstance(fields, dict):
        raise UserError(f"{path} must hold a JSON object, not {type(fields).__name__}")
    return fields
