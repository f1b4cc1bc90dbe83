"""What a condition is: annotate a photo, render the annotation, score a generated image."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

Annotation = np.ndarray
"""Plain, serialisable data: (faces, 68, 2) float32 landmarks in pixels, an (H, W) uint8 edge map, ..."""


@runtime_checkable
class Condition(Protocol):
    name: str

    def annotate(self, image: Image.Image) -> Annotation | None:
        """Photo -> annotation; None when nothing is found (no face, say)."""

    def render(self, annotation: Annotation, size: tuple[int, int]) -> Image.Image:
        """Annotation -> the RGB conditioning image the ControlNet sees; size is (width, height)."""

    def score(self, generated: Image.Image, annotation: Annotation) -> dict[str, float]:
        """Adherence: annotate the generated image again and compare it with ``annotation``."""

    def flip(self, annotation: Annotation, width: int) -> Annotation:
        """The annotation of the horizontally flipped image, keeping its meaning (left/right swapped)."""

    def to_record(self, annotation: Annotation) -> Any:
        """Annotation -> a value a ``datasets`` column can store (nested lists)."""

    def from_record(self, record: Any) -> Annotation:
        """The inverse of ``to_record``."""
