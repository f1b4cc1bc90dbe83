"""Build a paired dataset (photo, conditioning image, caption) for ControlNet training.

Example: controlkit data build --source photos/ --condition face-landmarks --captioner blip --out faces-ds
"""

from __future__ import annotations

import argparse
import json


def _rename(text: str) -> dict[str, str]:
    """``conditioning_image=spiga_seg,text=image_caption`` -> {"conditioning_image": "spiga_seg", ...}."""
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if any(len(pair) != 2 or not pair[1].strip() for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected OLD=NEW[,OLD=NEW...], got {text!r}")
    return {old.strip(): new.strip() for old, new in pairs}


def _options(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--condition-options must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--condition-options must be a JSON object")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="build a paired dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument(
        "--source",
        required=True,
        help="a folder of photos (recursive: jpg, png, webp, bmp), a `datasets` folder or Hub dataset id, "
        "or `synthetic-faces` (procedural faces with ground-truth landmarks)",
    )
    build.add_argument("--out", required=True, help="the new dataset folder (save_to_disk format)")
    build.add_argument(
        "--condition", default="face-landmarks", help="condition name (default: face-landmarks)"
    )
    build.add_argument(
        "--condition-options",
        type=_options,
        default={},
        help="the condition's options as JSON, e.g. '{\"upsample\": 0}' or '{\"low_threshold\": 50}'",
    )
    build.add_argument(
        "--captioner",
        default="template",
        help="template (offline default; template:TEXT for your own sentence; synthetic faces are described "
        "by their attributes), blip or blip:MODEL (Hub id or folder), or column:NAME (an existing column)",
    )
    build.add_argument(
        "--caption-prefix", default="", help="text put before every caption (e.g. a trigger word)"
    )
    build.add_argument("--caption-suffix", default="", help="text put after every caption")
    build.add_argument(
        "--image-column", default="image", help="the image column of a dataset source (default: image)"
    )
    build.add_argument("--split", default="train", help="the split of a dataset source (default: train)")
    build.add_argument(
        "--num-workers",
        type=int,
        default=1,
        help="processes that annotate in parallel (Ray actors with --engine ray); 1 (the default) works in "
        "this process",
    )
    build.add_argument(
        "--resume", action="store_true", help="continue an interrupted build (its OUT.partial folder)"
    )
    build.add_argument("--limit", type=int, help="use only the first N inputs (required for synthetic-faces)")
    build.add_argument(
        "--resolution",
        type=int,
        help="resize the shorter side to R and centre-crop R x R before annotating (default: keep the "
        "photos as they came, original bytes)",
    )
    build.add_argument("--seed", type=int, default=0, help="first seed of synthetic-faces (default: 0)")
    build.add_argument(
        "--landmarks",
        choices=("detector", "ground-truth"),
        default="detector",
        help="ground-truth: use synthetic-faces' own landmarks instead of the detector (default: detector)",
    )
    build.add_argument(
        "--keep-empty",
        action="store_true",
        help="keep photos where nothing is found (no face), with a black conditioning image",
    )
    build.add_argument(
        "--rename-columns",
        type=_rename,
        default={},
        help="e.g. conditioning_image=spiga_seg,text=image_caption (controlkit.json records the names)",
    )
    build.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local processes or Ray Data (default: local)",
    )
    build.add_argument(
        "--shard-size", type=int, default=256, help="inputs per resumable shard (default: 256)"
    )
    build.add_argument("--caption-batch-size", type=int, default=16, help="BLIP batch size (default: 16)")
    build.add_argument(
        "--push-to-hub", metavar="REPO", help="publish the dataset and its card to this Hub repo"
    )
    build.add_argument("--no-progress", action="store_true", help="no progress bar or summary table")
    build.set_defaults(_prog=build.prog)


def run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from controlkit.data.build import BuildConfig, build_dataset

    names = {f.name for f in fields(BuildConfig)} - {"progress"}
    config = BuildConfig(**{name: getattr(args, name) for name in names}, progress=not args.no_progress)
    report = build_dataset(config)
    print(report.out)
    return 0
