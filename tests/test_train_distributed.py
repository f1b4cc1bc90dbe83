"""Two CPU processes (gloo) under `accelerate launch -m controlkit train`: they train, checkpoint, resume.

accelerate 1.x runs `--cpu --num_processes 2` as ONE process (its CPU multi-process path needs mpirun), so
the test launches the torchrun path (`--multi_gpu`) and keeps the processes on the CPU with
ACCELERATE_USE_CPU=1, which is what `--cpu` sets.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from controlkit.train.metrics import read_metrics
from train_helpers import make_dataset, train_args

LAUNCH = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_processes=2",
    "--num_machines=1",
]
LAUNCH += ["--mixed_precision=no", "--dynamo_backend=no", "-m", "controlkit", "train"]


def _launch(argv: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    done = subprocess.run([*LAUNCH, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_two_processes_train_write_one_set_of_checkpoints_and_resume(small_model_dir, tmp_path):
    from diffusers import ControlNetModel

    dataset = make_dataset(tmp_path / "ds", n=8)
    out = tmp_path / "out"
    first = ["--max_train_steps=2", "--checkpointing_steps=2", "--resume_from_checkpoint=latest"]
    done_first = _launch(train_args(small_model_dir, dataset, out, *first), tmp_path)
    checkpoint = out / "checkpoint-2"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert (checkpoint / "generator_0.safetensors").is_file() and (
        checkpoint / "generator_1.safetensors"
    ).is_file()
    assert (checkpoint / "random_states_1.pkl").is_file() and "2 processes" in done_first.stdout
    assert done_first.stderr.count("no checkpoint in") == 1  # a note prints once, not once per process
    assert '"samples_in_epoch": 8' in (checkpoint / "trainer_state.json").read_text()  # 2 steps x 2 x 2

    resume = ["--max_train_steps=4", "--checkpointing_steps=2", "--resume_from_checkpoint=latest"]
    _launch(train_args(small_model_dir, dataset, out, *resume), tmp_path)
    records = [r for r in read_metrics(out) if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4] and [r["epoch"] for r in records] == [0, 0, 1, 1]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert ControlNetModel.from_pretrained(out).config.cross_attention_dim == 32
