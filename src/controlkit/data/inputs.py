"""What a source hands the per-image function: small picklable items that know how to load themselves.

An item travels to a worker process (fork, spawn or a Ray actor) and is loaded there, so the main process
never decodes or renders the inputs. Loading gives the picture and whatever the input brings with it: the
original bytes to store unchanged, its own ground-truth annotation, its own caption, its other columns.
What is special about one source (the synthetic faces' rendering, landmarks and attribute captions) is
its items' ``load``, not a branch of the per-image function. Every picture becomes 8-bit RGB through
``to_rgb``, which scales high-bit-depth pictures down instead of clipping them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from controlkit.images import HIGH_BIT_MODES, to_rgb


class InputError(Exception):
    """An input that cannot be used (a corrupt file, say); its message is the reason the input is skipped."""


@dataclass
class Loaded:
    """One loaded input: the RGB picture, and what it brings along (None where it brings nothing).

    ``data`` and ``image_format`` are the original encoded bytes and their format, stored as they came
    unless the picture is resized; ``ground_truth`` is the input's own annotation, in the format its
    source declares (``Source.annotation_format``); ``caption`` its own caption; ``columns`` the source's
    other columns (what ``--captioner column:NAME`` reads).
    """

    image: Image.Image
    data: bytes | None = None
    image_format: str | None = None
    ground_truth: np.ndarray | None = None
    caption: str | None = None
    columns: dict[str, Any] = field(default_factory=dict)


@dataclass
class InputItem:
    """One input: ``key`` is unique and stable across runs, ``source`` is what the dataset records."""

    key: str
    source: str

    def load(self, resolution: int | None) -> Loaded:
        """The input, loaded; ``resolution`` is the build's (a generated input is drawn at that size)."""
        raise NotImplementedError


@dataclass
class FileItem(InputItem):
    """An encoded image: a file (``path``) or bytes (``data``, from a dataset's image column)."""

    path: str | None = None
    data: bytes | None = None
    columns: dict[str, Any] = field(default_factory=dict)

    def load(self, resolution: int | None) -> Loaded:
        """The picture; its original bytes are kept unless it has more than 8 bits a channel (a trainer
        that decodes them with PIL's ``convert("RGB")`` would see it clipped, almost white)."""
        data = self.data if self.data is not None else Path(self.path).read_bytes()
        try:
            image, image_format, mode = _decode(data)
        except UnidentifiedImageError as exc:
            raise InputError("cannot decode image: unknown or corrupt format") from exc
        except Exception as exc:
            raise InputError(f"cannot decode image: {exc}".splitlines()[0]) from exc
        original = None if mode in HIGH_BIT_MODES else data
        return Loaded(image, data=original, image_format=image_format, columns=self.columns)


def _decode(data: bytes) -> tuple[Image.Image, str | None, str]:
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        image = to_rgb(ImageOps.exif_transpose(opened))
        return image, opened.format, opened.mode


def decode(data: bytes) -> tuple[Image.Image, str | None]:
    """Bytes -> RGB image upright as ``datasets`` shows it (EXIF orientation applied), and its format."""
    image, image_format, _ = _decode(data)
    return image, image_format


class Source:
    """A finite, ordered list of inputs.

    ``annotation_format`` is the format of the ground-truth annotations its inputs carry (e.g. "ibug-68"),
    None when they carry none; ``--landmarks ground-truth`` needs it to match the condition's.
    """

    description: str
    columns: tuple[str, ...] = ()
    annotation_format: str | None = None
    ignored: Sequence[dict[str, str]] = ()
    """Files the source found and does not read, each ``{"source", "reason"}`` (the card lists them)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def items(self, skip: set[str] = frozenset(), limit: int | None = None) -> Iterator[InputItem]:
        raise NotImplementedError
