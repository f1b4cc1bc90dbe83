"""A tiny condition for the data-builder tests: it "detects" the white square in a picture.

Fast and exact, so the tests check the pipeline (sources, skipping, shards, resume, resize) rather than
a detector. ``delay`` slows each annotation down and ``marker_dir`` gets one file per annotated image,
so the interruption tests can stop a build part-way through.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from controlkit.conditions import register


def square_picture(
    size: tuple[int, int], box: tuple[int, int, int, int] | None, colour="navy"
) -> Image.Image:
    """A plain picture with a white square at ``box`` (left, top, right, bottom, inclusive), or none."""
    image = Image.new("RGB", size, colour)
    if box is not None:
        ImageDraw.Draw(image).rectangle(box, fill="white")
    return image


class WhiteSquare:
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


@register("white-square")
def white_square(**options: Any) -> WhiteSquare:
    return WhiteSquare(**options)
