"""Shards that survive an interrupted build: written atomically, each with the manifest of its inputs.

A build works in ``OUT.partial/``: every shard is a ``save_to_disk`` folder written under a temporary
name and renamed into place, with ``manifest.json`` (each input's key, source and skip reason) inside
it. The shard and the record that its inputs are done therefore appear together or not at all, so a
build killed at any moment, or stopped by a full disk, and run again with ``--resume`` neither redoes nor
loses finished work, and never reads a half-written shard. At the end the shards are concatenated and the
finished dataset is renamed to ``OUT``. Several processes may write into one store (``data realify``
under ``accelerate launch``): each names its shards by its ``owner``, and all but the main one ``join``
the store the main one opened. One run at a time holds the work folder (``holding``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from controlkit.console import size_text
from controlkit.errors import UserError
from controlkit.locks import LOCK_FILE, FolderLock

BUILD_FILE = "build.json"
MANIFEST_FILE = "manifest.json"
_SHARD_PREFIX = "shard-"
_TMP_PREFIX = ".tmp-"


def work_dir_for(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


@contextlib.contextmanager
def holding(work_dir: Path, what: str) -> Iterator[None]:
    """Hold ``work_dir`` for this run (a second run into it is refused, naming the process); on the way out,
    a work folder that holds no finished shard is removed, so a run that did nothing leaves nothing."""
    with FolderLock(work_dir / LOCK_FILE, what):
        try:
            yield
        finally:
            if work_dir.is_dir() and not _shard_folders(work_dir):
                shutil.rmtree(work_dir, ignore_errors=True)


def _shard_folders(work_dir: Path) -> list[Path]:
    return sorted(p for p in work_dir.glob(_SHARD_PREFIX + "*") if (p / MANIFEST_FILE).is_file())


class ShardStore:
    """The shards of one build, in ``work_dir``; ``fingerprint`` pins the settings a resume must match.

    ``owner`` names this process's shards (``shard-OWNER-00000``) where several processes write; ``join``
    opens a store that another process of the same run has just opened: no "unfinished build" error, and
    its temporary folders are left alone. ``expected``: how many inputs the whole build has (None:
    unknown), so a full disk can be told how much more space the rest needs. A work folder without a
    finished shard holds nothing to resume: it is started afresh.
    """

    def __init__(
        self,
        work_dir: Path,
        fingerprint: dict[str, Any],
        resume: bool,
        owner: str = "",
        join: bool = False,
        expected: int | None = None,
    ):
        self.work_dir, self.expected = work_dir, expected
        self.prefix = f"{_SHARD_PREFIX}{owner}-" if owner else _SHARD_PREFIX
        build_file = work_dir / BUILD_FILE
        if build_file.is_file() and not join and not self.shards():
            build_file.unlink()  # a run that finished no input: nothing to resume, nothing to refuse
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
            with self._writing("the build's settings", lambda: 4096):
                work_dir.mkdir(parents=True, exist_ok=True)
                _atomic_write(build_file, json.dumps(fingerprint, indent=2, sort_keys=True))
        if not join:
            for leftover in work_dir.glob(_TMP_PREFIX + "*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def shards(self) -> list[Path]:
        return _shard_folders(self.work_dir)

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
        needed = functools.partial(self._space_for_the_rest, _payload_bytes(rows), len(manifest))
        with self._writing("a shard", needed, tmp):
            if any(rows.values()):
                datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp))
            else:  # every input of the shard was skipped: only the manifest (datasets cannot load 0 rows)
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
        with self._writing("the shards' common schema", lambda: _folder_bytes(self.work_dir)):
            return datasets.concatenate_datasets(
                [p if p.features == features else p.cast(features) for p in parts]
            )

    def finish(self, dataset: Any, out: Path, extras: Any) -> Path:
        """Save ``dataset`` and call ``extras(folder)`` under a temporary name, then rename it to ``out``."""
        tmp = self.work_dir / f"{_TMP_PREFIX}final"
        shutil.rmtree(tmp, ignore_errors=True)
        with self._writing("the finished dataset", lambda: _folder_bytes(self.work_dir), tmp):
            dataset.save_to_disk(str(tmp))
            extras(tmp)
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            os.rename(tmp, out)
        shutil.rmtree(self.work_dir)
        return out

    def _space_for_the_rest(self, shard_bytes: int, inputs: int) -> int:
        """About what the rest of the build still writes: this shard, the shards of the inputs not done yet
        (at this shard's size per input), and the finished copy of them all."""
        if self.expected is None or inputs == 0:
            return shard_bytes
        left = max(inputs, self.expected - len(self.manifest()))
        rest = shard_bytes * left // inputs
        return rest + _folder_bytes(self.work_dir) + rest

    @contextlib.contextmanager
    def _writing(self, what: str, needed: Callable[[], int], tmp: Path | None = None) -> Iterator[None]:
        """Turn a failed write (a full disk, or any OSError) into one line naming the folder and the space
        the rest needs (``needed()``, worked out only then); what was half-written under ``tmp`` is removed
        first, so a resume never reads it."""
        try:
            yield
        except OSError as exc:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            free = shutil.disk_usage(_existing(self.work_dir)).free
            reason = exc.strerror or str(exc).splitlines()[0] or type(exc).__name__
            raise UserError(
                f"cannot write {what} in {self.work_dir}: {reason}; the rest of the build needs about "
                f"{size_text(needed())}, {size_text(free)} is free there; free some space and run the same "
                "command with --resume (finished shards are kept)"
            ) from exc


def _payload_bytes(rows: dict[str, list]) -> int:
    """About how many bytes ``rows`` take on disk: the encoded images' bytes, and the rest as JSON."""
    total = 0
    for values in rows.values():
        for value in values:
            if isinstance(value, dict) and isinstance(value.get("bytes"), bytes):
                total += len(value["bytes"])
            elif isinstance(value, bytes):
                total += len(value)
            else:
                total += len(json.dumps(value, default=str))
    return total


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _has_null_column(features: Any) -> bool:
    return any(getattr(feature, "dtype", None) == "null" for feature in features.values())


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
