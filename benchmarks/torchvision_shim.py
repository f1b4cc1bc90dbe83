"""A stand-in for the few ``torchvision.transforms`` the diffusers ControlNet example uses, for benchmarks.

PyPI's torchvision does not import beside the CPU build of torch this project pins, and the reference
trainer (``examples/controlnet/train_controlnet.py``) imports it only for ``Compose``, ``Resize`` (the
shorter side, bilinear), ``CenterCrop``, ``ToTensor`` and ``Normalize``. ``write_shim(folder)`` writes a
``torchvision`` package with those five into ``folder``, to put on the reference run's ``PYTHONPATH`` only;
each follows what torchvision does to a PIL image (PIL's antialiased bilinear resize, the rounded centre
crop, uint8 HWC to float CHW in [0, 1]), so the reference does the same per-step work as with torchvision.
"""

from __future__ import annotations

from pathlib import Path

TRANSFORMS = '''
"""Compose, Resize, CenterCrop, ToTensor, Normalize on PIL images, as torchvision does them."""
import enum

import numpy as np
import torch
from PIL import Image


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


_PIL = {
    InterpolationMode.NEAREST: Image.Resampling.NEAREST,
    InterpolationMode.BILINEAR: Image.Resampling.BILINEAR,
    InterpolationMode.BICUBIC: Image.Resampling.BICUBIC,
}


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, image):
        for transform in self.transforms:
            image = transform(image)
        return image


class Resize:
    def __init__(self, size, interpolation=InterpolationMode.BILINEAR):
        self.size, self.interpolation = size, interpolation

    def __call__(self, image):
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.size, int(self.size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        return image.resize((new_w, new_h), _PIL[self.interpolation])


class CenterCrop:
    def __init__(self, size):
        self.size = size

    def __call__(self, image):
        w, h = image.size
        top, left = int(round((h - self.size) / 2.0)), int(round((w - self.size) / 2.0))
        return image.crop((left, top, left + self.size, top + self.size))


class ToTensor:
    def __call__(self, image):
        array = np.array(image, copy=True)
        tensor = torch.from_numpy(array).view(image.size[1], image.size[0], len(image.getbands()))
        return tensor.permute(2, 0, 1).contiguous().float().div(255)


class Normalize:
    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, tensor):
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=tensor.dtype).view(-1, 1, 1)
        return (tensor - mean) / std
'''


def write_shim(folder: Path) -> Path:
    """Write ``folder/torchvision`` (the package and its ``transforms``); returns ``folder``."""
    package = Path(folder) / "torchvision"
    (package / "transforms").mkdir(parents=True, exist_ok=True)
    init = '"""A benchmark stand-in: transforms only."""\n__version__ = "0.0"\n'
    (package / "__init__.py").write_text(init)
    (package / "transforms" / "__init__.py").write_text(TRANSFORMS.lstrip())
    return Path(folder)
