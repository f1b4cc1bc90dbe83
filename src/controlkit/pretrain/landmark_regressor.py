"""Train the face-landmarks regressor that ships in ``conditions/detectors/landmark_regressor``.

A tiny CNN (image -> 68 iBUG points) learns the synthetic faces' exact landmarks, with blur, noise, colour and
flip augmentation so it also reads the softer faces a diffusion model draws. Run it again with
``python -m controlkit.pretrain.landmark_regressor`` (``--help`` explains every flag).
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
from tqdm.auto import tqdm

from controlkit import flags
from controlkit.conditions.detectors.regressor import (
    SHIPPED,
    WEIGHTS,
    WIDTH,
    LandmarkRegressor,
    RegressorDetector,
    to_tensor,
)
from controlkit.conditions.face_landmarks import flip_landmarks, landmark_scores
from controlkit.conditions.geometry import box_downsample
from controlkit.flags import option


@dataclass
class RegressorConfig:
    """How the shipped regressor was trained (the defaults)."""

    out: Path = option(SHIPPED, "where the weights, config.json and PROVENANCE.json are written")
    images: int = option(4000, "synthetic training faces")
    held_out: int = option(300, "held-out faces the final NME is measured on")
    resolution: int = option(64, "the faces' size in pixels, as the detector sees them")
    render_size: int = option(128, "faces are drawn at this size, then reduced with a box filter")
    steps: int = option(2000, "training steps (at most)")
    minutes: float = option(20.0, "training time cap in minutes")
    batch_size: int = option(16, "faces per step")
    lr: float = option(2e-3, "peak learning rate of the one-cycle schedule (AdamW)")
    seed: int = option(1, "seed of the faces, the augmentation and the weights")
    threads: int = option(1, "torch CPU threads")


def _faces(config: RegressorConfig, count: int, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    """Synthetic faces drawn as the demo base saw them, with landmarks moved to the reduced pixel grid."""
    from controlkit.data.synthetic_faces import synthetic_faces

    images, points = [], []
    scale = config.resolution / config.render_size
    for face in tqdm(synthetic_faces(count, seed=seed, size=config.render_size), total=count, desc="faces"):
        images.append(box_downsample(face.image, config.resolution))
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
        "command": f"python -m {__spec__.name}" + ("" if out == SHIPPED else f" --out {out}"),
        "settings": {k: v for k, v in asdict(config).items() if k != "out"},
        "steps": step,
        "wall_time_minutes": round((time.monotonic() - started) / 60, 1),
        "final_loss": round(float(np.mean(losses)), 5) if losses else math.nan,
        "held_out": {"faces": config.held_out, **{k: round(v, 4) for k, v in scores.items()}},
    }
    (out / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__)
    flags.add_arguments(parser, RegressorConfig)
    provenance = train_regressor(flags.from_namespace(RegressorConfig, parser.parse_args(argv)))
    print(json.dumps(provenance["held_out"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
