"""Train the small demo base (UNet, VAE, text encoder, tokenizer, scheduler) on synthetic faces (CPU or GPU).

Resumable: run the same command again to continue from the last checkpoint in the work folder. It stops on its
time budget, saves, and writes the EMA pipeline with PROVENANCE.json, README.md, samples.png and the loss log.
"""

from __future__ import annotations

import argparse

from controlkit import flags
from controlkit.pretrain.config import PretrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_arguments(parser, PretrainConfig)


def run(args: argparse.Namespace) -> int:
    from controlkit.pretrain.demo_base import finetune_decoder, pretrain

    config = flags.from_namespace(PretrainConfig, args)
    if config.finetune_decoder_minutes:
        print(f"decoder fine-tuned: {finetune_decoder(config)}")
        return 0
    out = pretrain(config)
    if (out / "model_index.json").is_file():
        print(f"demo base written to {out} (provenance: {out / 'PROVENANCE.json'})")
    return 0
