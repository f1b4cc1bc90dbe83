"""Build a paired dataset (photo, conditioning image, caption) for ControlNet training, or repaint one.

Examples:
  controlkit data build --source photos/ --condition face-landmarks --captioner blip --out faces-ds
  controlkit data realify --dataset synth-ds --base stabilityai/stable-diffusion-2-1-base --strength 0.45 \\
    --prompt "{text}, professional photograph, natural skin" --threshold 0.08 --out real-ds
"""

from __future__ import annotations

import argparse
import textwrap

from controlkit import flags
from controlkit.data.config import BuildConfig
from controlkit.data.realify_config import RealifyConfig

ACTIONS = {
    "build": (
        BuildConfig,
        "build a paired dataset",
        "Build a paired dataset (photo, conditioning image, caption) for ControlNet training.",
        "controlkit data build --source photos/ --condition face-landmarks --captioner blip --out faces-ds",
    ),
    "realify": (
        RealifyConfig,
        "repaint a dataset with img2img, keep the rows whose annotation survived",
        "Repaint every picture of a dataset with Stable Diffusion img2img (ControlNet img2img with "
        "--controlnet), read each repainted picture again with the dataset's condition, and keep the rows "
        "that still follow their annotation.",
        "controlkit data realify --dataset synth-ds --base stabilityai/stable-diffusion-2-1-base \\\n"
        '    --strength 0.45 --prompt "{text}, professional photograph, natural skin" --threshold 0.08 \\\n'
        "    --out real-ds",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    for name, (config, summary, description, example) in ACTIONS.items():
        action = actions.add_parser(
            name,
            help=summary,
            description=f"{textwrap.fill(description, 100)}\n\nExample:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        flags.add_arguments(action, config)
        action.set_defaults(_prog=action.prog)


def run(args: argparse.Namespace) -> int:
    if args.data_command == "realify":
        from controlkit.data.realify import realify_dataset

        report = realify_dataset(flags.from_namespace(RealifyConfig, args))
        if report is not None:
            print(report.out)
        return 0
    from controlkit.data.build import build_dataset

    print(build_dataset(flags.from_namespace(BuildConfig, args)).out)
    return 0
