"""Pictures read the same way by every stage: 8-bit RGB, with high-bit-depth ones scaled, not clipped."""

from __future__ import annotations

import numpy as np
from PIL import Image

HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""PIL's modes of one channel of more than 8 bits: 16-bit grayscale PNG and TIFF open as these (16-bit
RGB(A) files open as 8-bit RGB(A), already scaled by PIL)."""


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB picture; a 16-bit grayscale one is scaled (65535 -> 255), where PIL's ``convert("RGB")``
    clips every value above 255 and turns the picture almost white."""
    if image.mode in HIGH_BIT_MODES:
        values = np.asarray(image).astype(np.float64) / 257  # 65535 / 257 = 255
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    return image.convert("RGB")
