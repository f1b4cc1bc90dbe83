"""The settings of quickstart's stages as plain dataclasses, importable without torch (the CLI reads them)."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from controlkit.errors import UserError


@dataclass
class PretrainConfig:
    """Settings of one pretraining run; the defaults are the ones used for the shipped demo base."""

    out: Path = Path("demo_base")
    work_dir: Path | None = None
    images: int = 10000
    resolution: int = 64
    render_size: int = 128
    seed: int = 0
    unet_channels: tuple[int, ...] = (32, 64, 64)
    vae_channels: tuple[int, ...] = (32, 64, 64)
    text_hidden_size: int = 64
    vae_steps: int = 1_000_000
    vae_minutes: float = 1.5
    vae_batch_size: int = 64
    vae_crop: int = 64
    vae_lr: float = 2e-3
    kl_weight: float = 2e-5
    unet_steps: int = 1_000_000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 200
    caption_dropout: float = 0.1
    snr_gamma: float = 5.0
    ema_max_decay: float = 0.999
    time_budget_minutes: float = 11.0
    checkpoint_minutes: float = 2.5
    threads: int = 1
    sample_steps: int = 25
    device: str = "auto"
    command: str = field(default_factory=lambda: shlex.join(["controlkit", *sys.argv[1:]]))

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.work_dir = Path(self.work_dir) if self.work_dir else self.out.with_name(self.out.name + "-work")
        if self.resolution % 8:
            raise UserError(f"--resolution must be a multiple of 8, got {self.resolution}")
        if len(self.vae_channels) not in (3, 4):
            raise UserError("--vae-channels needs 3 values (4x downsampling) or 4 (8x, as SD's VAE)")
        if self.vae_crop > self.resolution or self.vae_crop % 8:
            raise UserError(f"--vae-crop must be a multiple of 8, at most --resolution; got {self.vae_crop}")


DEMO_BASE = Path(__file__).parent / "demo_base"


@dataclass
class QuickstartConfig:
    """Settings of `controlkit quickstart`; the defaults finish in under 10 minutes on 2 CPU cores."""

    out: Path = Path("quickstart-out")
    images: int = 1000
    steps: int = 800
    batch_size: int = 8
    learning_rate: float = 3e-3
    empty_prompts: float = 0.5
    validation_every: int = 200
    validation_faces: int = 4
    eval_faces: int = 8
    eval_steps: int = 12
    guidance: float = 3.0
    base: str = str(DEMO_BASE)
    seed: int = 0
    threads: int | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if min(self.images, self.steps, self.batch_size, self.validation_every) < 1:
            raise UserError("--images, --steps, --batch-size and --validation-every must be at least 1")
        if self.eval_faces < 2:
            raise UserError("--eval-faces must be at least 2 (the shuffled test swaps conditionings)")
