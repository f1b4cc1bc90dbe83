"""The settings of `controlkit eval`, importable without torch (its flags come from here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlkit.errors import UserError
from controlkit.flags import option

OFF_DOMAIN_PROMPTS = (
    "Shrek, a green cartoon ogre",
    "a photo of a cat",
    "an oil painting of a bowl of fruit",
    "pixel art of a castle, 8-bit video game",
    "a marble statue in a museum",
)
"""The forgetting probe's prompts, far from a face dataset's captions (the walkthrough's overfit ControlNet
drew human faces for "Shrek" and "a cat"); ``--off-domain-prompts FILE`` replaces them."""
FIDELITY_FLOOR = 0.9
"""The pick keeps checkpoints whose off-domain prompt fidelity is at least this share of the base model's."""


def read_prompts(path: str | Path | None, what: str) -> list[str] | None:
    """The non-empty lines of a prompts file (None without a file); a missing or empty file is one line."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
        raise UserError(f"{what} file {path} holds no prompt (one prompt per line)")
    return prompts


@dataclass
class EvalConfig:
    """What `controlkit eval` measures, on what, and where it writes; each field is the flag of its name."""

    controlnet: str = option(
        help="a `controlkit train` output folder (its checkpoint-N/ folders and final model), a ControlNet "
        "folder or a Hub id"
    )
    checkpoints: str = option(
        "all",
        "which to evaluate: all, latest (the final model), or names: checkpoint-200,checkpoint-400,final",
    )
    dataset: str | None = option(
        None, "held-out data: a dataset folder or Hub id (default: the one the ControlNet was trained on)"
    )
    num: int = option(
        32, "held-out samples: the first N rows training left out, or N rows of another --dataset by --seed"
    )
    held_out: int | None = option(
        None,
        "instead, N rows of --dataset chosen by --seed (needed when training used every row of it; such rows "
        "were trained on unless --dataset is another split)",
        metavar="N",
    )
    prompts: Path | None = option(None, "a file of prompts (one per line) in place of the dataset's captions")
    off_domain_prompts: Path | None = option(
        None,
        "a file of forgetting-probe prompts (one per line) in place of the defaults (an ogre, a cat, ...)",
    )
    clip: str | None = option(
        None,
        "a CLIP model (Hub id or folder, safetensors) for prompt fidelity; without it, adherence only",
    )
    condition: str | None = option(
        None, "the condition that scores adherence (default: the dataset's, else the ControlNet's)"
    )
    condition_options: dict[str, Any] = option({}, "the condition's options as JSON", metavar="JSON")
    out: Path | None = option(None, "where eval.json, report.html and best/ go (default: CONTROLNET/eval)")
    steps: int = option(20, "denoising steps per image (UniPC)")
    guidance: float = option(7.5, "classifier-free guidance scale")
    seed: int = option(0, "seed of the held-out draw; image i of every case uses seed + i")
    batch_size: int = option(8, "images per pipeline call")
    fidelity_floor: float = option(
        FIDELITY_FLOOR,
        "the pick: the best adherence among checkpoints whose off-domain fidelity is at least this share of "
        "the base model's",
    )
    grid_rows: int = option(4, "held-out samples shown in each checkpoint's grid")
    base: str | None = option(None, "the base model (default: the one the ControlNet was trained on)")
    device: str | None = option(None, "cuda, cuda:1, mps or cpu (default: the best available)")
    overwrite: bool = option(
        False, "start again: drop the per-checkpoint results an earlier run left in --out (kept by default)"
    )

    def __post_init__(self) -> None:
        self.out = Path(self.out) if self.out is not None else None
        if min(self.num, self.steps, self.batch_size) < 1 or (
            self.held_out is not None and self.held_out < 1
        ):
            raise UserError("--num, --held-out, --steps and --batch-size must be at least 1")
        if not 0 < self.fidelity_floor <= 1:
            raise UserError(f"--fidelity-floor must be in (0, 1], got {self.fidelity_floor}")
        if self.grid_rows < 0:
            raise UserError("--grid-rows must be 0 or more")

    @property
    def samples(self) -> int:
        """How many held-out samples are asked for."""
        return self.held_out or self.num
