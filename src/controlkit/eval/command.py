"""Does the ControlNet follow its condition, does it still follow the prompt, and which checkpoint to keep?

Generates from held-out samples, for every checkpoint of a training run: with the right conditioning
(matched), with other samples' conditionings (shuffled), with forgetting-probe prompts (off-domain), and
once with the ControlNet off; scores adherence with the condition and, given a CLIP model (--clip), prompt
fidelity relative to the base model. Picks a checkpoint by a stated rule and writes OUT/best/ (a ControlNet
generate and app load), OUT/eval.json and OUT/report.html. An interrupted run continues where it stopped
(SIGTERM or Ctrl-C keeps the checkpoints finished and exits with code 75). Several processes:
`accelerate launch -m controlkit eval ...`.
"""

from __future__ import annotations

import argparse

from controlkit import flags
from controlkit.eval.config import EvalConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_arguments(parser, EvalConfig)


def run(args: argparse.Namespace) -> int:
    from controlkit.console import say
    from controlkit.eval.report import text_table
    from controlkit.eval.run import evaluate
    from controlkit.stopping import graceful_stop

    config = flags.from_namespace(EvalConfig, args)
    with graceful_stop() as stop:
        report = evaluate(config, stop)
    for line in text_table(report.summary):
        say(line)
    say(f"report: {report.report}" + (f"; best checkpoint: {report.best}" if report.best else ""))
    return 0
