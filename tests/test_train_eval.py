"""`controlkit train --eval_steps`: the evaluator during training logs its figures and changes nothing."""

from __future__ import annotations

import json

import pytest

from controlkit.train.metrics import read_metrics
from eval_helpers import faces_dataset, write_tiny_clip
from train_helpers import run_training, train_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SHORT = ("--max_train_steps=4", "--checkpointing_steps=100", "--validation_inference_steps=2")


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return faces_dataset(tmp_path_factory.mktemp("faces") / "ds", 8)


def test_training_with_eval_steps_trains_exactly_as_without(small_model_dir, faces, tmp_path, capsys):
    subset = "--max_train_samples=5"  # 3 rows held out for the evaluation
    without = run_training(train_args(small_model_dir, faces, tmp_path / "off", *SHORT, subset))
    evaluated = ("--eval_steps=2", "--eval_samples=3")
    with_eval = run_training(train_args(small_model_dir, faces, tmp_path / "on", *SHORT, subset, *evaluated))
    assert [r["loss"] for r in with_eval] == [r["loss"] for r in without]

    records = [r for r in read_metrics(tmp_path / "on") if "eval" in r]
    assert [r["step"] for r in records] == [2, 4]
    for record in records:
        assert set(record["eval"]["adherence"]) == {"matched", "shuffled", "off_domain", "off"}
        assert record["eval"]["adherence"]["matched"]["detection_rate"] is not None
    assert "eval: best step so far" in capsys.readouterr().out
    assert not [r for r in read_metrics(tmp_path / "off") if "eval" in r]


def test_eval_on_annotated_validation_images_with_clip_fidelity(small_model_dir, faces, tmp_path):
    """Trained on every row: the validation images with annotation sidecars are the held-out samples."""
    from datasets import load_from_disk

    rows = load_from_disk(str(faces)).select(range(2))
    images = []
    for i, row in enumerate(rows):
        path = tmp_path / f"face-{i}.png"
        row["conditioning_image"].save(path)
        path.with_suffix(".json").write_text(json.dumps(row["annotation"]))
        images.append(str(path))
    clip = write_tiny_clip(tmp_path / "clip")
    validation = ["--validation_image", *images, "--validation_prompt", "a face", "--num_validation_images=1"]
    evaluated = [
        "--eval_steps=4",
        f"--eval_clip={clip}",
        "--cache_latents",
        f"--latents_cache_dir={tmp_path}/c",
    ]
    run_training(train_args(small_model_dir, faces, tmp_path / "out", *SHORT, *validation, *evaluated))
    (record,) = [r["eval"] for r in read_metrics(tmp_path / "out") if "eval" in r]
    assert record["step"] == 4 and set(record["clip_score"]) == {"matched", "off_domain"}
    assert record["prompt_fidelity"] > 0 and record["off_domain_fidelity"] > 0
