"""Small training datasets and command lines shared by the trainer tests (tests/test_train_*.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def random_images(n: int, size: int = 64, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def make_dataset(
    path: Path, n: int = 8, columns=("image", "conditioning_image", "text"), metadata=None
) -> Path:
    """A save_to_disk dataset of random 64 px pairs, optionally with a controlkit.json."""
    from datasets import Dataset
    from datasets import Image as ImageFeature

    image, conditioning, caption = columns
    dataset = Dataset.from_dict(
        {
            image: random_images(n, seed=1),
            conditioning: random_images(n, seed=2),
            caption: [f"a photo number {i}" for i in range(n)],
        }
    )
    dataset = dataset.cast_column(image, ImageFeature()).cast_column(conditioning, ImageFeature())
    dataset.save_to_disk(str(path))
    if metadata is not None:
        (path / "controlkit.json").write_text(json.dumps(metadata))
    return path


def make_image_folder(path: Path, n: int = 4, extra_line: dict | None = None) -> Path:
    """An image folder with metadata.jsonl naming file_name and conditioning_image_file_name."""
    path.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (image, conditioning) in enumerate(
        zip(random_images(n, seed=3), random_images(n, seed=4), strict=True)
    ):
        image.save(path / f"{i}.png")
        (path / "cond").mkdir(exist_ok=True)
        conditioning.save(path / "cond" / f"{i}.png")
        lines.append(
            {"file_name": f"{i}.png", "conditioning_image_file_name": f"cond/{i}.png", "text": f"face {i}"}
        )
    if extra_line is not None:
        lines.append(extra_line)
    (path / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def train_args(model: Path, dataset: Path, out: Path, *extra: str) -> list[str]:
    """A short, fast training command line on the small model (64 px, batch 2, no tracker)."""
    return [
        f"--pretrained_model_name_or_path={model}",
        f"--dataset_name={dataset}",
        f"--output_dir={out}",
        "--resolution=64",
        "--train_batch_size=2",
        "--learning_rate=1e-4",
        "--lr_warmup_steps=0",
        "--report_to=none",
        "--seed=7",
        *extra,
    ]


def run_training(argv: list[str]) -> list[dict]:
    """Train in this process; returns the metrics.jsonl step records."""
    from controlkit.train.config import TrainConfig
    from controlkit.train.metrics import read_metrics
    from controlkit.train.trainer import train

    output_dir = train(TrainConfig.from_args(argv))
    return [r for r in read_metrics(output_dir) if "loss" in r]


def interrupt_at(monkeypatch, step: int) -> None:
    """Make the run die (like a killed job) when it reaches ``step``."""
    from controlkit.train.metrics import MetricsLog

    original = MetricsLog.write

    def write(self, record):
        if record.get("step") == step:
            raise KeyboardInterrupt
        original(self, record)

    monkeypatch.setattr(MetricsLog, "write", write)


def final_weights(output_dir: Path) -> dict:
    """The trained ControlNet's tensors (saved at the root of output_dir)."""
    from safetensors.torch import load_file

    return load_file(Path(output_dir) / "diffusion_pytorch_model.safetensors")


def same_weights(a: Path, b: Path, atol: float = 1e-6) -> bool:
    """Whether two runs ended with the same ControlNet."""
    import torch

    first, second = final_weights(a), final_weights(b)
    return first.keys() == second.keys() and all(
        torch.allclose(first[k], second[k], atol=atol) for k in first
    )
