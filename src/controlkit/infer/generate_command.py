"""Generate images with a trained ControlNet from a photo (annotated with the ControlNet's condition) or
from a ready conditioning image; writes the images, conditioning.png, panel.png and scores.json, and
prints each output's adherence score."""

from __future__ import annotations

import argparse

from controlkit import flags
from controlkit.infer.config import GenerateConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_arguments(parser, GenerateConfig)


def run(args: argparse.Namespace) -> int:
    from controlkit.infer.generate import generate
    from controlkit.infer.panel import score_caption

    result = generate(flags.from_namespace(GenerateConfig, args))
    if result.scores:
        print(f"adherence ({result.condition}):")
        for i, scores in enumerate(result.scores):
            print(f"  image-{i:02d}.png  seed {result.seeds[i]}  {score_caption(scores)}")
    else:
        print("no adherence scores: a ready conditioning image has no photo annotation to compare with")
    print(f"wrote {len(result.images)} images, conditioning.png, panel.png and scores.json to {result.out}")
    return 0
