"""One writer per output folder: a lock file naming the process that holds it.

Two runs writing the same folder corrupt each other silently (interleaved metrics, pruned checkpoints,
mixed shards). The lock is a small JSON file created atomically; a run that finds one held by a live
process on this machine stops in one line naming it. A lock left by a crashed run (its process is gone)
is taken over, so kill -9 never leaves a folder stuck.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from types import TracebackType

from controlkit.errors import UserError

LOCK_FILE = ".controlkit.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return not _exited(pid)


def _exited(pid: int) -> bool:
    """Whether the process has exited and waits to be reaped (a zombie: killed with its parent, it lingers
    until init reaps it, and signal 0 still reaches it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS) or already gone
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] in (["Z"], ["X"])


class FolderLock:
    """``with FolderLock(path, what):`` holds ``path`` (a lock file) for the block, or raises UserError."""

    def __init__(self, path: str | os.PathLike, what: str):
        self.path, self.what = Path(path), what
        self.held = False

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder and holder.get("host") == record["host"] and _alive(int(holder.get("pid", -1))):
                    raise UserError(
                        f"{self.what} is in use by process {holder['pid']} ({holder.get('command', '?')}); "
                        f"wait for it to finish or stop it (lock: {self.path})"
                    ) from None
                if holder and holder.get("host") != record["host"]:
                    raise UserError(
                        f"{self.what} is in use by process {holder.get('pid')} on {holder.get('host')}; "
                        f"if that run is over, delete {self.path}"
                    ) from None
                self.path.unlink(missing_ok=True)  # left by a run that is gone
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            self.held = True
            return
        raise UserError(f"cannot take the lock {self.path}; another run is starting in {self.what}")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
