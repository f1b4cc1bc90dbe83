"""OUT/checkpoints/: each finished checkpoint's figures (and the base model's), kept so a rerun skips them.

One JSON file per checkpoint, written to a temporary file and renamed, so an interrupted evaluation keeps
every checkpoint it finished and never a half-written one. Each file carries a digest of the settings it
was measured with; a rerun with other settings is refused (``--overwrite`` starts again).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from controlkit.errors import UserError
from controlkit.eval.figures import finite

FOLDER = "checkpoints"
BASE = "base"


def settings_digest(settings: dict[str, Any]) -> str:
    """A short digest of what the figures depend on."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ResultStore:
    """Per-checkpoint records under ``out/checkpoints/``, each tagged with the settings' digest."""

    def __init__(self, out: Path, digest: str, overwrite: bool = False):
        self.folder, self.digest = Path(out) / FOLDER, digest
        if overwrite and self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, name: str, suffix: str = ".json") -> Path:
        return self.folder / f"{name}{suffix}"

    def get(self, name: str) -> dict[str, Any] | None:
        """The record an earlier run finished for ``name``, or None; other settings are one line."""
        path = self.path(name)
        if not path.is_file():
            return None
        saved = json.loads(path.read_text())
        if saved.get("digest") != self.digest:
            raise UserError(
                f"{path} was measured with other settings; use another --out, or --overwrite to start again"
            )
        return saved["record"]

    def put(self, name: str, record: dict[str, Any]) -> None:
        """Write ``name``'s record atomically."""
        text = json.dumps({"digest": self.digest, "record": finite(record)}, indent=1) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=self.folder)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, self.path(name))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
