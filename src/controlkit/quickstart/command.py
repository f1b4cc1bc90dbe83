"""Every stage of controlkit on the embedded default (synthetic faces, the shipped demo base), on a CPU.

Builds a face-landmarks dataset from synthetic faces, trains a ControlNet on the small pretrained demo base
with validation on held-out faces, measures whether it follows the landmarks, and writes OUT/report.html.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from controlkit.quickstart.config import QuickstartConfig

    d = {f.name: f.default for f in fields(QuickstartConfig)}
    add = parser.add_argument
    add("--out", type=Path, default=d["out"], help="output folder (default: %(default)s)")
    add(
        "--images",
        type=int,
        default=d["images"],
        help="synthetic faces in the dataset (default: %(default)s)",
    )
    add("--steps", type=int, default=d["steps"], help="ControlNet training steps (default: %(default)s)")
    add("--batch-size", type=int, default=d["batch_size"], help="training batch size (default: %(default)s)")
    add(
        "--learning-rate",
        type=float,
        default=d["learning_rate"],
        help="the ControlNet's learning rate, decayed to 0 over --steps by a cosine (default: %(default)s)",
    )
    add(
        "--empty-prompts",
        type=float,
        default=d["empty_prompts"],
        help="share of empty captions, so the ControlNet must read the condition (ControlNet paper: 50%%)",
    )
    add(
        "--validation-every",
        type=int,
        default=d["validation_every"],
        help="checkpoint, validation grid and adherence every N steps (default: %(default)s)",
    )
    add("--validation-faces", type=int, default=d["validation_faces"], help="held-out faces in the grids")
    add("--eval-faces", type=int, default=d["eval_faces"], help="held-out faces the adherence is measured on")
    add("--eval-steps", type=int, default=d["eval_steps"], help="sampling steps when measuring adherence")
    add("--guidance", type=float, default=d["guidance"], help="classifier-free guidance when measuring")
    add("--base", default=d["base"], help="the base model (default: the shipped demo base)")
    add(
        "--seed",
        type=int,
        default=d["seed"],
        help="seed of the faces, the split and training (default: %(default)s)",
    )
    add("--threads", type=int, help="torch CPU threads (default: 1 on a busy machine, else every core)")
    add("--overwrite", action="store_true", help="replace a non-empty --out")


def run(args: argparse.Namespace) -> int:
    from controlkit.quickstart.config import QuickstartConfig
    from controlkit.quickstart.run import run_quickstart

    names = {f.name for f in fields(QuickstartConfig)}
    result = run_quickstart(QuickstartConfig(**{k: v for k, v in vars(args).items() if k in names}))
    control = result.control
    print(f"report: {result.report}")
    for case in ("matched", "shuffled", "disabled"):
        print(f"  {case:9s} landmark error / inter-ocular = {control[case]['point_error']:.3f}")
    return 0
