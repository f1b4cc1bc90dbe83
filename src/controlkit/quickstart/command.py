"""Every stage of controlkit on the embedded default (synthetic faces, the shipped demo base), on a CPU.

Builds a face-landmarks dataset from synthetic faces, trains a ControlNet on the small pretrained demo base
with validation on held-out faces, measures whether it follows the landmarks, and writes OUT/report.html.
"""

from __future__ import annotations

import argparse

from controlkit import flags
from controlkit.quickstart.config import QuickstartConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_arguments(parser, QuickstartConfig)


def run(args: argparse.Namespace) -> int:
    from controlkit.quickstart.run import run_quickstart

    result = run_quickstart(flags.from_namespace(QuickstartConfig, args))
    control = result.control
    print(f"report: {result.report}")
    for case in ("matched", "shuffled", "disabled"):
        print(f"  {case:9s} landmark error / inter-ocular = {control[case]['point_error']:.3f}")
    return 0
