"""A small landmark regressor for small faces (64 px): the face-landmarks detector where dlib's reach ends.

dlib's HOG detector cannot see faces this small, so a tiny CNN (image -> 68 iBUG points), trained on the
synthetic faces' exact landmarks with blur, noise, colour and flip augmentation (so it also reads the softer
faces a diffusion model draws), finds them instead. It assumes one face filling the picture. Select it with
``get("face-landmarks", detector="regressor")``; its weights ship in ``landmark_regressor/``.

Make the weights again with ``python -m controlkit.pretrain.landmark_regressor``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from controlkit.conditions.geometry import box_downsample

SHIPPED = Path(__file__).parent / "landmark_regressor"
WEIGHTS = "model.safetensors"
WIDTH = 32


class LandmarkRegressor(nn.Module):
    """Heatmaps and a soft-argmax: each point is the expected position under its own 16 x 16 softmax map.

    Convolutions are translation-equivariant and the soft-argmax is exact arithmetic on positions, so this
    learns in minutes where a global linear head (image -> 136 numbers) needs hours; dilated layers give
    each map the whole face as context (which eye is the left one).
    """

    def __init__(self, width: int = 32):
        super().__init__()

        def block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
            conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation)
            return [conv, nn.BatchNorm2d(c_out), nn.SiLU()]

        self.features = nn.Sequential(
            *block(3, width // 2, stride=2),
            *block(width // 2, width),
            *block(width, width, stride=2),
            *block(width, width, dilation=2),
            *block(width, width, dilation=4),
            *block(width, width, dilation=8),
            *block(width, width),
        )
        self.heatmaps = nn.Conv2d(width, 68, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, 64, 64) in [-1, 1] -> landmarks (N, 68, 2) in [0, 1] of the width/height."""
        maps = self.heatmaps(self.features(images))
        n, k, h, w = maps.shape
        weights = maps.flatten(2).softmax(-1).view(n, k, h, w)
        xs = (torch.arange(w, dtype=maps.dtype) + 0.5) / w
        ys = (torch.arange(h, dtype=maps.dtype) + 0.5) / h
        return torch.stack([(weights.sum(2) * xs).sum(-1), (weights.sum(3) * ys).sum(-1)], dim=-1)


def to_tensor(images: list[Image.Image], resolution: int) -> torch.Tensor:
    arrays = [np.asarray(box_downsample(image, resolution)) for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class RegressorDetector:
    """The face-landmarks detector interface over the regressor: one face per image, in its pixels."""

    name = "controlkit-landmark-regressor"

    def __init__(self, path: str | Path = SHIPPED):
        from safetensors.torch import load_file

        path = Path(path)
        settings = json.loads((path / "config.json").read_text())
        self.resolution = settings["resolution"]
        self.model = LandmarkRegressor(settings["width"])
        self.model.load_state_dict(load_file(path / WEIGHTS))
        self.model.eval()

    def version(self) -> str:
        return "controlkit landmark regressor, 64 px"

    @torch.no_grad()
    def predict(self, images: list[Image.Image]) -> np.ndarray:
        """Landmarks (N, 68, 2) in each image's own pixel frame (pixel centres at integers)."""
        unit = self.model(to_tensor(images, self.resolution)).numpy()
        sizes = np.array([image.size for image in images], dtype=np.float32)[:, None, :]
        return (unit * sizes - 0.5).astype(np.float32)

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.predict([image])
