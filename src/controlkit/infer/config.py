"""The settings of `controlkit generate` and `controlkit app`, each field one flag with its help.

``ModelChoice`` holds the flags both commands share (which ControlNet, on which base, with which
condition, where); ``GenerateConfig`` and ``AppConfig`` add their own. This module imports nothing heavy,
so ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from controlkit.flags import option

if TYPE_CHECKING:
    from PIL import Image

    from controlkit.conditions import Condition

MAX_PIXELS = 24_000_000
"""Uploads above this many pixels (about 6000 x 4000) are refused before any work is done."""


@dataclass(frozen=True, kw_only=True)
class ModelChoice:
    """Which ControlNet, on which base model, annotating photos with which condition, on which device."""

    controlnet: str | Path = option(help="a ControlNet folder from `controlkit train`, or a Hub id")
    base: str | None = option(
        None, "base Stable Diffusion model (default: the one the ControlNet was trained on)"
    )
    condition: str | Condition | None = option(
        None, "condition to annotate photos with (default: the ControlNet's own)"
    )
    device: str | None = option(None, "cuda, cuda:1, mps or cpu (default: the best available)")


@dataclass(frozen=True, kw_only=True)
class GenerateConfig(ModelChoice):
    """One `controlkit generate`: a photo (or a ready conditioning image) and a prompt in, images out.

    A Python caller may pass PIL images for ``image``/``conditioning_image`` and leave ``out`` None (no
    files are written; the images come back in the result).
    """

    image: str | Path | Image.Image | None = option(
        None, "a photo; annotated with the ControlNet's condition", group="source"
    )
    conditioning_image: str | Path | Image.Image | None = option(
        None, "a ready conditioning image, used as it is", group="source"
    )
    prompt: str = option(help="what to generate")
    negative_prompt: str | None = option(None, "what to steer away from")
    num_images: int = option(4, "how many images")
    steps: int = option(20, "denoising steps, UniPC scheduler")
    guidance: float = option(7.5, "classifier-free guidance scale")
    controlnet_scale: float = option(1.0, "how strongly the ControlNet steers")
    seed: int = option(0, "seed of the first image; image i uses seed+i")
    height: int | None = option(None, "output height (default: training resolution)")
    width: int | None = option(None, "output width (default: training resolution)")
    out: str | Path | None = option(None, "folder to write the results into", required=True)
    overwrite: bool = option(False, "write into --out even if it already holds files")


@dataclass(frozen=True, kw_only=True)
class AppConfig(ModelChoice):
    """One `controlkit app`: where to serve it, and (for Python callers) the page's starting values."""

    host: str = option("127.0.0.1", "address to bind; 127.0.0.1 is this machine only")
    port: int = option(7860, "port to serve on")
    share: bool = option(False, "also open a public gradio.live link (off by default)")
    steps: int = option(20, "the Steps slider's starting value", hidden=True)
    num_images: int = option(4, "the Images slider's starting value", hidden=True)
    max_pixels: int = option(MAX_PIXELS, "uploads above this many pixels are refused", hidden=True)
