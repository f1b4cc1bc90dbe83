"""`controlkit eval` on a small trained run: held-out rows, every checkpoint, best/, resume, CLIP fidelity."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from controlkit.cli import main
from controlkit.errors import UserError
from controlkit.eval import run as eval_run
from controlkit.eval.config import EvalConfig
from controlkit.eval.evaluator import BASE_CASES, CHECKPOINT_CASES, Evaluator
from controlkit.eval.report import text_table
from controlkit.eval.run import evaluate
from controlkit.metadata import ControlNetInfo
from eval_helpers import faces_dataset, write_tiny_clip
from train_helpers import run_training, train_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TRAINED_ON = 6
"""The run trains on this many of the dataset's 10 rows (--max_train_samples), so 4 are held out."""


@pytest.fixture(scope="module")
def trained(small_model_dir, tmp_path_factory):
    """A training run with checkpoints at steps 2 and 4 on 6 of 10 synthetic faces."""
    root = tmp_path_factory.mktemp("eval")
    dataset = faces_dataset(root / "faces", 10)
    out = root / "run"
    extra = ("--max_train_steps=4", "--checkpointing_steps=2", f"--max_train_samples={TRAINED_ON}")
    run_training(train_args(small_model_dir, dataset, out, *extra))
    return SimpleNamespace(dataset=dataset, controlnet=out, root=root)


def quick(controlnet, out, **settings) -> EvalConfig:
    """Few samples, two denoising steps: the mechanics, not the quality."""
    values = {"num": 3, "steps": 2, "batch_size": 3, "grid_rows": 2, "device": "cpu", **settings}
    return EvalConfig(controlnet=str(controlnet), out=out, **values)


@pytest.fixture(scope="module")
def evaluated(trained):
    return evaluate(quick(trained.controlnet, trained.root / "eval"))


def test_every_checkpoint_is_measured_on_rows_training_left_out(trained, evaluated):
    from datasets import load_from_disk

    from controlkit.train.config import TrainConfig
    from controlkit.train.data import load_training_data

    assert [r["name"] for r in evaluated.checkpoints] == ["checkpoint-2", "checkpoint-4"]  # final = step 4
    for record in evaluated.checkpoints:
        assert set(record["adherence"]) == set(CHECKPOINT_CASES)
        assert 0 <= record["adherence"]["matched"]["detection_rate"] <= 1
    assert "left out" in evaluated.summary["held_out"]
    config = TrainConfig.from_args(
        train_args("base", trained.dataset, "x", f"--max_train_samples={TRAINED_ON}")
    )
    seen = set(load_training_data(config, seed=7).dataset["source"])
    rows = evaluated.summary["settings"]["rows"]
    sources = load_from_disk(str(trained.dataset)).select(rows)["source"]
    assert len(rows) == 3 and not seen & set(sources)


def test_eval_writes_figures_a_report_and_a_grid_per_checkpoint(evaluated):
    out = evaluated.out
    summary = json.loads((out / "eval.json").read_text())
    assert [r["name"] for r in summary["checkpoints"]] == ["checkpoint-2", "checkpoint-4"]
    assert summary["base"]["adherence"]["off"] and summary["adherence_key"] == "landmark_nme"
    page = (out / "report.html").read_text()
    links = set(re.findall(r'(?:src|href)="([^"]+)"', page))
    assert {"curves.png", "checkpoints/checkpoint-2.png", "checkpoints/checkpoint-4.png"} <= links
    assert all((out / link).is_file() for link in links)
    assert "no CLIP model" in page and summary["pick"]["rule"] in page


def test_best_is_the_pick_with_its_step_and_generate_loads_it(evaluated, small_model_dir):
    from PIL import Image

    from controlkit.infer.config import GenerateConfig
    from controlkit.infer.generate import generate

    pick = evaluated.pick
    assert pick.name in ("checkpoint-2", "checkpoint-4") and evaluated.best == evaluated.out / "best"
    info = ControlNetInfo.read(evaluated.best)
    assert info.step == pick.step and info.base_model == str(small_model_dir) and info.resolution == 64
    black = Image.new("RGB", (64, 64))
    config = GenerateConfig(
        controlnet=evaluated.best,
        conditioning_image=black,
        prompt="a face",
        num_images=1,
        steps=2,
        device="cpu",
    )
    assert generate(config).images[0].size == (64, 64)


def test_an_interrupted_eval_does_not_redo_finished_checkpoints(trained, tmp_path, monkeypatch, capsys):
    calls = []
    real = Evaluator.run

    def recording(self, pipe, cases, **kwargs):
        calls.append(tuple(cases))
        if calls.count(CHECKPOINT_CASES) == 2 and interrupt:
            raise KeyboardInterrupt  # while measuring checkpoint-4
        return real(self, pipe, cases, **kwargs)

    monkeypatch.setattr(Evaluator, "run", recording)
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        evaluate(quick(trained.controlnet, tmp_path))
    finished = tmp_path / "checkpoints" / "checkpoint-2.json"
    assert finished.is_file() and not (tmp_path / "checkpoints" / "checkpoint-4.json").exists()
    kept = finished.read_bytes()

    interrupt, calls[:] = False, []
    report = evaluate(quick(trained.controlnet, tmp_path))
    assert calls == [CHECKPOINT_CASES]  # checkpoint-4 only: neither the base model nor checkpoint-2 again
    assert finished.read_bytes() == kept and [r["name"] for r in report.checkpoints] == [
        "checkpoint-2",
        "checkpoint-4",
    ]

    def no_pipeline(*args, **kwargs):
        raise AssertionError("a finished evaluation loaded the pipeline again")

    monkeypatch.setattr(eval_run, "load_pipeline", no_pipeline)
    calls[:] = []
    argv = [
        "eval",
        "--controlnet",
        str(trained.controlnet),
        "--out",
        str(tmp_path),
        "--num",
        "3",
        "--steps",
        "2",
    ]
    assert main([*argv, "--batch-size", "3", "--grid-rows", "2", "--device", "cpu"]) == 0
    assert calls == [] and "reusing 2 finished" in capsys.readouterr().err

    with pytest.raises(UserError, match="other settings.*--overwrite"):
        evaluate(quick(trained.controlnet, tmp_path, steps=3))


def test_fidelity_of_the_base_against_itself_is_one(small_controlnet_dir, trained, tmp_path):
    """An untrained ControlNet (zero convolutions) adds nothing, so it draws exactly what the base does."""
    clip = write_tiny_clip(tmp_path / "clip")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a face\n\na portrait\n")
    settings = {"dataset": str(trained.dataset), "held_out": 3, "clip": str(clip), "prompts": prompts}
    report = evaluate(quick(small_controlnet_dir, tmp_path / "eval", **settings))
    assert report.summary["settings"]["prompts"] == ["a face", "a portrait", "a face"]
    (record,) = report.checkpoints
    assert record["prompt_fidelity"] == 1.0 and record["off_domain_fidelity"] == 1.0
    assert record["clip_score"]["matched"] == report.base["clip_score"]["off"]
    assert record["adherence"]["matched"] == report.base["adherence"]["off"]
    assert set(report.base["clip_score"]) == set(BASE_CASES)
    assert "rows chosen by seed" in report.summary["held_out"] and "90%" in report.pick.rule
    assert report.pick.name == "final" and report.summary["notes"] == []
    table = text_table(report.summary)
    assert "off-domain fidelity" in table[0] and "1.000" in table[1]
