"""The settings of `controlkit data build`, declared once: each field is a flag with its help.

Light on purpose (no torch, no ``datasets``), so ``controlkit data build --help`` stays fast.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from controlkit.flags import option

ENGINES = ("local", "ray")
LANDMARKS = ("detector", "ground-truth")


def parse_renames(text: str | dict) -> dict[str, str]:
    """``conditioning_image=spiga_seg,text=image_caption`` -> {"conditioning_image": "spiga_seg", ...}."""
    if isinstance(text, dict):
        return text
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if any(len(pair) != 2 or not pair[1].strip() for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected OLD=NEW[,OLD=NEW...], got {text!r}")
    return {old.strip(): new.strip() for old, new in pairs}


@dataclass
class BuildConfig:
    """What `controlkit data build` builds from where, and how; each field is the flag of the same name."""

    source: str = option(
        help="a folder of photos (recursive: jpg, png, webp, bmp), a `datasets` folder or Hub dataset id, "
        "`facesynthetics:DIR` (Microsoft's FaceSynthetics as it ships: {id}.png with {id}_ldmks.txt) or "
        "`synthetic-faces` (procedural faces); the last two carry ground-truth landmarks"
    )
    out: str = option(help="the new dataset folder (save_to_disk format)")
    condition: str = option("face-landmarks", "condition name")
    condition_options: dict[str, Any] = option(
        {},
        "the condition's options as JSON, e.g. '{\"upsample\": 0}' or '{\"low_threshold\": 50}'",
        metavar="JSON",
    )
    captioner: str = option(
        "template",
        "template (offline default: the condition's sentence, template:TEXT for your own; an input that "
        "comes with its own caption keeps it, as synthetic faces described by their attributes), blip or "
        "blip:MODEL (Hub id or folder), or column:NAME (an existing column)",
    )
    caption_prefix: str = option("", "text put before every caption (e.g. a trigger word)")
    caption_suffix: str = option("", "text put after every caption")
    image_column: str = option("image", "the image column of a dataset source")
    split: str = option("train", "the split of a dataset source")
    num_workers: int = option(
        1, "processes that annotate in parallel (Ray actors with --engine ray); 1 works in this process"
    )
    resume: bool = option(False, "continue an interrupted build (its OUT.partial folder)")
    limit: int | None = option(
        None, "use only the first N inputs (required for synthetic-faces)", metavar="N"
    )
    resolution: int | None = option(
        None,
        "resize the shorter side to R and centre-crop R x R before annotating; unset, the photos are kept "
        "as they came (original bytes)",
        metavar="R",
    )
    seed: int = option(0, "first seed of synthetic-faces")
    landmarks: str = option(
        "detector",
        "ground-truth: use the source's own annotations (the landmarks of facesynthetics:DIR or "
        "synthetic-faces) instead of the condition's detector",
        choices=LANDMARKS,
    )
    keep_empty: bool = option(
        False, "keep photos where nothing is found (no face), with a black conditioning image"
    )
    rename_columns: dict[str, str] = option(
        {},
        "e.g. conditioning_image=spiga_seg,text=image_caption (controlkit.json records the names)",
        type=parse_renames,
        metavar="OLD=NEW,...",
    )
    engine: str = option("local", "local processes or Ray Data", choices=ENGINES)
    shard_size: int = option(256, "inputs per resumable shard")
    caption_batch_size: int = option(16, "BLIP batch size")
    push_to_hub: str | None = option(
        None, "publish the dataset and its card to this Hub repo", metavar="REPO"
    )
    progress: bool = option(True, "show a progress bar and the summary table")
