"""Resize-and-centre-crop shared by images and annotations, so landmarks and edges move with the photo.

Pixel convention: a point (x, y) is in pixel units with pixel centres at integers (the centre of the
top-left pixel is (0, 0), as dlib, OpenCV and the rendered canvas use). The resize covers the target
(the shorter side is scaled to fit, as diffusers' ``Resize(resolution)`` + ``CenterCrop(resolution)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ResizeCrop:
    """Resize ``source`` to ``resized`` (both (w, h)), then crop ``size`` at (``left``, ``top``)."""

    source: tuple[int, int]
    resized: tuple[int, int]
    left: int
    top: int
    size: tuple[int, int]

    def points(self, xy: np.ndarray) -> np.ndarray:
        """Move (..., 2) pixel coordinates from the source image into the cropped one."""
        sx = self.resized[0] / self.source[0]
        sy = self.resized[1] / self.source[1]
        out = np.array(xy, dtype=np.float32, copy=True)
        out[..., 0] = (out[..., 0] + 0.5) * sx - 0.5 - self.left
        out[..., 1] = (out[..., 1] + 0.5) * sy - 0.5 - self.top
        return out

    def image(self, image: Image.Image, resample: int = Image.Resampling.BICUBIC) -> Image.Image:
        """Apply the same resize and crop to an image."""
        if image.size != self.resized:
            image = image.resize(self.resized, resample=resample)
        return image.crop((self.left, self.top, self.left + self.size[0], self.top + self.size[1]))


def resize_center_crop_geometry(from_size: tuple[int, int], to_size: tuple[int, int]) -> ResizeCrop:
    """The resize (aspect kept, covering ``to_size``) and the centred crop from one size to another."""
    (w, h), (tw, th) = from_size, to_size
    scale = max(tw / w, th / h)
    rw, rh = max(tw, round(w * scale)), max(th, round(h * scale))
    return ResizeCrop((w, h), (rw, rh), (rw - tw) // 2, (rh - th) // 2, (tw, th))


def resize_center_crop_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize-and-centre-crop a photo to ``size`` (w, h); use the same geometry on its annotation."""
    return resize_center_crop_geometry(image.size, size).image(image)


def box_downsample(image: Image.Image, resolution: int) -> Image.Image:
    """An RGB square of ``resolution`` px reduced with a box filter: smooth edges, the look of a face drawn
    larger and reduced (the synthetic faces, the demo base and the landmark regressor all see this)."""
    return image.convert("RGB").resize((resolution, resolution), Image.Resampling.BOX)
