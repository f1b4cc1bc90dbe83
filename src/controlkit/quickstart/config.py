"""The settings of `controlkit quickstart`, importable without torch (its flags come from here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controlkit.errors import UserError
from controlkit.flags import option

DEMO_BASE = Path(__file__).parent / "demo_base"
"""The small pretrained base quickstart ships (remade by `controlkit pretrain-demo-base`)."""


@dataclass
class QuickstartConfig:
    """Settings of `controlkit quickstart`; the defaults finish in under 10 minutes on 2 CPU cores."""

    out: Path = option(Path("quickstart-out"), "output folder")
    images: int = option(1000, "synthetic faces in the dataset")
    steps: int = option(800, "ControlNet training steps")
    batch_size: int = option(8, "training batch size")
    learning_rate: float = option(
        3e-3, "the ControlNet's learning rate, decayed to 0 over --steps by a cosine"
    )
    empty_prompts: float = option(
        0.5, "share of empty captions, so the ControlNet must read the condition (ControlNet paper: 50%)"
    )
    validation_every: int = option(200, "checkpoint (evaluated afterwards) and validation grid every N steps")
    validation_faces: int = option(4, "held-out faces in the grids")
    eval_faces: int = option(16, "held-out faces `controlkit eval` measures every checkpoint on")
    eval_steps: int = option(12, "sampling steps when evaluating")
    guidance: float = option(3.0, "classifier-free guidance when measuring")
    base: str | None = option(None, "the base model (default: the shipped demo base)")
    seed: int = option(0, "seed of the faces, the split and training")
    threads: int | None = option(None, "torch CPU threads (default: 1 on a busy machine, else every core)")
    overwrite: bool = option(False, "replace a non-empty --out")

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.base = str(self.base or DEMO_BASE)
        if min(self.images, self.steps, self.batch_size, self.validation_every) < 1:
            raise UserError("--images, --steps, --batch-size and --validation-every must be at least 1")
        if self.eval_faces < 2:
            raise UserError("--eval-faces must be at least 2 (the shuffled test swaps conditionings)")
