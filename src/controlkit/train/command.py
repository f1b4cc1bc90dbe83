"""Train a ControlNet on a Stable Diffusion 1.x/2.x base model.

The flags are those of the diffusers ControlNet example (train_controlnet.py), with the same names and
defaults, so its command lines run unchanged; --config FILE (YAML or TOML) may hold the same keys, and
flags given here override it. Several GPUs: `accelerate launch -m controlkit train ...`.
"""

from __future__ import annotations

import argparse

from controlkit.console import is_main_process
from controlkit.train.config import TrainConfig, add_arguments

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    from controlkit.train.trainer import train

    output_dir = train(TrainConfig.from_namespace(args))
    if is_main_process():
        print(f"ControlNet saved in {output_dir}")
    return 0
