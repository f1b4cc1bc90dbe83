"""Photo -> annotate -> render -> ControlNet pipeline -> images, with adherence scores and a panel.

The photo is cropped to the output's aspect ratio and annotated at a working size of at least
``MIN_WORK_SIZE`` pixels (a detector finds no face in a 64 px thumbnail); the conditioning image is
rendered there and resized to the output size, and each output is scaled back to the working size to be
scored against the photo's annotation. Everything that can fail on the user's input fails before the
model loads, and files are written to a temporary folder that is moved into place only at the end.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

from controlkit.conditions import Annotation, Condition
from controlkit.conditions import get as get_condition
from controlkit.errors import UserError
from controlkit.images import to_rgb
from controlkit.infer.config import GenerateConfig
from controlkit.infer.panel import make_panel, score_caption
from controlkit.infer.pipeline import load_pipeline, min_size
from controlkit.metadata import ControlNetInfo
from controlkit.models.loading import controlnet_config
from controlkit.seeds import check_seed_range

MIN_WORK_SIZE = 512
IMAGE_NAME = "image-{:02d}.png"
_IMAGE_RE = re.compile(r"image-\d+\.png")


@dataclass
class GenerationResult:
    """What one generation made.

    ``scores``: one dict per image, empty when there is nothing to score by (a ready conditioning image);
    ``photo``: the photo cropped and resized to the output size; ``annotation``: the photo's, in the frame
    of ``work_size(output size)``; ``seeds``: image ``i`` used ``seeds[i]``; ``out``: where files went.
    """

    images: list[Image.Image]
    conditioning_image: Image.Image
    scores: list[dict[str, float]]
    panel: Image.Image
    photo: Image.Image | None = None
    annotation: Annotation | None = None
    condition: str | None = None
    seeds: list[int] = field(default_factory=list)
    out: Path | None = None


def round_to_8(value: int) -> int:
    """The nearest multiple of 8 (halves round up), at least 8: the VAE works on 8 x 8 pixel blocks."""
    return max(8, math.floor(value / 8 + 0.5) * 8)


def load_photo(image: str | Path | Image.Image, what: str = "photo") -> Image.Image:
    """An 8-bit RGB image from a path or a PIL image, turned upright by its EXIF orientation (a 16-bit
    photo scaled, not clipped: ``to_rgb``)."""
    if isinstance(image, Image.Image):
        return to_rgb(ImageOps.exif_transpose(image))
    path = Path(image)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        with Image.open(path) as opened:
            return to_rgb(ImageOps.exif_transpose(opened))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read the {what} {path}: {exc}") from exc


def fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Centre-crop ``image`` to the aspect ratio of ``size`` and resize it to ``size``."""
    return ImageOps.fit(image, size, method=Image.Resampling.LANCZOS)


def work_size(size: tuple[int, int]) -> tuple[int, int]:
    """The output size scaled up by a whole factor until its short side is at least MIN_WORK_SIZE."""
    factor = max(1, math.ceil(MIN_WORK_SIZE / min(size)))
    return size[0] * factor, size[1] * factor


def resolve_condition(
    condition: str | Condition | None, info: ControlNetInfo, controlnet: str | Path
) -> Condition:
    """The condition asked for, else the one the ControlNet was trained with (its ``info``), with the
    options recorded at training when it is that one."""
    if condition is not None and not isinstance(condition, str):
        return condition
    options: dict = {}
    if condition in (None, info.condition):
        condition, options = info.condition, info.condition_options
    if not condition:
        raise UserError(
            f"{controlnet} records no condition (controlkit.json); "
            "pass --condition NAME or --conditioning-image"
        )
    return get_condition(condition, **options)


def draw_annotation(photo: Image.Image, condition: Condition) -> tuple[Annotation, Image.Image]:
    """(annotation, conditioning image) of a photo already at its working size; UserError when the
    condition finds nothing (in the condition's own words)."""
    annotation = condition.annotate(photo)
    if annotation is None:
        raise UserError(condition.nothing_found)
    return annotation, condition.render(annotation, size=photo.size).convert("RGB")


def annotate_photo(
    photo: Image.Image, condition: Condition, size: tuple[int, int]
) -> tuple[Annotation, Image.Image]:
    """(annotation at the working size, conditioning image at ``size``); UserError when nothing is found."""
    annotation, rendered = draw_annotation(fit(photo, work_size(size)), condition)
    return annotation, rendered.resize(size, Image.Resampling.LANCZOS)


def score_images(
    images: list[Image.Image], annotation: Annotation, condition: Condition
) -> list[dict[str, float]]:
    """The condition's adherence score of each image against the photo's annotation, at the working size."""
    working = work_size(images[0].size)
    condition = condition.for_resolution(min(images[0].size))  # enlarged, a small picture is still small
    return [condition.score(image.resize(working, Image.Resampling.LANCZOS), annotation) for image in images]


def output_size(height: int | None, width: int | None, resolution: int, smallest: int = 8) -> tuple[int, int]:
    """(width, height): the asked size, else the training resolution, each rounded to a multiple of 8;
    UserError for an asked side that is below ``smallest`` once rounded (``pipeline.min_size``)."""
    for flag, value in (("--height", height), ("--width", width)):
        if value is not None and (value < 1 or round_to_8(value) < smallest):
            rounded = f", {round_to_8(value)} once rounded to a multiple of 8" if value >= 1 else ""
            raise UserError(
                f"{flag} {value} is too small{rounded}: this ControlNet makes images of at least {smallest} "
                f"px a side (its smallest latents vanish below that); its training size is {resolution}"
            )
    width, height = (resolution if value is None else value for value in (width, height))
    return round_to_8(width), round_to_8(height)


@dataclass
class _Control:
    """What the pipeline is steered by: the conditioning image, and the photo it came from (if any)."""

    image: Image.Image
    photo: Image.Image | None = None
    annotation: Annotation | None = None
    condition: Condition | None = None


def _control(config: GenerateConfig, info: ControlNetInfo, size: tuple[int, int]) -> _Control:
    """The photo annotated and rendered, or the ready conditioning image fitted to ``size``."""
    if config.image is not None:
        condition = resolve_condition(config.condition, info, config.controlnet)
        photo = fit(load_photo(config.image), work_size(size))
        annotation, image = annotate_photo(photo, condition, size)
        return _Control(image, photo, annotation, condition)
    image = fit(load_photo(config.conditioning_image, "conditioning image"), size)
    if config.condition is None:
        return _Control(image)
    return _Control(image, condition=resolve_condition(config.condition, info, config.controlnet))


def generate(config: GenerateConfig, info: ControlNetInfo | None = None) -> GenerationResult:
    """Generate ``config.num_images`` images from a photo (annotated with the condition) or a conditioning
    image.

    Image ``i`` uses seed ``seed + i``, so any one of them can be made again alone. With ``out``, writes
    the images, ``conditioning.png``, ``panel.png`` and ``scores.json`` there. ``info``: the ControlNet's
    record, when the caller has checked the ControlNet and read it already (the app does it once, not once
    per click).
    """
    if (config.image is None) == (config.conditioning_image is None):
        raise UserError(
            "give exactly one of a photo (--image) or a conditioning image (--conditioning-image)"
        )
    if config.num_images < 1 or config.steps < 1:
        raise UserError("--num-images and --steps must be at least 1")
    check_seed_range(config.seed, config.num_images, "images", "image i uses")
    out_dir = Path(config.out) if config.out is not None else None
    if out_dir is not None:
        _check_out(out_dir, config.overwrite)
    smallest = 8
    if info is None:  # the app checked the ControlNet and read its record once, when it started
        smallest = min_size(controlnet_config(config.controlnet))
        info = ControlNetInfo.read(config.controlnet)
    size = output_size(config.height, config.width, info.resolution, smallest)
    control = _control(config, info, size)

    import torch

    pipe = load_pipeline(config.controlnet, info, base=config.base, device=config.device)
    seeds = [config.seed + i for i in range(config.num_images)]
    images = pipe(
        prompt=config.prompt,
        image=control.image,
        negative_prompt=config.negative_prompt or None,
        num_images_per_prompt=config.num_images,
        num_inference_steps=config.steps,
        guidance_scale=config.guidance,
        controlnet_conditioning_scale=config.controlnet_scale,
        generator=[torch.Generator(device="cpu").manual_seed(s) for s in seeds],
        height=size[1],
        width=size[0],
    ).images

    scored = control.annotation is not None
    scores = score_images(images, control.annotation, control.condition) if scored else []
    captions = [score_caption(s, control.condition.score_labels) for s in scores]
    result = GenerationResult(
        images=images,
        conditioning_image=control.image,
        scores=scores,
        panel=make_panel(control.image, images, photo=control.photo, captions=captions),
        photo=control.photo.resize(size, Image.Resampling.LANCZOS) if control.photo is not None else None,
        annotation=control.annotation,
        condition=control.condition.name if control.condition is not None else None,
        seeds=seeds,
    )
    if out_dir is not None:
        result.out = _write(result, out_dir, prompt=config.prompt, controlnet=str(config.controlnet))
    return result


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out} already holds files; choose a new folder or pass --overwrite")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise UserError(f"cannot write --out {out}: {ancestor} is not a folder this user can write to")


def _finite(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _write(result: GenerationResult, out: Path, prompt: str, controlnet: str) -> Path:
    """Write everything into a temporary sibling folder, then move it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        names = [IMAGE_NAME.format(i) for i in range(len(result.images))]
        for name, img in zip(names, result.images, strict=True):
            img.save(tmp / name)
        result.conditioning_image.save(tmp / "conditioning.png")
        result.panel.save(tmp / "panel.png")
        record = {
            "controlnet": controlnet,
            "prompt": prompt,
            "condition": result.condition,
            "scored": bool(result.scores),
            "images": [
                {"file": name, "seed": s, **{k: _finite(v) for k, v in scores.items()}}
                for name, s, scores in zip(
                    names, result.seeds, result.scores or [{}] * len(names), strict=True
                )
            ],
        }
        (tmp / "scores.json").write_text(json.dumps(record, indent=2) + "\n")
        if not out.exists():
            os.replace(tmp, out)
            return out
        for stale in out.iterdir():
            if _IMAGE_RE.fullmatch(stale.name):
                stale.unlink()
        for item in tmp.iterdir():
            os.replace(item, out / item.name)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
