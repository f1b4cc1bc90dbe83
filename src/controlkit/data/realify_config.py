"""The settings of `controlkit data realify`, declared once: each field is a flag with its help.

Light on purpose (no torch, no ``datasets``), so ``controlkit data realify --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlkit.data.config import ENGINES
from controlkit.flags import option


@dataclass
class RealifyConfig:
    """How `controlkit data realify` repaints a dataset; each field is the flag of the same name."""

    dataset: str = option(
        help="the dataset to repaint: a folder from `controlkit data build` or a Hub id (its controlkit.json "
        "names the condition and the columns)"
    )
    base: str = option(
        help="the Stable Diffusion model that repaints (diffusers folder or Hub id), e.g. "
        "stabilityai/stable-diffusion-2-1-base"
    )
    out: str = option(help="the new dataset folder (save_to_disk format)")
    controlnet: str | None = option(
        None,
        "a ControlNet for the base (folder or Hub id): ControlNet img2img holds the pose to each row's "
        "conditioning image",
        metavar="MODEL",
    )
    strength: float = option(
        0.45, "how much of each picture is repainted, in (0, 1]: 1 draws it anew from the prompt"
    )
    prompt: str = option(
        "{text}, professional photograph",
        "the prompt of every row; {text} is the row's caption",
    )
    negative_prompt: str = option("", "what the pictures should not look like, e.g. '3d render, cartoon'")
    steps: int = option(
        30, "denoising steps of the whole schedule; img2img runs about strength x steps of them"
    )
    guidance_scale: float = option(7.5, "classifier-free guidance")
    controlnet_scale: float = option(
        1.0, "how strongly the ControlNet holds the conditioning (with --controlnet)"
    )
    threshold: float | None = option(
        None,
        "reject a row whose adherence score (the condition's, measured on the repainted picture against the "
        "row's annotation: landmark_nme for face-landmarks, lower is better; edge_f1 for canny, higher is "
        "better) is worse than this; a row where the condition finds nothing again is always rejected",
        metavar="VALUE",
    )
    keep_rejected_original: bool = option(
        False, "keep a rejected row with its original picture instead of leaving it out"
    )
    split: str = option("train", "the split of a Hub or data-file dataset")
    limit: int | None = option(None, "repaint only the first N rows", metavar="N")
    batch_size: int = option(8, "pictures per img2img call")
    seed: int = option(0, "row i is repainted with seed + i (recorded per row)")
    device: str | None = option(
        None, "cuda, cuda:N, mps or cpu (default: the process's GPU under accelerate, else the best here)"
    )
    engine: str = option(
        "local",
        "local: this process (`accelerate launch -m controlkit data realify` splits the rows across "
        "processes); ray: a Ray Data job on the cluster ray.init() finds",
        choices=ENGINES,
    )
    num_workers: int = option(
        1, "Ray actors with --engine ray (each takes one GPU where the cluster has them)"
    )
    resume: bool = option(False, "continue an interrupted run (its OUT.partial folder)")
    shard_size: int = option(256, "rows per resumable shard")
    progress: bool = option(True, "show a progress bar and the summary table")
