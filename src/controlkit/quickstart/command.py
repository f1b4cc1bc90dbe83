"""Every stage of controlkit on the embedded default (synthetic faces, the shipped demo base), on a CPU.

Builds a face-landmarks dataset from synthetic faces, trains a ControlNet on the small pretrained demo base
with validation on held-out faces, evaluates every checkpoint (`controlkit eval`: does it follow the
landmarks?) and writes OUT/report.html.
"""

from __future__ import annotations

import argparse

from controlkit import flags
from controlkit.quickstart.config import QuickstartConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_arguments(parser, QuickstartConfig)


def run(args: argparse.Namespace) -> int:
    from controlkit.eval.report import text_table
    from controlkit.quickstart.run import run_quickstart

    result = run_quickstart(flags.from_namespace(QuickstartConfig, args))
    print(f"report: {result.report}")
    for line in text_table(result.evaluation):
        print(f"  {line}")
    return 0
