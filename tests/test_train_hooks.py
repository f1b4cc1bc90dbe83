"""The trainer's hooks into validation and Hub publishing: called when asked, with the trained model."""

from __future__ import annotations

import json

import pytest

from controlkit.conditions import register
from controlkit.errors import UserError
from controlkit.train.metrics import read_metrics
from data_conditions import Brightness
from train_helpers import make_dataset, run_training, train_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")

register("test-brightness")(Brightness)


def test_validation_runs_every_validation_steps_and_its_scores_reach_metrics(small_model_dir, tmp_path):
    meta = {"condition": "test-brightness", "condition_options": {}}
    dataset = make_dataset(tmp_path / "ds", n=4, metadata=meta)
    from datasets import load_from_disk

    rows = load_from_disk(str(dataset)).add_column("annotation", [[0.5]] * 4)
    rows.save_to_disk(str(tmp_path / "ds2"))
    (tmp_path / "ds2" / "controlkit.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    extra = [
        "--max_train_steps=2",
        "--validation_steps=2",
        "--validation_rows=1",
        "--num_validation_images=1",
    ]
    extra += ["--validation_inference_steps=2", "--report_to=tensorboard"]
    run_training(train_args(small_model_dir, tmp_path / "ds2", out, *extra))
    assert (out / "validation" / "step-2.png").is_file()
    scored = [r for r in read_metrics(out) if "validation" in r]
    assert len(scored) == 1 and scored[0]["step"] == 2
    assert 0 <= next(iter(scored[0]["validation"].values())) <= 1
    assert json.loads((out / "controlkit.json").read_text())["condition"] == "test-brightness"
    assert list((out / "logs" / "train_controlnet").rglob("events.out.tfevents.*"))


def test_a_missing_tracker_package_names_its_extra(small_model_dir, tmp_path):
    try:
        import wandb  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match=r"pip install 'controlkit\[wandb\]'"):
            run_training(train_args(small_model_dir, tmp_path / "ds", tmp_path / "out", "--report_to=wandb"))
    else:
        pytest.skip("wandb is installed")


def test_push_to_hub_without_a_token_fails_before_training(small_model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    dataset = make_dataset(tmp_path / "ds", n=2)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="token"):
        run_training(train_args(small_model_dir, dataset, out, "--push_to_hub", "--max_train_steps=1"))
    assert not list(out.glob("*.safetensors")) and not (out / "metrics.jsonl").exists()


def test_a_missing_validation_image_is_one_line_before_anything_is_written(small_model_dir, tmp_path):
    dataset = make_dataset(tmp_path / "ds", n=2)
    out = tmp_path / "out"
    argv = train_args(small_model_dir, dataset, out, "--validation_prompt=a face")
    with pytest.raises(UserError, match=r"^--validation_image not found: .*nowhere\.png$"):
        run_training([*argv, "--validation_image", str(tmp_path / "nowhere.png")])
    assert not out.exists()
