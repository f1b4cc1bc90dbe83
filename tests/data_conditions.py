"""Tiny conditions for the tests, fast and exact, so the tests check the pipeline rather than a detector.

``white-square`` "detects" the white square in a picture, for the data builder (sources, skipping, shards,
resume, resize): ``delay`` slows each annotation down and ``marker_dir`` gets one file per annotated image,
so the interruption tests can stop a build part-way through. ``Brightness`` (the mean grey level) stands
for a third-party condition in the registry and trainer tests.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from controlkit.conditions import Condition, register


def square_picture(
    size: tuple[int, int], box: tuple[int, int, int, int] | None, colour="navy"
) -> Image.Image:
    """A plain picture with a white square at ``box`` (left, top, right, bottom, inclusive), or none."""
    image = Image.new("RGB", size, colour)
    if box is not None:
        ImageDraw.Draw(image).rectangle(box, fill="white")
    return image


@register("white-square")
class WhiteSquare(Condition):
    """Annotation: float32 (1, 2, 2), the top-left and bottom-right white pixels' (x, y)."""

    name = "white-square"

    def __init__(self, delay: float = 0.0, marker_dir: str | None = None):
        self.delay, self.marker_dir = delay, marker_dir

    def annotate(self, image: Image.Image) -> np.ndarray | None:
        time.sleep(self.delay)
        if self.marker_dir:
            (Path(self.marker_dir) / uuid.uuid4().hex).touch()
        ys, xs = np.nonzero(np.asarray(image.convert("L")) > 200)
        if len(xs) == 0:
            return None
        return np.array([[[xs.min(), ys.min()], [xs.max(), ys.max()]]], np.float32)

    def render(self, annotation: np.ndarray, size: tuple[int, int]) -> Image.Image:
        canvas = Image.new("RGB", size)
        (x0, y0), (x1, y1) = annotation[0].round().astype(int).tolist()
        ImageDraw.Draw(canvas).rectangle((x0, y0, x1, y1), outline="lime")
        return canvas

    def score(self, generated: Image.Image, annotation: np.ndarray) -> dict[str, float]:
        found = self.annotate(generated)
        return {"corner_error": float("nan") if found is None else float(np.abs(found - annotation).mean())}

    def flip(self, annotation: np.ndarray, width: int) -> np.ndarray:
        flipped = annotation.copy()
        flipped[..., 0] = width - 1 - annotation[..., 0]
        return flipped[:, ::-1]

    def to_record(self, annotation: np.ndarray) -> Any:
        return np.asarray(annotation, np.float32).tolist()

    def from_record(self, record: Any) -> np.ndarray:
        return np.asarray(record, np.float32)


class Brightness(Condition):
    """Annotation: float32 (1,), the mean grey level from 0 to 1, times ``scale``."""

    name = "brightness"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def annotate(self, image: Image.Image) -> np.ndarray:
        return np.float32([np.asarray(image.convert("L"), np.float32).mean() / 255 * self.scale])

    def render(self, annotation: np.ndarray, size: tuple[int, int] = (64, 64)) -> Image.Image:
        return Image.new("RGB", size, (int(annotation[0] * 255),) * 3)

    def score(self, generated: Image.Image, annotation: np.ndarray) -> dict[str, float]:
        return {"brightness_error": float(abs(self.annotate(generated)[0] - annotation[0]))}

    def flip(self, annotation: np.ndarray, width: int) -> np.ndarray:
        return annotation

    def to_record(self, annotation: np.ndarray) -> Any:
        return np.asarray(annotation, np.float32).tolist()

    def from_record(self, record: Any) -> np.ndarray:
        return np.asarray(record, np.float32)


class PlainSquare:
    """A plug-in that follows the interface without subclassing ``Condition`` (and has no ``name``)."""

    nothing_found = "no square here"

    def annotate(self, image: Image.Image) -> np.ndarray | None:
        return None

    def render(self, annotation: np.ndarray, size: tuple[int, int]) -> Image.Image:
        return Image.new("RGB", size)
