"""Captioners: the text of each pair. ``template`` (offline default), ``column:NAME``, ``blip[:MODEL]``.

They run in the main process on whole shards at a time, so BLIP sees full batches (on a GPU when there
is one) while the worker processes go on annotating.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from controlkit.errors import UserError, first_line
from controlkit.paths import public_name

BLIP_DEFAULT = "Salesforce/blip-image-captioning-base"


Captions = Sequence[str | None]
"""Each input's own caption, None where it has none (a synthetic face brings its attributes in words)."""


class Captioner:
    """``caption(images, columns, own) -> texts``; ``needs_images`` says whether ``images`` must be decoded.

    ``columns`` holds each input's other columns; ``own`` each input's own caption (empty: none has one).
    """

    needs_images = False
    description = ""

    def caption(
        self, images: Sequence[Image.Image | None], columns: Sequence[dict[str, Any]], own: Captions = ()
    ) -> list[str]:
        raise NotImplementedError


class TemplateCaptioner(Captioner):
    """A fixed sentence, or the input's own caption where it has one."""

    def __init__(self, sentence: str):
        self.sentence = sentence
        self.description = f"template ({sentence!r}; an input's own caption where it has one)"

    def caption(
        self, images: Sequence[Image.Image | None], columns: Sequence[dict[str, Any]], own: Captions = ()
    ) -> list[str]:
        own = list(own) or [None] * len(columns)
        return [text or self.sentence for text in own]


class ColumnCaptioner(Captioner):
    """The text already in a column of the source dataset."""

    def __init__(self, column: str):
        self.column = column
        self.description = f"column {column!r} of the source dataset"

    def caption(
        self, images: Sequence[Image.Image | None], columns: Sequence[dict[str, Any]], own: Captions = ()
    ) -> list[str]:
        return ["" if row.get(self.column) is None else str(row[self.column]) for row in columns]


class BlipCaptioner(Captioner):
    """BLIP image captioning (a Hub id or a local folder, safetensors only), batched, on a GPU if present."""

    needs_images = True

    def __init__(self, model: str = BLIP_DEFAULT, batch_size: int = 16, max_new_tokens: int = 30):
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor

        from controlkit.paths import check_exists

        check_exists(model, "the BLIP captioner")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        try:
            self.processor = BlipProcessor.from_pretrained(model)
            self.model = BlipForConditionalGeneration.from_pretrained(
                model, dtype=dtype, use_safetensors=True
            )
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load the BLIP captioner {model!r}: {first_line(exc)}") from exc
        self.model.to(self.device).eval()
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.description = f"BLIP ({public_name(model)}, {self.device})"

    def caption(
        self, images: Sequence[Image.Image | None], columns: Sequence[dict[str, Any]], own: Captions = ()
    ) -> list[str]:
        import torch

        texts: list[str] = []
        for start in range(0, len(images), self.batch_size):
            batch = [image.convert("RGB") for image in images[start : start + self.batch_size]]
            inputs = self.processor(images=batch, return_tensors="pt").to(self.device, self.model.dtype)
            with torch.inference_mode():
                ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
            texts += [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return texts


class Framed(Captioner):
    """Another captioner's text with a prefix and a suffix (e.g. a trigger word)."""

    def __init__(self, inner: Captioner, prefix: str, suffix: str):
        self.inner, self.prefix, self.suffix = inner, prefix, suffix
        self.needs_images = inner.needs_images
        self.description = inner.description + (f", prefix {prefix!r}" if prefix else "")
        self.description += f", suffix {suffix!r}" if suffix else ""

    def caption(
        self, images: Sequence[Image.Image | None], columns: Sequence[dict[str, Any]], own: Captions = ()
    ) -> list[str]:
        return [f"{self.prefix}{text}{self.suffix}" for text in self.inner.caption(images, columns, own)]


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``template``, ``template:TEXT``, ``blip``, ``blip:MODEL``, ``column:NAME`` -> (kind, argument)."""
    kind, _, argument = spec.partition(":")
    if kind not in ("template", "blip", "column"):
        raise UserError(
            f"unknown captioner {spec!r}; use template, template:TEXT, blip, blip:MODEL or column:NAME"
        )
    if kind == "column" and not argument:
        raise UserError("--captioner column:NAME needs the name of the caption column")
    return kind, argument or None


def make_captioner(
    spec: str,
    *,
    prefix: str = "",
    suffix: str = "",
    default_sentence: str = "a photo",
    batch_size: int = 16,
) -> Captioner:
    """The captioner named by ``--captioner``, with the optional prefix and suffix."""
    kind, argument = parse_spec(spec)
    if kind == "template":
        inner: Captioner = TemplateCaptioner(argument or default_sentence)
    elif kind == "column":
        inner = ColumnCaptioner(argument)
    else:
        inner = BlipCaptioner(argument or BLIP_DEFAULT, batch_size=batch_size)
    return Framed(inner, prefix, suffix) if prefix or suffix else inner
