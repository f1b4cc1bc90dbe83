"""Validation during training: sample images for fixed (prompt, conditioning image) pairs, grid, score.

The grid shows whether the ControlNet follows its condition; when the condition can score adherence
(annotate the generated image again and compare), the mean score per key is returned so the trainer
can log it with the loss. The pairs come from ``--validation_prompt``/``--validation_image``, matched as
the diffusers reference does, and from dataset rows when ``validation_rows`` asks for them.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from controlkit.conditions.base import Condition
from controlkit.errors import UserError, require
from controlkit.images import to_rgb
from controlkit.pictures import fit_in, image_grid
from controlkit.train.config import RunSettings, TrainConfig

logger = logging.getLogger(__name__)

DEFAULT_INFERENCE_STEPS = 20
"""Denoising steps per validation image, as in the diffusers reference trainer."""


@dataclass
class ValidationPair:
    """One row of the validation grid: a prompt, the image the ControlNet sees, its annotation if known."""

    prompt: str
    conditioning_image: Image.Image
    annotation: np.ndarray | None = None


def _match(prompts: list[str], images: list[str]) -> list[tuple[str, str]]:
    """Pair prompts with images like the reference: N & N, 1 image & N prompts, or N images & 1 prompt."""
    if not prompts or not images:
        missing = "--validation_image" if prompts else "--validation_prompt"
        given = "--validation_prompt" if prompts else "--validation_image"
        raise UserError(f"{missing} must be set when {given} is set")
    if len(prompts) == len(images):
        return list(zip(prompts, images, strict=True))
    if len(images) == 1:
        return [(prompt, images[0]) for prompt in prompts]
    if len(prompts) == 1:
        return [(prompts[0], image) for image in images]
    raise UserError(
        f"got {len(prompts)} --validation_prompt and {len(images)} --validation_image: give one image, "
        "one prompt, or the same number of each"
    )


def _load_image_pair(prompt: str, image_path: str, condition: Condition | None) -> ValidationPair:
    path = Path(image_path)
    try:
        with Image.open(path) as opened:
            image = to_rgb(opened)
    except OSError as exc:
        raise UserError(f"cannot read --validation_image {image_path}: {exc}") from exc
    sidecar = path.with_suffix(".json")
    annotation = None
    if condition is not None and sidecar.is_file():
        try:
            annotation = condition.from_record(json.loads(sidecar.read_text()))
        except (ValueError, TypeError) as exc:
            raise UserError(f"cannot read the annotation in {sidecar}: {exc}") from exc
    return ValidationPair(prompt, image, annotation)


def _caption(value: Any) -> str:
    """A caption cell may hold several captions (the reference accepts a list); take the first."""
    if isinstance(value, list | tuple | np.ndarray):
        return str(value[0]) if len(value) else ""
    return str(value)


def _dataset_pairs(
    settings: RunSettings, condition: Condition | None, dataset, count: int
) -> list[ValidationPair]:
    annotation_column = settings.annotation_column
    rows = np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).round().astype(int)
    pairs = []
    for index in dict.fromkeys(rows.tolist()):
        row = dataset[index]
        record = row.get(annotation_column)
        annotation = condition.from_record(record) if condition is not None and record is not None else None
        pairs.append(
            ValidationPair(
                prompt=_caption(row[settings.caption_column]),
                conditioning_image=to_rgb(row[settings.conditioning_image_column]),
                annotation=annotation,
            )
        )
    return pairs


def validation_pairs(
    config: TrainConfig, settings: RunSettings, condition: Condition | None, dataset=None
) -> list[ValidationPair]:
    """The pairs to validate on; [] when the config asks for no validation.

    ``--validation_prompt``/``--validation_image`` give pairs (a sidecar ``NAME.json`` beside an image holds
    its annotation as JSON that ``condition.from_record`` reads, e.g. ``annotation.tolist()``);
    ``validation_rows`` adds that many rows spread evenly over ``dataset``, with their conditioning image,
    caption and annotation (from the columns ``settings`` names).
    """
    prompts = list(config.validation_prompt or [])
    images = [str(image) for image in config.validation_image or []]
    pairs = []
    if prompts or images:
        pairs = [_load_image_pair(prompt, image, condition) for prompt, image in _match(prompts, images)]
    if config.validation_rows > 0 and dataset is not None and len(dataset) > 0:
        pairs += _dataset_pairs(settings, condition, dataset, config.validation_rows)
    return pairs


def validation_grid(rows: list[tuple[ValidationPair, list[Image.Image]]], cell: int) -> Image.Image:
    """One row per pair: conditioning image | outputs, with the prompt written small under the row."""
    return image_grid(
        [[pair.conditioning_image, *outputs] for pair, outputs in rows],
        (cell, cell),
        fit="contain",
        row_text=[pair.prompt for pair, _ in rows],
    )


def _mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    """The NaN-aware mean of each key (NaN when every value is NaN), named ``validation/<key>``."""
    means = {}
    for key in sorted({key for score in scores for key in score}):
        values = np.array([score.get(key, math.nan) for score in scores], dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means[f"validation/{key}"] = float(np.nanmean(values))
    return means


def _log_to_trackers(accelerator, rows: list[tuple[ValidationPair, list[Image.Image]]], cell: int, step: int):
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            for index, (pair, outputs) in enumerate(rows):
                stacked = np.stack(
                    [np.asarray(fit_in(image, (cell, cell))) for image in [pair.conditioning_image, *outputs]]
                )
                tracker.writer.add_images(
                    f"validation/{index}: {pair.prompt}", stacked, step, dataformats="NHWC"
                )
        elif tracker.name == "wandb":
            wandb = require("wandb", "wandb")
            images = []
            for pair, outputs in rows:
                images.append(wandb.Image(pair.conditioning_image, caption="ControlNet conditioning"))
                images.extend(wandb.Image(output, caption=pair.prompt) for output in outputs)
            tracker.log({"validation": images}, step=step)
        else:
            logger.warning(
                "validation images are not logged to the %s tracker (only the grid file)", tracker.name
            )


def precision(accelerator, weight_dtype):
    """Autocast to the frozen models' dtype while sampling (the ControlNet trains in fp32)."""
    import torch

    return torch.autocast(accelerator.device.type, dtype=weight_dtype, enabled=weight_dtype != torch.float32)


@contextmanager
def sampling_pipeline(*, vae, text_encoder, tokenizer, unet, controlnet, config: TrainConfig, accelerator):
    """A ControlNet pipeline over the training's own models (UniPC, no progress bars), the ControlNet in
    eval mode for the block; afterwards its mode is restored and the memory sampling took is freed, so the
    training state is left as it was. Validation and the in-training evaluation both sample through it.

    The blocks the training step left in torch's cache are given back first, so sampling finds them free."""
    from diffusers import StableDiffusionControlNetPipeline, UniPCMultistepScheduler

    _free_cached_memory()
    model = accelerator.unwrap_model(controlnet)
    was_training = model.training
    model.eval()
    scheduler = UniPCMultistepScheduler.from_pretrained(
        config.pretrained_model_name_or_path,
        subfolder="scheduler",
        revision=config.revision,
    )
    pipeline = StableDiffusionControlNetPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        controlnet=model,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    try:
        yield pipeline
    finally:
        del pipeline
        model.train(was_training)
        _free_cached_memory()


def _free_cached_memory() -> None:
    """Collect what Python still holds and give torch's cached CUDA blocks back."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def log_validation(
    *,
    vae,
    text_encoder,
    tokenizer,
    unet,
    controlnet,
    config: TrainConfig,
    settings: RunSettings,
    accelerator,
    weight_dtype,
    step: int,
    pairs: list[ValidationPair],
    condition: Condition | None,
) -> dict[str, float]:
    """Sample ``num_validation_images`` per pair with the ControlNet as trained so far, save and log the grid.

    Images are sampled one at a time (batch 1, two with the guidance's unconditional half), so validation
    needs no more memory than one image does: it fits wherever training does (``--vram 8``).

    Writes ``output_dir/validation/step-N.png``, logs the images to the accelerator's trackers, and
    returns ``{"validation/<key>": mean}`` over every output whose pair has an annotation ({} without a
    condition), for the caller to log with its metrics. The training state is left as it was: the
    ControlNet's train/eval mode, its gradients and the global RNG (a seeded generator is always used).
    Outputs are scored at the conditioning image's size, so a condition that reads small pictures its own
    way (face-landmarks under 128 px) does so here.
    """
    import torch

    if not pairs:
        return {}
    rows: list[tuple[ValidationPair, list[Image.Image]]] = []
    scores: list[dict[str, float]] = []
    models = dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, controlnet=controlnet)
    with sampling_pipeline(**models, config=config, accelerator=accelerator) as pipeline:
        for pair in pairs:
            generator = torch.Generator().manual_seed(settings.seed)
            outputs = []
            for _ in range(config.num_validation_images):  # one image at a time, as the reference does
                with torch.no_grad(), precision(accelerator, weight_dtype):
                    outputs += pipeline(
                        pair.prompt,
                        pair.conditioning_image,
                        num_inference_steps=config.validation_inference_steps or DEFAULT_INFERENCE_STEPS,
                        generator=generator,
                    ).images
            # The pipeline rounds the size down to a multiple of 8; score in the annotation's pixel frame.
            outputs = [image.resize(pair.conditioning_image.size) for image in outputs]
            rows.append((pair, outputs))
            if condition is not None and pair.annotation is not None:
                scores.extend(condition.score(output, pair.annotation) for output in outputs)
    means = _mean_scores(scores)
    cell = min(max(max(pair.conditioning_image.size) for pair in pairs), settings.resolution)
    if accelerator.is_main_process:
        folder = Path(config.output_dir) / "validation"
        folder.mkdir(parents=True, exist_ok=True)
        validation_grid(rows, cell).save(folder / f"step-{step}.png")
    _log_to_trackers(accelerator, rows, cell, step)
    return means
