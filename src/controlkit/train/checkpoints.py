"""Resumable checkpoints: where training stands, written atomically, pruned to a limit, found again by name.

A checkpoint is first written to a hidden temporary folder and renamed to ``checkpoint-N`` only when
complete, so a crash while writing never leaves something that resume would pick up. Each holds
accelerate's state (model, optimizer, LR schedule, grad scaler, RNG), the ControlNet in diffusers form,
one safetensors file per process with the trainer's random generator, and ``trainer_state.json``
(the ``Position``: global step, epoch and the samples already consumed in that epoch). The data order
is the ``EpochSampler``'s, fixed by (seed, epoch), so a resumed run reads the rest of its epoch exactly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from controlkit.console import say
from controlkit.errors import UserError

PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
_TMP_PREFIX = ".tmp-checkpoint-"
_PATTERN = re.compile(rf"^{PREFIX}(\d+)$")


@dataclass
class Position:
    """Where training stands: optimizer steps done, current epoch, samples of it already consumed."""

    global_step: int = 0
    epoch: int = 0
    samples_in_epoch: int = 0


class EpochSampler(torch.utils.data.Sampler):
    """A shuffle fixed by (seed, epoch) that can start part-way, so a resume neither repeats nor skips."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch, self.start = size, seed, 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        yield from order[self.start :].tolist()

    def __len__(self) -> int:
        return self.size - self.start


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
    """The checkpoint to resume from; a name or path that does not exist is an error.

    "latest" with no checkpoint yet starts a fresh run (said in one line), so a preemptible job can always
    pass it.
    """
    if value == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            say(f"no checkpoint in {output_dir} yet; starting a new training run")
            return None
        return found[-1]
    path = Path(value)
    candidate = path if path.is_absolute() or path.exists() else Path(output_dir) / value
    if not (candidate / STATE_FILE).is_file():
        raise UserError(
            f"checkpoint {value!r} does not exist (looked for {candidate}); "
            f"available: {', '.join(p.name for p in list_checkpoints(output_dir)) or 'none'}"
        )
    return candidate


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
    accelerator, output_dir: str | os.PathLike, position: Position, generator, limit: int | None = None
) -> Path:
    """Write checkpoint-<global step> atomically on every process; returns its final path."""
    output_dir = Path(output_dir)
    final = output_dir / f"{PREFIX}{position.global_step}"
    tmp = output_dir / f"{_TMP_PREFIX}{position.global_step}"
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
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        prune(output_dir, limit)
    accelerator.wait_for_everyone()
    return final


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
