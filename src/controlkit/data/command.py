"""Build a paired dataset (photo, conditioning image, caption) for ControlNet training.

Example: controlkit data build --source photos/ --condition face-landmarks --captioner blip --out faces-ds
"""

from __future__ import annotations

import argparse

from controlkit import flags
from controlkit.data.config import BuildConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="build a paired dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flags.add_arguments(build, BuildConfig)
    build.set_defaults(_prog=build.prog)


def run(args: argparse.Namespace) -> int:
    from controlkit.data.build import build_dataset

    report = build_dataset(flags.from_namespace(BuildConfig, args))
    print(report.out)
    return 0
