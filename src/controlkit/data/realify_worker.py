"""The per-batch function of `data realify`: repaint a few rows with img2img, then read each one again.

A ``Realifier`` is built once per process (or Ray actor) by the engines (``data.engines``): it opens the
dataset itself (memory-mapped, so a batch of row numbers is all that travels), loads the img2img pipeline
once, and for each batch repaints the pictures (ControlNet img2img with the row's conditioning image when
a ControlNet is given), each row with its own seed, then scores each repainted picture against the row's
annotation with the dataset's condition (``Condition.score``: the condition annotates the picture again).
A row that cannot be read is returned with its reason instead of stopping the run.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from controlkit import conditions
from controlkit.data.inputs import decode
from controlkit.metadata import DatasetInfo


def row_key(row: int) -> str:
    """The manifest key of a row (stable across runs and processes)."""
    return f"row:{row}"


@dataclass(frozen=True)
class RealifySettings:
    """What a worker needs; small and picklable, so each process or actor rebuilds the rest."""

    dataset: str
    split: str
    info: DatasetInfo
    base: str
    controlnet: str | None
    strength: float
    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    controlnet_scale: float
    seed: int
    device: str | None = None


@dataclass
class RealifyResult:
    """One repainted row: the picture (PNG) and its scores; ``reason`` says why there is no picture.

    ``checked`` is False where the row has no annotation to compare with (kept with ``--keep-empty``).
    """

    row: int
    key: str
    source: str
    seed: int
    image: bytes | None = None
    scores: dict[str, float] = field(default_factory=dict)
    checked: bool = False
    reason: str | None = None


@dataclass
class _Row:
    number: int
    source: str
    image: Image.Image
    conditioning: Image.Image
    text: str
    annotation: Any


def prompt_for(template: str, text: str) -> str:
    """The row's prompt: ``{text}`` in the template replaced by its caption (no stray comma if empty)."""
    return template.format(text=text).strip(" ,")


def load_img2img_pipeline(base: str, controlnet: str | None, device: str | None) -> Any:
    """StableDiffusionImg2ImgPipeline, or StableDiffusionControlNetImg2ImgPipeline with ``controlnet``, from
    ``controlkit.models.loading`` (safetensors only), UniPC scheduler, half precision on a GPU."""
    import torch
    from diffusers import (
        StableDiffusionControlNetImg2ImgPipeline,
        StableDiffusionImg2ImgPipeline,
        UniPCMultistepScheduler,
    )

    from controlkit.devices import pick_device, pick_dtype
    from controlkit.models.loading import load_base_components, load_controlnet

    device = pick_device(device)
    dtype = pick_dtype(device)
    parts = load_base_components(base)
    common = {
        "vae": parts.vae,
        "text_encoder": parts.text_encoder,
        "tokenizer": parts.tokenizer,
        "unet": parts.unet,
        "scheduler": UniPCMultistepScheduler.from_config(parts.noise_scheduler.config),
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }
    if controlnet:
        model = load_controlnet(controlnet, dtype=dtype)
        pipe = StableDiffusionControlNetImg2ImgPipeline(controlnet=model, **common)
    else:
        pipe = StableDiffusionImg2ImgPipeline(**common)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device) if dtype == torch.float32 else pipe.to(device, dtype)


class Realifier:
    """Callable on a batch of row numbers -> their ``RealifyResult``s; build one per process."""

    def __init__(self, settings: RealifySettings):
        info = settings.info
        self.settings = settings
        self.condition = conditions.get(info.condition, **info.condition_options)
        self.pipe: Any = None
        self.dataset: Any = None

    def warm_up(self) -> None:
        """Open the dataset and load the pipeline (a forked or remote worker then starts ready)."""
        self._rows([])

    def run(self, rows: list[int]) -> list[RealifyResult]:
        """Repaint ``rows`` (pictures of one size go through the pipeline together) and score each."""
        settings = self.settings
        loaded, results = self._rows(rows), {}
        for row in rows:
            if isinstance(loaded[row], str):
                results[row] = RealifyResult(
                    row, row_key(row), row_key(row), settings.seed + row, reason=loaded[row]
                )
        by_size: dict[tuple[int, int], list[_Row]] = defaultdict(list)
        for item in loaded.values():
            if isinstance(item, _Row):
                by_size[item.image.size].append(item)
        for batch in by_size.values():
            for item, picture in zip(batch, self._repaint(batch), strict=True):
                results[item.number] = self._scored(item, picture)
        return [results[row] for row in rows]

    def _rows(self, rows: list[int]) -> dict[int, _Row | str]:
        """The rows decoded (or why a row cannot be); the dataset and the pipeline load on first use."""
        if self.dataset is None:
            import datasets

            from controlkit.data.sources import load_split

            info = self.settings.info
            dataset = load_split(self.settings.dataset, self.settings.split)
            for column in (info.image_column, info.conditioning_image_column):
                dataset = dataset.cast_column(column, datasets.Image(decode=False))
            self.dataset = dataset
            self.pipe = load_img2img_pipeline(
                self.settings.base, self.settings.controlnet, self.settings.device
            )
        if not rows:
            return {}
        return {
            row: self._read(row, record) for row, record in zip(rows, self.dataset.select(rows), strict=True)
        }

    def _read(self, row: int, record: dict[str, Any]) -> _Row | str:
        info = self.settings.info
        try:
            image = decode(_payload(record[info.image_column]))[0]
            conditioning = decode(_payload(record[info.conditioning_image_column]))[0]
        except Exception as exc:  # one bad row must never stop the run
            return f"cannot decode the row's pictures: {exc}".splitlines()[0]
        annotation = record.get(info.annotation_column)
        annotation = None if annotation is None else self.condition.from_record(annotation)
        return _Row(
            number=row,
            source=str(record.get(info.source_column) or row_key(row)),
            image=image,
            conditioning=conditioning,
            text=str(record.get(info.caption_column) or ""),
            annotation=annotation,
        )

    def _repaint(self, batch: list[_Row]) -> list[Image.Image]:
        """img2img over pictures of one size, each with its own seed; the result at the pictures' size."""
        import torch

        settings, pipe = self.settings, self.pipe
        size = batch[0].image.size
        step = pipe.vae_scale_factor
        fitted = (max(step, size[0] // step * step), max(step, size[1] // step * step))
        arguments: dict[str, Any] = {
            "prompt": [prompt_for(settings.prompt, item.text) for item in batch],
            "image": [item.image.resize(fitted, Image.Resampling.LANCZOS) for item in batch],
            "strength": settings.strength,
            "num_inference_steps": settings.steps,
            "guidance_scale": settings.guidance_scale,
            "generator": [torch.Generator().manual_seed(settings.seed + item.number) for item in batch],
        }
        if settings.negative_prompt:
            arguments["negative_prompt"] = [settings.negative_prompt] * len(batch)
        if settings.controlnet:
            arguments["control_image"] = [item.conditioning.resize(fitted) for item in batch]
            arguments["controlnet_conditioning_scale"] = settings.controlnet_scale
            arguments["width"], arguments["height"] = fitted
        with torch.inference_mode():
            pictures = pipe(**arguments).images
        return [p if p.size == size else p.resize(size, Image.Resampling.LANCZOS) for p in pictures]

    def _scored(self, item: _Row, picture: Image.Image) -> RealifyResult:
        checked = item.annotation is not None and not self.condition.is_empty(item.annotation)
        scores = self.condition.score(picture, item.annotation) if checked else {}
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", compress_level=1)
        return RealifyResult(
            row=item.number,
            key=row_key(item.number),
            source=item.source,
            seed=self.settings.seed + item.number,
            image=buffer.getvalue(),
            scores={key: float(value) for key, value in scores.items()},
            checked=checked,
        )


def _payload(value: Any) -> bytes:
    """The encoded bytes of an undecoded image cell (bytes, or read from its path)."""
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return value["bytes"]
        value = value.get("path")
    if isinstance(value, bytes):
        return value
    with open(value, "rb") as file:
        return file.read()
