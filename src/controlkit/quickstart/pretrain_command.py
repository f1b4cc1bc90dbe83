"""Train the small demo base (UNet, VAE, text encoder, tokenizer, scheduler) on synthetic faces (CPU or GPU).

Resumable: run the same command again to continue from the last checkpoint in the work folder. It stops on its
time budget, saves, and writes the EMA pipeline with PROVENANCE.json, README.md, samples.png and the loss log.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import fields
from pathlib import Path


def _channels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from controlkit.quickstart.config import PretrainConfig

    defaults = {f.name: f.default for f in fields(PretrainConfig) if f.name != "command"}
    add = parser.add_argument
    add("--out", type=Path, default=defaults["out"], help="where the pipeline is written (diffusers layout)")
    add("--work-dir", type=Path, help="checkpoints, cached faces and the loss log (default: OUT-work)")
    add("--images", type=int, default=defaults["images"], help="number of synthetic training faces")
    add("--resolution", type=int, default=defaults["resolution"], help="image size in pixels (multiple of 8)")
    add(
        "--render-size",
        type=int,
        default=defaults["render_size"],
        help="faces are drawn at this size, then reduced",
    )
    add(
        "--seed",
        type=int,
        default=defaults["seed"],
        help="seed of the faces and the weights (default: %(default)s)",
    )
    add(
        "--unet-channels",
        type=_channels,
        default=defaults["unet_channels"],
        help="UNet block widths, e.g. 32,64,64",
    )
    add(
        "--vae-channels",
        type=_channels,
        default=defaults["vae_channels"],
        help="3 VAE block widths (4x downsampling) or 4 (8x, as SD's VAE)",
    )
    add("--text-hidden-size", type=int, default=defaults["text_hidden_size"], help="CLIP text encoder width")
    add("--vae-steps", type=int, default=defaults["vae_steps"], help="VAE training steps (at most)")
    add("--vae-minutes", type=float, default=defaults["vae_minutes"], help="VAE training time cap in minutes")
    add("--vae-batch-size", type=int, default=defaults["vae_batch_size"], help="VAE batch size")
    add(
        "--vae-crop",
        type=int,
        default=defaults["vae_crop"],
        help="the VAE trains on random crops of this size",
    )
    add("--vae-lr", type=float, default=defaults["vae_lr"], help="VAE learning rate (AdamW)")
    add(
        "--kl-weight",
        type=float,
        default=defaults["kl_weight"],
        help="weight of the KL term per latent value",
    )
    add("--unet-steps", type=int, default=defaults["unet_steps"], help="UNet training steps (at most)")
    add("--batch-size", type=int, default=defaults["batch_size"], help="UNet batch size")
    add(
        "--lr",
        type=float,
        default=defaults["lr"],
        help="UNet learning rate (AdamW, linear warm-up, then constant)",
    )
    add("--warmup-steps", type=int, default=defaults["warmup_steps"], help="UNet learning-rate warm-up steps")
    add(
        "--caption-dropout",
        type=float,
        default=defaults["caption_dropout"],
        help="empty-prompt rate (for CFG)",
    )
    add("--snr-gamma", type=float, default=defaults["snr_gamma"], help="min-SNR loss weighting gamma")
    add(
        "--ema-max-decay",
        type=float,
        default=defaults["ema_max_decay"],
        help="upper bound of the UNet weights' EMA decay",
    )
    add(
        "--time-budget-minutes",
        type=float,
        default=defaults["time_budget_minutes"],
        help="stop and save after this much wall time in all (resumed runs count earlier time)",
    )
    add(
        "--checkpoint-minutes",
        type=float,
        default=defaults["checkpoint_minutes"],
        help="checkpoint + export period",
    )
    add(
        "--threads",
        type=int,
        default=defaults["threads"],
        help="torch CPU threads (1 is fastest on a busy machine: OpenMP spins)",
    )
    add(
        "--finetune-decoder-minutes",
        type=float,
        help="instead of pretraining: fine-tune the decoder of a finished VAE phase this long (encoder"
        " frozen), then write it into OUT (run it again after the main run if OUT was still being written)",
    )
    add(
        "--device",
        default=defaults["device"],
        help="cpu, cuda, cuda:N or auto (the GPU when there is one; default: %(default)s)",
    )
    add("--sample-steps", type=int, default=defaults["sample_steps"], help="DDIM steps for samples.png")


def _command(options: dict) -> str:
    """The command line that makes this run again: every setting that differs from its default."""
    from controlkit.quickstart.config import PretrainConfig

    defaults = {f.name: f.default for f in fields(PretrainConfig)}
    words = ["controlkit", "pretrain-demo-base", "--out", str(options["out"])]
    for name, value in options.items():
        if name != "out" and value is not None and value != defaults.get(name):
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            words += [f"--{name.replace('_', '-')}", text]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from controlkit.quickstart.config import PretrainConfig
    from controlkit.quickstart.pretrain import pretrain

    names = {f.name for f in fields(PretrainConfig)} - {"command"}
    options = {k: v for k, v in vars(args).items() if k in names}
    config = PretrainConfig(**options, command=_command(options))
    if args.finetune_decoder_minutes:
        from controlkit.quickstart.pretrain import finetune_decoder

        config.command += f" --finetune-decoder-minutes {args.finetune_decoder_minutes:g}"
        print(f"decoder fine-tuned: {finetune_decoder(config, args.finetune_decoder_minutes)}")
        return 0
    out = pretrain(config)
    if (out / "model_index.json").is_file():
        print(f"demo base written to {out} (provenance: {out / 'PROVENANCE.json'})")
    return 0
