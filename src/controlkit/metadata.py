"""The two typed records that travel as ``controlkit.json``: a dataset's and a trained ControlNet's.

``DatasetInfo`` sits beside a dataset built by `controlkit data build`: its condition, column names and
resolution, so `controlkit train` needs no column flags. ``ControlNetInfo`` sits beside a ControlNet
trained by `controlkit train`: its base model, condition and resolution, so `generate` and `app` need
no flags. They are read and written only here. A record is read from a local folder or, for a Hub id,
downloaded from the repo; absent means a record of defaults. Each file carries ``format_version``; a
damaged file, or one written by a newer controlkit, is one line naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from controlkit.errors import UserError
from controlkit.paths import check_exists

METADATA_FILE = "controlkit.json"
FORMAT_VERSION = 1
DEFAULT_RESOLUTION = 512
"""What a ControlNet that records no resolution (a plain diffusers one) is taken to be trained at."""


@dataclass(frozen=True)
class _Record:
    repo_type: ClassVar[str]
    what: ClassVar[str]

    @classmethod
    def read(cls, folder_or_repo: str | os.PathLike) -> Self:
        """The record of a local folder or Hub repo; defaults when it has none."""
        path = _locate(str(folder_or_repo), cls.repo_type, cls.what)
        return cls() if path is None else cls._parse(path)

    def write(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / METADATA_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def _parse(cls, path: Path) -> Self:
        try:
            fields = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc
        if not isinstance(fields, dict):
            raise UserError(f"{path} must hold a JSON object, not {type(fields).__name__}")
        version = fields.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise UserError(
                f"{path} has format version {version!r}, newer than this controlkit reads "
                f"({FORMAT_VERSION}); upgrade controlkit"
            )
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {name: value for name, value in fields.items() if name in known and value is not None}
        for name, value in values.items():
            if not _fits(known[name], value):
                raise UserError(f"{path}: {name!r} has a value of the wrong type ({value!r})")
        return cls(**{**values, "format_version": FORMAT_VERSION})


def _fits(f: dataclasses.Field, value: Any) -> bool:
    kind = str(f.type)
    if kind.startswith("dict"):
        return isinstance(value, dict)
    if kind.startswith("int"):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)


def _locate(name: str, repo_type: str, what: str) -> Path | None:
    """The local or downloaded controlkit.json; None when the folder or repo has none."""
    if check_exists(name, what):
        path = Path(name) / METADATA_FILE
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(name, METADATA_FILE, repo_type=repo_type))
    except (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError, OSError):
        return None


@dataclass(frozen=True)
class DatasetInfo(_Record):
    """What `controlkit data build` records beside a dataset."""

    repo_type: ClassVar[str] = "dataset"
    what: ClassVar[str] = "dataset"

    condition: str | None = None
    condition_options: dict[str, Any] = field(default_factory=dict)
    image_column: str = "image"
    conditioning_image_column: str = "conditioning_image"
    caption_column: str = "text"
    annotation_column: str = "annotation"
    source_column: str = "source"
    resolution: int | None = None
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True)
class ControlNetInfo(_Record):
    """What `controlkit train` records beside a ControlNet; defaults for a plain diffusers one."""

    repo_type: ClassVar[str] = "model"
    what: ClassVar[str] = "ControlNet"

    base_model: str | None = None
    condition: str | None = None
    condition_options: dict[str, Any] = field(default_factory=dict)
    resolution: int = DEFAULT_RESOLUTION
    dataset: str | None = None
    controlkit_version: str | None = None
    step: int | None = None
    """The training step of these weights (None when not recorded); `controlkit eval` writes it into best/."""
    format_version: int = FORMAT_VERSION
