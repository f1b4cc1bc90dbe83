"""Generate images with a trained ControlNet from a photo (annotated with the ControlNet's condition) or
from a ready conditioning image; writes the images, conditioning.png, panel.png and scores.json, and
prints each output's adherence score."""

from __future__ import annotations

import argparse

from controlkit.infer.arguments import add_model_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="a photo; annotated with the ControlNet's condition")
    source.add_argument("--conditioning-image", help="a ready conditioning image, used as it is")
    parser.add_argument("--prompt", required=True, help="what to generate")
    parser.add_argument("--negative-prompt", default=None, help="what to steer away from")
    parser.add_argument("--num-images", type=int, default=4, help="how many images (default: 4)")
    parser.add_argument(
        "--steps", type=int, default=20, help="denoising steps, UniPC scheduler (default: 20)"
    )
    parser.add_argument(
        "--guidance", type=float, default=7.5, help="classifier-free guidance scale (default: 7.5)"
    )
    parser.add_argument(
        "--controlnet-scale",
        type=float,
        default=1.0,
        help="how strongly the ControlNet steers (default: 1.0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the first image; image i uses seed+i")
    parser.add_argument(
        "--height", type=int, default=None, help="output height (default: training resolution)"
    )
    parser.add_argument("--width", type=int, default=None, help="output width (default: training resolution)")
    parser.add_argument("--out", required=True, help="folder to write the results into")
    parser.add_argument(
        "--overwrite", action="store_true", help="write into --out even if it already holds files"
    )


def run(args: argparse.Namespace) -> int:
    from controlkit.infer.generate import generate
    from controlkit.infer.panel import score_caption

    result = generate(
        args.controlnet,
        args.prompt,
        image=args.image,
        conditioning_image=args.conditioning_image,
        base=args.base,
        negative_prompt=args.negative_prompt,
        num_images=args.num_images,
        steps=args.steps,
        guidance=args.guidance,
        controlnet_scale=args.controlnet_scale,
        seed=args.seed,
        height=args.height,
        width=args.width,
        condition=args.condition,
        out=args.out,
        device=args.device,
        overwrite=args.overwrite,
    )
    if result.scores:
        print(f"adherence ({result.condition}):")
        for i, scores in enumerate(result.scores):
            print(f"  image-{i:02d}.png  seed {result.seeds[i]}  {score_caption(scores, short=False)}")
    else:
        print("no adherence scores: a ready conditioning image has no photo annotation to compare with")
    print(f"wrote {len(result.images)} images, conditioning.png, panel.png and scores.json to {result.out}")
    return 0
