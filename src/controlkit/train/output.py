"""The output folder of a training run: writable, held by one run at a time, never mixed with another run.

Two runs writing one folder corrupt each other (interleaved metrics, pruned checkpoints), so the main
process holds a lock on it for the whole run (a second run is refused naming the process). A new run
(no ``--resume_from_checkpoint``) into a folder that holds another run's checkpoints, metrics, validation
grids or model is refused in one line, because its metrics would append to the old ones, its checkpoint
limit would prune its own checkpoints first, and a later ``latest`` would resume the old run;
``--overwrite_output_dir`` clears what a run writes there (and nothing else) before starting.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from controlkit.console import say
from controlkit.errors import UserError
from controlkit.locks import LOCK_FILE, FolderLock
from controlkit.train.agreement import decided_by_main
from controlkit.train.checkpoints import PREFIX
from controlkit.train.config import CONFIG_FILE_NAME, TrainConfig
from controlkit.train.metrics import METRICS_FILE

_RUN_FILES = (METRICS_FILE, "validation", "diffusion_pytorch_model.safetensors", "controlkit.json")
"""What shows that a run trained here (the final ControlNet is the last two)."""
_CLEARED_FILES = (*_RUN_FILES, "config.json", "README.md", CONFIG_FILE_NAME)


def prepare_output_dir(path: str) -> Path:
    """Create output_dir and prove it is writable, or say in one line why not."""
    output_dir = Path(path)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to output_dir {output_dir}: {exc.strerror or exc}") from exc
    return output_dir


def _checkpoint_folders(output_dir: Path) -> list[Path]:
    """Checkpoints, complete or not, the leftovers of a crashed write, those set aside as damaged."""
    return sorted(
        p for p in output_dir.iterdir() if p.is_dir() and (p.name.startswith((PREFIX, f".tmp-{PREFIX}")))
    )


def previous_run(output_dir: Path) -> list[str]:
    """The names of what another run left in output_dir (empty when nothing)."""
    found = [p.name for p in _checkpoint_folders(output_dir)]
    return found + [name for name in _RUN_FILES if (output_dir / name).exists()]


def clear_previous_run(output_dir: Path, logging_dir: str) -> list[str]:
    """Remove what a run writes in output_dir (checkpoints, metrics, grids, model, card, tracker logs)."""
    doomed = _checkpoint_folders(output_dir) + [output_dir / name for name in _CLEARED_FILES]
    logs = output_dir / logging_dir
    if logs.resolve().is_relative_to(output_dir.resolve()) and logs.resolve() != output_dir.resolve():
        doomed.append(logs)
    removed = []
    for path in doomed:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path.name)
    return removed


def _refuse_mixing(output_dir: Path, config: TrainConfig) -> None:
    """A new run into a used folder: refused, or (with --overwrite_output_dir) the old run cleared."""
    found = previous_run(output_dir)
    if not found:
        return
    if not config.overwrite_output_dir:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise UserError(
            f"output_dir {output_dir} holds another training run ({shown}); continue it with "
            "--resume_from_checkpoint latest, replace it with --overwrite_output_dir, or choose another "
            "--output_dir"
        )
    removed = clear_previous_run(output_dir, config.logging_dir)
    say(f"--overwrite_output_dir: removed the previous run's {', '.join(removed)} from {output_dir}")


@contextmanager
def claim_output_dir(config: TrainConfig, output_dir: Path, accelerator) -> Iterator[None]:
    """Hold output_dir for the block (the main process's lock, released at the end and on errors), after
    refusing a new run into a folder that holds another one, or clearing it with --overwrite_output_dir;
    a refusal stops every process with the same line."""
    lock = FolderLock(output_dir / LOCK_FILE, f"output_dir {output_dir}")

    def claim() -> None:
        lock.acquire()
        try:
            if config.resume_from_checkpoint is None:
                _refuse_mixing(output_dir, config)
        except UserError:
            lock.release()
            raise

    decided_by_main(accelerator, claim)
    try:
        yield
    finally:
        lock.release()
