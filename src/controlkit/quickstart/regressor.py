"""A small landmark regressor for 64 px faces: quickstart's adherence metric.

dlib's HOG detector cannot see faces this small, so quickstart scores generated faces with a tiny CNN
(image -> 68 iBUG points) trained on the synthetic faces' exact landmarks, with blur, noise, colour and flip
augmentation so it also reads the softer faces a diffusion model draws. It is a face-landmarks detector
(``PIL image -> (1, 68, 2)``) that plugs into the condition: ``get("face-landmarks", detector=regressor)``.

Make it again with ``python -m controlkit.quickstart.regressor --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch import nn
from tqdm.auto import tqdm

from controlkit.conditions.face_landmarks import flip_landmarks, landmark_scores
from controlkit.quickstart.pretrain import downsample_face

SHIPPED = Path(__file__).parent / "landmark_regressor"
WEIGHTS = "model.safetensors"
WIDTH = 32


@dataclass
class RegressorConfig:
    """How the shipped regressor was trained (the defaults)."""

    out: Path = SHIPPED
    images: int = 4000
    held_out: int = 300
    resolution: int = 64
    render_size: int = 128
    steps: int = 2000
    minutes: float = 20.0
    batch_size: int = 16
    lr: float = 2e-3
    seed: int = 1
    threads: int = 1


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
    arrays = [np.asarray(downsample_face(image, resolution)) for image in images]
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
        return "quickstart-64px"

    @torch.no_grad()
    def predict(self, images: list[Image.Image]) -> np.ndarray:
        """Landmarks (N, 68, 2) in each image's own pixel frame (pixel centres at integers)."""
        unit = self.model(to_tensor(images, self.resolution)).numpy()
        sizes = np.array([image.size for image in images], dtype=np.float32)[:, None, :]
        return (unit * sizes - 0.5).astype(np.float32)

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.predict([image])


def _faces(config: RegressorConfig, count: int, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    """Synthetic faces drawn as the demo base saw them, with landmarks moved to the reduced pixel grid."""
    from controlkit.data.synthetic_faces import synthetic_faces

    images, points = [], []
    scale = config.resolution / config.render_size
    for face in tqdm(synthetic_faces(count, seed=seed, size=config.render_size), total=count, desc="faces"):
        images.append(downsample_face(face.image, config.resolution))
        points.append((face.landmarks + 0.5) * scale - 0.5)
    return images, np.stack(points).astype(np.float32)


def _augment(
    image: Image.Image, points: np.ndarray, rng: np.random.Generator
) -> tuple[Image.Image, np.ndarray]:
    """Blur, colour, noise and flips: generated faces are softer and noisier than the drawn ones."""
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        points = flip_landmarks(points, image.width)[0]
    if rng.random() < 0.7:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    array = np.asarray(image).astype(np.float32)
    array = array * rng.uniform(0.8, 1.2, size=3) + rng.uniform(-20, 20, size=3)
    array += rng.normal(0, rng.uniform(0, 8), size=array.shape)
    return Image.fromarray(array.clip(0, 255).astype(np.uint8)), points


def held_out_nme(
    detector: RegressorDetector, images: list[Image.Image], points: np.ndarray
) -> dict[str, float]:
    found = detector.predict(images)
    scores = [landmark_scores(f[None], p[None]) for f, p in zip(found, points, strict=True)]
    return {key: float(np.nanmean([s[key] for s in scores])) for key in scores[0]}


def train_regressor(config: RegressorConfig) -> dict:
    """Train, save (safetensors + config.json + PROVENANCE.json) and return the held-out scores."""
    from safetensors.torch import save_file

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    started = time.monotonic()
    images, points = _faces(config, config.images, config.seed)
    test_images, test_points = _faces(config, config.held_out, config.seed + 10_000)
    model = LandmarkRegressor(WIDTH)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, config.lr, total_steps=config.steps, pct_start=0.1
    )
    train_start, step, losses = time.monotonic(), 0, []
    bar = tqdm(total=config.steps, desc="regressor")
    while step < config.steps and time.monotonic() - train_start < config.minutes * 60:
        batch = [
            _augment(images[i], points[i], rng) for i in rng.integers(len(images), size=config.batch_size)
        ]
        x = to_tensor([b[0] for b in batch], config.resolution)
        y = torch.from_numpy((np.stack([b[1] for b in batch]) + 0.5) / config.resolution)
        loss = F.smooth_l1_loss(model(x), y, beta=0.01)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        step += 1
        losses = (losses + [loss.item()])[-100:]
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses):.4f}")
    bar.close()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / WEIGHTS)
    (out / "config.json").write_text(json.dumps({"width": WIDTH, "resolution": config.resolution}) + "\n")
    scores = held_out_nme(RegressorDetector(out), test_images, test_points)
    provenance = {
        "command": "python -m controlkit.quickstart.regressor" + ("" if out == SHIPPED else f" --out {out}"),
        "settings": {k: v for k, v in asdict(config).items() if k != "out"},
        "steps": step,
        "wall_time_minutes": round((time.monotonic() - started) / 60, 1),
        "final_loss": round(float(np.mean(losses)), 5) if losses else math.nan,
        "held_out": {"faces": config.held_out, **{k: round(v, 4) for k, v in scores.items()}},
    }
    (out / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = RegressorConfig()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    provenance = train_regressor(RegressorConfig(**vars(parser.parse_args(argv))))
    print(json.dumps(provenance["held_out"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
