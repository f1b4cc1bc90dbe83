"""Pictures people look at instead of numbers: one grid of equal tiles, with optional text around it.

Every sheet controlkit draws (the dataset preview, training's validation grids, generate's panel, the
quickstart's control panel, the demo base's samples) is a grid of image rows made here: a title band
over the columns, a caption under each tile, or one line of text under each row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

WHITE = (255, 255, 255)
TEXT = (20, 20, 20)
MUTED = (128, 128, 128)
CAPTION_SEPARATOR = " · "
"""Tile captions break into lines at this separator (``nme 0.083 · det 1.000``) where the tile is narrow."""


def font_for(tile_width: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Text sized to the tiles: about 14 characters across one tile, never under 10 px."""
    return ImageFont.load_default(size=max(10, tile_width // 14))


def _line_height(font) -> int:
    return int(getattr(font, "size", 10) * 1.25)


def fit_in(image: Image.Image, tile: tuple[int, int], fill=(0, 0, 0)) -> Image.Image:
    """``image`` scaled to fit ``tile`` keeping its aspect ratio, centred on ``fill``."""
    scale = min(tile[0] / image.width, tile[1] / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    canvas = Image.new("RGB", tile, fill)
    resized = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    canvas.paste(resized, ((tile[0] - size[0]) // 2, (tile[1] - size[1]) // 2))
    return canvas


def shorten(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut with ``...`` so that it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int, separator: str = " ") -> list[str]:
    """``text`` in lines that fit ``width`` pixels, broken at ``separator``."""
    lines: list[str] = []
    joiner = "  " if separator.strip() else separator
    for part in text.split(separator):
        if lines and draw.textlength(f"{lines[-1]}{joiner}{part}", font=font) <= width:
            lines[-1] = f"{lines[-1]}{joiner}{part}"
        else:
            lines.append(part)
    return lines


def image_grid(
    rows: Sequence[Sequence[Image.Image | None]],
    tile: tuple[int, int],
    *,
    fit: Literal["stretch", "contain"] = "stretch",
    titles: Sequence[str] = (),
    captions: Sequence[Sequence[str | None]] = (),
    row_text: Sequence[str] = (),
    row_text_lines: int = 1,
    background=WHITE,
) -> Image.Image:
    """Rows of images as equal ``tile`` (w, h) cells, left to right; None leaves a cell empty.

    ``fit``: ``stretch`` resizes each image to the tile, ``contain`` keeps its aspect ratio on black.
    ``titles``: a band above the grid with one title per column. ``captions``: per row, the text under
    each cell (None for none; lines break at ``CAPTION_SEPARATOR``). ``row_text``: per row, text under the
    whole row, wrapped to at most ``row_text_lines`` lines (the last one shortened with ``...``).
    """
    columns = max((len(row) for row in rows), default=1) or 1
    font = font_for(tile[0])
    line = _line_height(font)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [
        [wrap(probe, text, font, tile[0] - 4, CAPTION_SEPARATOR) if text else [] for text in row_captions]
        for row_captions in captions
    ]
    caption_band = max((len(lines) for row in wrapped for lines in row), default=0)
    caption_band = caption_band * line + 6 if caption_band else 0
    text_band = row_text_lines * line + 6 if row_text else 0
    title_band = line + 8 if titles else 0
    row_height = tile[1] + caption_band + text_band
    sheet = Image.new("RGB", (columns * tile[0], title_band + len(rows) * row_height), background)
    draw = ImageDraw.Draw(sheet)
    for c, title in enumerate(titles):
        draw.text((c * tile[0] + 6, 4), shorten(draw, title, font, tile[0] - 8), fill=MUTED, font=font)
    for r, row in enumerate(rows):
        top = title_band + r * row_height
        for c, image in enumerate(row):
            if image is None:
                continue
            if fit == "contain":
                cell = fit_in(image, tile)
            else:
                cell = image.convert("RGB").resize(tile, Image.Resampling.LANCZOS)
            sheet.paste(cell, (c * tile[0], top))
        for c, lines in enumerate(wrapped[r] if r < len(wrapped) else []):
            for k, text in enumerate(lines):
                draw.text((c * tile[0] + 2, top + tile[1] + 3 + k * line), text, fill=TEXT, font=font)
        if r < len(row_text):
            width = columns * tile[0] - 8
            lines = wrap(draw, row_text[r], font, width)
            if len(lines) > row_text_lines:
                lines = lines[: row_text_lines - 1] + [" ".join(lines[row_text_lines - 1 :])]
            for k, text in enumerate(lines):
                y = top + tile[1] + caption_band + 3 + k * line
                draw.text((4, y), shorten(draw, text, font, width), fill=TEXT, font=font)
    return sheet


def square_grid(images: Sequence[Image.Image], tile: tuple[int, int] | None = None) -> Image.Image:
    """Images in a near-square grid (``ceil(sqrt(n))`` columns), each at ``tile`` (default: its own size)."""
    columns = max(1, math.ceil(math.sqrt(len(images))))
    rows = [list(images[i : i + columns]) for i in range(0, len(images), columns)]
    return image_grid(rows, tile or images[0].size)
