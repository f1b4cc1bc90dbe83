"""The flags `controlkit generate` and `controlkit app` share: which ControlNet, on which base, where."""

from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--controlnet, --base, --condition and --device, with the same help in both commands."""
    parser.add_argument(
        "--controlnet", required=True, help="a ControlNet folder from `controlkit train`, or a Hub id"
    )
    parser.add_argument(
        "--base",
        default=None,
        help="base Stable Diffusion model (default: the one the ControlNet was trained on)",
    )
    parser.add_argument(
        "--condition", default=None, help="condition to annotate photos with (default: the ControlNet's own)"
    )
    parser.add_argument(
        "--device", default=None, help="cuda, cuda:1, mps or cpu (default: the best available)"
    )
