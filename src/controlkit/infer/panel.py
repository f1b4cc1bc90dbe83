"""The side-by-side panel people look at: photo | conditioning | outputs, each output's scores below it."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
MIN_TILE = 128
"""Tiles are the output size scaled up by a whole factor to at least this many pixels, so captions fit."""

_SHORT_NAMES = {"landmark_nme": "nme", "detection_rate": "det", "edge_f1": "f1"}


def score_caption(scores: dict[str, float], short: bool = True) -> str:
    """A one-line caption, ``nme 0.083 · det 1.000`` (full key names unless ``short``); NaN is ``n/a``."""
    parts = []
    for key, value in scores.items():
        shown = "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.3f}"
        parts.append(f"{_SHORT_NAMES.get(key, key) if short else key} {shown}")
    return " · ".join(parts)


def tile_size(size: tuple[int, int]) -> tuple[int, int]:
    """The panel's tile for outputs of ``size`` (w, h)."""
    factor = max(1, math.ceil(MIN_TILE / min(size)))
    return size[0] * factor, size[1] * factor


def _font(tile_width: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(8, tile_width // 14))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """Split a caption at its `` · `` separators so each line fits the tile width."""
    lines: list[str] = []
    for part in text.split(" · "):
        if lines and draw.textlength(f"{lines[-1]}  {part}", font=font) <= width:
            lines[-1] = f"{lines[-1]}  {part}"
        else:
            lines.append(part)
    return lines


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
    tiles = ([photo] if photo is not None else []) + [conditioning, *outputs]
    first_output = len(tiles) - len(outputs)
    font = _font(tile[0])
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [_wrap(probe, caption, font, tile[0] - 4) for caption in captions]
    line_height = int(font.size * 1.25) if hasattr(font, "size") else 12
    band = (max(len(lines) for lines in wrapped) * line_height + 6) if wrapped else 0

    panel = Image.new("RGB", (tile[0] * len(tiles), tile[1] + band), BACKGROUND)
    draw = ImageDraw.Draw(panel)
    for i, image in enumerate(tiles):
        panel.paste(image.convert("RGB").resize(tile, Image.Resampling.LANCZOS), (i * tile[0], 0))
    for j, lines in enumerate(wrapped):
        x = (first_output + j) * tile[0] + 2
        for k, line in enumerate(lines):
            draw.text((x, tile[1] + 3 + k * line_height), line, fill=TEXT, font=font)
    return panel
