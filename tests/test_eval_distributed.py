"""`accelerate launch -m controlkit eval` with two CPU processes (gloo): the generations are split between
them and gathered, and the figures are those of one process. (accelerate runs `--cpu --num_processes 2` as
one process, so the torchrun path runs with ACCELERATE_USE_CPU=1, as tests/test_train_distributed.py does.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from controlkit.eval.config import EvalConfig
from controlkit.eval.run import evaluate
from eval_helpers import faces_dataset

LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes=2"]
LAUNCH += ["--num_machines=1", "--mixed_precision=no", "--dynamo_backend=no", "-m", "controlkit", "eval"]


@pytest.mark.slow
def test_two_processes_share_the_generations_and_agree_with_one(small_controlnet_dir, tmp_path):
    faces = faces_dataset(tmp_path / "faces", 5)
    settings = {"dataset": str(faces), "held_out": 5, "steps": 2, "batch_size": 2, "grid_rows": 2}
    argv = [f"--{key.replace('_', '-')}={value}" for key, value in settings.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    command = [*LAUNCH, "--controlnet", str(small_controlnet_dir), "--out", str(tmp_path / "two"), *argv]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("report: ") == 1  # the main process reports; files are written once
    two = json.loads((tmp_path / "two" / "eval.json").read_text())

    one = evaluate(
        EvalConfig(controlnet=str(small_controlnet_dir), out=tmp_path / "one", device="cpu", **settings)
    )
    assert two["settings"]["rows"] == one.summary["settings"]["rows"]
    for case, scores in one.summary["checkpoints"][0]["adherence"].items():
        for key, value in scores.items():
            assert two["checkpoints"][0]["adherence"][case][key] == pytest.approx(value, abs=1e-3), (
                case,
                key,
            )
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").glob("*.png")) == [
        "base-off-0.png", "base-off-1.png", "final.png",
    ]  # fmt: skip
