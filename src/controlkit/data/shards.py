"""Shards that survive an interrupted build: written atomically, each with the manifest of its inputs.

A build works in ``OUT.partial/``: every shard is a ``save_to_disk`` folder written under a temporary
name and renamed into place, with ``manifest.json`` (each input's key, source and skip reason) inside
it. The shard and the record that its inputs are done therefore appear together or not at all, so a
build killed at any moment and run again with ``--resume`` neither redoes nor loses finished work.
At the end the shards are concatenated and the finished dataset is renamed to ``OUT``. Several processes
may write into one store (``data realify`` under ``accelerate launch``): each names its shards by its
``owner``, and all but the main one ``join`` the store the main one opened.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from controlkit.errors import UserError

BUILD_FILE = "build.json"
MANIFEST_FILE = "manifest.json"
_SHARD_PREFIX = "shard-"
_TMP_PREFIX = ".tmp-"


def work_dir_for(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


class ShardStore:
    """The shards of one build, in ``work_dir``; ``fingerprint`` pins the settings a resume must match.

    ``owner`` names this process's shards (``shard-OWNER-00000``) where several processes write; ``join``
    opens a store that another process of the same run has just opened: no "unfinished build" error, and
    its temporary folders are left alone.
    """

    def __init__(
        self, work_dir: Path, fingerprint: dict[str, Any], resume: bool, owner: str = "", join: bool = False
    ):
        self.work_dir = work_dir
        self.prefix = f"{_SHARD_PREFIX}{owner}-" if owner else _SHARD_PREFIX
        build_file = work_dir / BUILD_FILE
        if build_file.is_file():
            if not (resume or join):
                raise UserError(
                    f"an unfinished build is in {work_dir}; add --resume to continue it or delete it"
                )
            previous = json.loads(build_file.read_text())
            changed = sorted(
                k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k)
            )
            if changed:
                raise UserError(
                    f"--resume with different settings ({', '.join(changed)}) than the build in {work_dir}"
                )
        else:
            work_dir.mkdir(parents=True, exist_ok=True)
            _atomic_write(build_file, json.dumps(fingerprint, indent=2, sort_keys=True))
        if not join:
            for leftover in work_dir.glob(_TMP_PREFIX + "*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def shards(self) -> list[Path]:
        return sorted(p for p in self.work_dir.glob(_SHARD_PREFIX + "*") if (p / MANIFEST_FILE).is_file())

    def manifest(self) -> list[dict[str, Any]]:
        """Every input done so far, in order: ``{"key", "source", "reason", "empty"}`` (None: written)."""
        return [entry for shard in self.shards() for entry in json.loads((shard / MANIFEST_FILE).read_text())]

    def write(self, rows: dict[str, list], features: Any, manifest: list[dict[str, Any]]) -> Path:
        """Write one shard atomically: a temporary folder renamed into place once complete."""
        import datasets

        own = [int(p.name[len(self.prefix) :]) for p in self.shards() if p.name[len(self.prefix) :].isdigit()]
        index = max(own) + 1 if own else 0
        final = self.work_dir / f"{self.prefix}{index:05d}"
        tmp = self.work_dir / f"{_TMP_PREFIX}{final.name}-{os.getpid()}"
        if any(rows.values()):
            datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp))
        else:  # every input of the shard was skipped: only the manifest (datasets cannot load 0 rows back)
            tmp.mkdir()
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest))
        os.rename(tmp, final)
        return final

    def consolidate(self) -> Any:
        """All shards as one ``datasets.Dataset`` (memory-mapped), cast to the first shard's full schema."""
        import datasets

        parts = [datasets.load_from_disk(str(s)) for s in self.shards() if (s / "state.json").is_file()]
        if not parts:
            return None
        features = next((p.features for p in parts if not _has_null_column(p.features)), parts[0].features)
        return datasets.concatenate_datasets(
            [p if p.features == features else p.cast(features) for p in parts]
        )

    def finish(self, dataset: Any, out: Path, extras: Any) -> Path:
        """Save ``dataset`` and call ``extras(folder)`` under a temporary name, then rename it to ``out``."""
        tmp = self.work_dir / f"{_TMP_PREFIX}final"
        shutil.rmtree(tmp, ignore_errors=True)
        dataset.save_to_disk(str(tmp))
        extras(tmp)
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        os.rename(tmp, out)
        shutil.rmtree(self.work_dir)
        return out


def _has_null_column(features: Any) -> bool:
    return any(getattr(feature, "dtype", None) == "null" for feature in features.values())


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
