"""The settings of `controlkit pretrain-demo-base`, importable without torch (its flags come from here)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from controlkit import flags
from controlkit.errors import UserError
from controlkit.flags import option


@dataclass
class PretrainConfig:
    """Settings of one pretraining run; the defaults are the ones used for the shipped demo base."""

    out: Path = option(Path("demo_base"), "where the pipeline is written (diffusers layout)")
    work_dir: Path | None = option(None, "checkpoints, cached faces and the loss log (default: OUT-work)")
    images: int = option(10000, "number of synthetic training faces")
    resolution: int = option(64, "image size in pixels (multiple of 8)")
    render_size: int = option(128, "faces are drawn at this size, then reduced")
    seed: int = option(0, "seed of the faces and the weights")
    unet_channels: tuple[int, ...] = option((32, 64, 64), "UNet block widths, e.g. 32,64,64")
    vae_channels: tuple[int, ...] = option(
        (32, 64, 64), "3 VAE block widths (4x downsampling) or 4 (8x, as SD's VAE)"
    )
    text_hidden_size: int = option(64, "CLIP text encoder width")
    vae_steps: int = option(1_000_000, "VAE training steps (at most)")
    vae_minutes: float = option(1.5, "VAE training time cap in minutes")
    vae_batch_size: int = option(64, "VAE batch size")
    vae_crop: int = option(64, "the VAE trains on random crops of this size")
    vae_lr: float = option(2e-3, "VAE learning rate (AdamW)")
    kl_weight: float = option(2e-5, "weight of the KL term per latent value")
    unet_steps: int = option(1_000_000, "UNet training steps (at most)")
    batch_size: int = option(128, "UNet batch size")
    lr: float = option(1e-3, "UNet learning rate (AdamW, linear warm-up, then constant)")
    warmup_steps: int = option(200, "UNet learning-rate warm-up steps")
    caption_dropout: float = option(0.1, "empty-prompt rate (for CFG)")
    snr_gamma: float = option(5.0, "min-SNR loss weighting gamma")
    ema_max_decay: float = option(0.999, "upper bound of the UNet weights' EMA decay")
    time_budget_minutes: float = option(
        11.0, "stop and save after this much wall time in all (resumed runs count earlier time)"
    )
    checkpoint_minutes: float = option(2.5, "checkpoint + export period")
    threads: int = option(1, "torch CPU threads (1 is fastest on a busy machine: OpenMP spins)")
    finetune_decoder_minutes: float | None = option(
        None,
        "instead of pretraining: fine-tune the decoder of a finished VAE phase this long (encoder frozen),"
        " then write it into OUT (run it again after the main run if OUT was still being written)",
    )
    device: str = option("auto", "cpu, cuda, cuda:N or auto (the GPU when there is one)")
    sample_steps: int = option(25, "DDIM steps for samples.png")
    command: str = option(
        "",
        "the command line recorded in PROVENANCE.json (default: the one that remakes these settings)",
        hidden=True,
    )

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.command = self.command or self.command_line()
        self.work_dir = Path(self.work_dir) if self.work_dir else self.out.with_name(self.out.name + "-work")
        if self.resolution % 8:
            raise UserError(f"--resolution must be a multiple of 8, got {self.resolution}")
        if len(self.vae_channels) not in (3, 4):
            raise UserError("--vae-channels needs 3 values (4x downsampling) or 4 (8x, as SD's VAE)")
        if self.vae_crop > self.resolution or self.vae_crop % 8:
            raise UserError(f"--vae-crop must be a multiple of 8, at most --resolution; got {self.vae_crop}")

    def command_line(self) -> str:
        """The command line that makes this run again: --out and every flag that differs from its default."""
        words = ["controlkit", "pretrain-demo-base", "--out", str(self.out)]
        for f in flags.flag_fields(PretrainConfig):
            value = getattr(self, f.name)
            if f.name != "out" and value is not None and value != f.default:
                text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
                words += [flags.flag_name(f, underscores=False), text]
        return shlex.join(words)
