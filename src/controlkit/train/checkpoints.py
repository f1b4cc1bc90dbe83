"""Resumable checkpoints: where training stands, written atomically, pruned to a limit, found again by name.

A checkpoint is first written to a hidden temporary folder and renamed to ``checkpoint-N`` only when
complete, so a crash while writing never leaves something that resume would pick up. Each holds
accelerate's state (model, optimizer, LR schedule, grad scaler, RNG), the ControlNet in diffusers form,
one safetensors file per process with the trainer's random generator, ``trainer_state.json`` (the
``Position``: global step, epoch and the samples already consumed in that epoch), ``training_settings.json``
(the settings that change what is trained, so a resume with others can say so) and, written last,
``manifest.json`` (every file's size and sha256). The data order is the ``EpochSampler``'s, fixed by
(seed, epoch), so a resumed run reads the rest of its epoch exactly.

A checkpoint that cannot be written (a full disk) stops the run in one line that says how much space it
needs; ``latest`` skips a damaged checkpoint (said in one line, the damaged one set aside as
``checkpoint-N.damaged``) and a damaged checkpoint named explicitly is an error.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from controlkit.console import say, size_text
from controlkit.errors import UserError, first_line
from controlkit.train.manifest import check_checkpoint, checkpoint_size, write_manifest

PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
SETTINGS_FILE = "training_settings.json"
DAMAGED_SUFFIX = ".damaged"
WRITE_ERRORS = (OSError, SafetensorError)
"""What a write that failed raises: safetensors reports a full disk as its own error, not an OSError."""
_TMP_PREFIX = ".tmp-checkpoint-"
_PATTERN = re.compile(rf"^{PREFIX}(\d+)$")


@dataclass
class Position:
    """Where training stands: optimizer steps done, current epoch, samples of it already consumed."""

    global_step: int = 0
    epoch: int = 0
    samples_in_epoch: int = 0


class EpochSampler(torch.utils.data.Sampler):
    """A shuffle fixed by (seed, epoch) that can start part-way, so a resume neither repeats nor skips.

    With ``multiple`` (batch size x processes, under several processes) the epoch is padded to a multiple
    of it with its own first samples, as accelerate pads the last batches, but from the epoch's start:
    accelerate pads from where the iteration began, which after a mid-epoch resume is elsewhere. So every
    process gets full batches and a resumed run reads exactly what an uninterrupted one reads.
    """

    def __init__(self, size: int, seed: int, multiple: int = 1):
        self.size, self.seed, self.multiple, self.epoch, self.start = size, seed, multiple, 0, 0

    @property
    def epoch_length(self) -> int:
        """Samples per epoch, padding included."""
        return self.size + (-self.size) % self.multiple

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        padding = self.epoch_length - self.size
        if padding:
            order = torch.cat([order, order.repeat(math.ceil(padding / self.size))[:padding]])
        yield from order[self.start :].tolist()

    def __len__(self) -> int:
        return self.epoch_length - self.start


def register_hooks(accelerator) -> None:
    """Checkpoints hold the ControlNet in diffusers form (safetensors) instead of a bare state dict."""
    from diffusers import ControlNetModel

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                model.save_pretrained(Path(output_dir) / "controlnet", safe_serialization=True)
                if weights:
                    weights.pop()

    def load_hook(models, input_dir):
        while models:
            model = models.pop()
            loaded = ControlNetModel.from_pretrained(input_dir, subfolder="controlnet", use_safetensors=True)
            model.register_to_config(**loaded.config)
            model.load_state_dict(loaded.state_dict())
            del loaded

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in output_dir, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _PATTERN.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_PATTERN.match(p.name).group(1)))


def resolve_resume(output_dir: str | os.PathLike, value: str) -> Path | None:
    """The checkpoint to resume from; a name or path that does not exist, or is damaged, is an error.

    "latest" with no checkpoint yet starts a fresh run (said in one line), so a preemptible job can always
    pass it; a damaged latest is said in one line, set aside, and the newest complete one is used.
    """
    if value == "latest":
        return _latest_complete(Path(output_dir))
    path = Path(value)
    candidate = path if path.is_absolute() or path.exists() else Path(output_dir) / value
    if not (candidate / STATE_FILE).is_file():
        raise UserError(
            f"checkpoint {value!r} does not exist (looked for {candidate}); "
            f"available: {', '.join(p.name for p in list_checkpoints(output_dir)) or 'none'}"
        )
    problem = check_checkpoint(candidate, STATE_FILE)
    if problem:
        raise UserError(
            f"checkpoint {candidate} is damaged: {problem}; name another one, or pass "
            "--resume_from_checkpoint latest to use the newest complete checkpoint"
        )
    return candidate


def _latest_complete(output_dir: Path) -> Path | None:
    found = list_checkpoints(output_dir)
    if not found:
        say(f"no checkpoint in {output_dir} yet; starting a new training run")
        return None
    damaged = []
    for path in reversed(found):
        problem = check_checkpoint(path, STATE_FILE)
        if problem is None:
            break
        damaged.append((path, problem))
    else:
        raise UserError(
            f"no complete checkpoint in {output_dir} to resume from ("
            + "; ".join(f"{p.name}: {why}" for p, why in damaged)
            + "); remove them to start afresh, or pass --overwrite_output_dir"
        )
    if damaged:
        aside = [_set_aside(p) for p, _ in damaged]
        say(
            f"{damaged[0][0].name} is damaged ({damaged[0][1]}); resuming from {path.name} instead "
            f"(set aside as {', '.join(p.name for p in aside)})"
        )
    return path


def _set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint so that nothing (resume, pruning, eval) takes it for one."""
    target, n = path.with_name(path.name + DAMAGED_SUFFIX), 1
    while target.exists():
        target, n = path.with_name(f"{path.name}{DAMAGED_SUFFIX}-{n}"), n + 1
    os.replace(path, target)
    return target


def recorded_settings(path: Path) -> dict | None:
    """The training settings a checkpoint recorded (None for checkpoints written before they were)."""
    record = path / SETTINGS_FILE
    return json.loads(record.read_text()) if record.is_file() else None


def remove_partial(output_dir: str | os.PathLike) -> None:
    """Delete leftovers of a checkpoint write that crashed."""
    for path in Path(output_dir).glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)


def prune(output_dir: str | os.PathLike, limit: int | None) -> list[Path]:
    """Remove the oldest checkpoints so that at most ``limit`` remain.

    Called right after a new checkpoint is in place (not before writing it), so a crash while writing
    never costs the last good checkpoint, even with a limit of 1.
    """
    if limit is None:
        return []
    found = list_checkpoints(output_dir)
    doomed = found[: max(0, len(found) - limit)]
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def save_checkpoint(
    accelerator,
    output_dir: str | os.PathLike,
    position: Position,
    generator,
    limit: int | None = None,
    settings: dict | None = None,
    expected_bytes: int = 0,
) -> Path:
    """Write checkpoint-<global step> atomically on every process; returns its final path.

    A write that fails (a full disk, any OSError) removes what it wrote and stops in one line naming the
    folder, the space free there and the space a checkpoint takes (the previous one's size, else
    ``expected_bytes``).
    """
    output_dir = Path(output_dir)
    final = output_dir / f"{PREFIX}{position.global_step}"
    tmp = output_dir / f"{_TMP_PREFIX}{position.global_step}"
    try:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        save_file(
            {"state": generator.get_state().cpu()}, tmp / f"generator_{accelerator.process_index}.safetensors"
        )
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps(dataclasses.asdict(position), indent=2) + "\n")
            if settings is not None:
                (tmp / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n")
            write_manifest(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
    except WRITE_ERRORS as exc:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = list_checkpoints(output_dir)
        needed = checkpoint_size(previous[-1]) if previous else expected_bytes
        raise UserError(write_error(output_dir, final.name, exc, needed)) from exc
    if accelerator.is_main_process:
        prune(output_dir, limit)
    accelerator.wait_for_everyone()
    return final


def write_error(output_dir: Path, what: str, exc: Exception, needed_bytes: int) -> str:
    """One line for a write that failed: where, why, the space free and needed, how to continue."""
    try:
        free = f"{size_text(shutil.disk_usage(output_dir).free)} free there"
    except OSError:
        free = "free space unknown"
    previous = list_checkpoints(output_dir)
    resumes = f"it continues from {previous[-1].name}" if previous else "no checkpoint yet: it starts again"
    why = getattr(exc, "strerror", None) or first_line(exc)
    return (
        f"cannot write {what} in {output_dir}: {why} ({free}, about {size_text(needed_bytes)} needed); "
        "free some space (or lower --checkpoints_total_limit) and run the same command with "
        f"--resume_from_checkpoint latest ({resumes})"
    )


def expected_checkpoint_bytes(model) -> int:
    """A checkpoint's size before the first one exists: the weights and Adam's two moments in fp32."""
    return 3 * sum(p.numel() * 4 for p in model.parameters())


def load_checkpoint(accelerator, path: Path, generator, epoch_size: int) -> Position:
    """Restore everything save_checkpoint wrote; returns where training continues (the next epoch's start
    when the checkpoint closed an epoch of ``epoch_size`` samples)."""
    accelerator.load_state(str(path))
    own = path / f"generator_{accelerator.process_index}.safetensors"
    if not own.is_file():
        raise UserError(f"{path} was written by fewer processes; resume with the same number of processes")
    generator.set_state(load_file(own)["state"].to(torch.uint8))
    position = Position(**json.loads((path / STATE_FILE).read_text()))
    if position.samples_in_epoch >= epoch_size:
        return Position(position.global_step, position.epoch + 1, 0)
    return position
