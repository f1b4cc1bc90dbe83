"""The training loop: outputs, resume, cache, checkpoints, NaN stop, and what each flag group changes."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from controlkit.metadata import read_metadata
from train_helpers import make_dataset, run_training, train_args


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "pairs", metadata={"condition": "canny"})


def test_trains_and_saves_a_diffusers_controlnet(small_model_dir, dataset, tmp_path):
    from diffusers import ControlNetModel

    out = tmp_path / "out"
    records = run_training(train_args(small_model_dir, dataset, out, "--max_train_steps=3"))
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(r["loss"] > 0 and r["images_per_s"] > 0 and r["peak_memory_mb"] > 0 for r in records)
    assert records[0]["lr"] == pytest.approx(1e-4)
    controlnet = ControlNetModel.from_pretrained(out)
    assert isinstance(controlnet, ControlNetModel)
    assert (out / "diffusion_pytorch_model.safetensors").is_file() and not list(out.rglob("*.bin"))
    meta = read_metadata(out)
    assert meta["base_model"] == str(small_model_dir) and meta["condition"] == "canny"
    assert meta["resolution"] == 64 and meta["dataset"] == str(dataset)
    effective = yaml.safe_load((out / "train_config.yaml").read_text())
    assert effective["max_train_steps"] == 3 and effective["seed"] == 7 and "hub_token" not in effective
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1
    assert torch.isfinite(next(controlnet.parameters())).all()
