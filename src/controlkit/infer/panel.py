"""The side-by-side panel people look at: photo | conditioning | outputs, each output's scores below it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from PIL import Image

from controlkit.pictures import image_grid

MIN_TILE = 128
"""Tiles are the output size scaled up by a whole factor to at least this many pixels, so captions fit."""


def score_caption(scores: dict[str, float], labels: Mapping[str, str] | None = None) -> str:
    """A one-line caption, ``landmark_nme 0.083 · detection_rate 1.000``, or with the condition's short
    ``labels`` (``Condition.score_labels``) ``nme 0.083 · det 1.000`` where space is short; NaN is ``n/a``."""
    labels = labels or {}
    parts = []
    for key, value in scores.items():
        shown = "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.3f}"
        parts.append(f"{labels.get(key, key)} {shown}")
    return " · ".join(parts)


def tile_size(size: tuple[int, int]) -> tuple[int, int]:
    """The panel's tile for outputs of ``size`` (w, h)."""
    factor = max(1, math.ceil(MIN_TILE / min(size)))
    return size[0] * factor, size[1] * factor


def make_panel(
    conditioning: Image.Image,
    outputs: Sequence[Image.Image],
    photo: Image.Image | None = None,
    captions: Sequence[str] = (),
) -> Image.Image:
    """One row of equal tiles (``tile_size``): [photo] | conditioning | outputs, captions under the outputs.

    The panel is ``(2 + n)`` tiles wide with a photo, ``(1 + n)`` without; the caption band is left out
    when there are no captions.
    """
    tile = tile_size(outputs[0].size if outputs else conditioning.size)
    inputs = ([photo] if photo is not None else []) + [conditioning]
    under = [[None] * len(inputs) + list(captions)] if captions else []
    return image_grid([[*inputs, *outputs]], tile, captions=under)
