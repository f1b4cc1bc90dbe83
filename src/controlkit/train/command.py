"""Train a ControlNet on a Stable Diffusion 1.x/2.x base model.

The flags are those of the diffusers ControlNet example (train_controlnet.py), with the same names and
defaults, so its command lines run unchanged; --config FILE (YAML or TOML) may hold the same keys, and
flags given here override it. Several GPUs: `accelerate launch -m controlkit train ...`.

SIGTERM or Ctrl-C saves a checkpoint after the step in hand (on a GPU, at the next read of the loss) and
exits with code 75 (a second one stops at once); run the same command with --resume_from_checkpoint latest
to continue.
"""

from __future__ import annotations

import argparse

from controlkit.console import is_main_process
from controlkit.train.config import TrainConfig, add_arguments

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    from controlkit.stopping import graceful_stop
    from controlkit.train.trainer import train

    config = TrainConfig.from_namespace(args)
    with graceful_stop() as stop:
        output_dir = train(config, stop)
    if is_main_process():
        print(f"ControlNet saved in {output_dir}")
    return 0
