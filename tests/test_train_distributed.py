"""Two CPU processes (gloo) under `accelerate launch -m controlkit train`: they train, checkpoint, and
resume after a kill -9 or a SIGTERM to exactly the weights of an uninterrupted run.

accelerate 1.x runs `--cpu --num_processes 2` as ONE process (its CPU multi-process path needs mpirun), so
the test launches the torchrun path (`--multi_gpu`) and keeps the processes on the CPU with
ACCELERATE_USE_CPU=1, which is what `--cpu` sets.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from controlkit.train.checkpoints import list_checkpoints
from controlkit.train.metrics import read_metrics
from train_helpers import make_dataset, same_weights, train_args

LAUNCH = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_processes=2",
    "--num_machines=1",
]
LAUNCH += ["--mixed_precision=no", "--dynamo_backend=no", "-m", "controlkit", "train"]


def _launch(argv: list[str], cwd, launch=LAUNCH, check=True, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", **env}
    done = subprocess.run([*launch, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 or not check, done.stderr[-3000:]
    return done


FAULTS = """
import os, signal, sys
from pathlib import Path

from controlkit.cli import main
from controlkit.train.metrics import MetricsLog

pids = Path(os.environ["FAULT_PIDS"])
with pids.open("a") as f:
    f.write(f"{os.getpid()}\\n")
write = MetricsLog.write


def faulty_write(self, record):
    write(self, record)
    if not self.enabled or "loss" not in record:
        return
    if record["step"] == int(os.environ.get("KILL_AT", -1)):  # the machine dies: every process at once
        for pid in [os.getppid(), *map(int, pids.read_text().split())]:
            if pid != os.getpid():
                os.kill(pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    if record["step"] == int(os.environ.get("TERM_AT", -1)):  # preempted: the launcher gets SIGTERM
        os.kill(os.getppid(), signal.SIGTERM)


MetricsLog.write = faulty_write
sys.exit(main(sys.argv[1:]))
"""
"""`controlkit train` under accelerate launch with a fault injected at an optimizer step (env KILL_AT or
TERM_AT), seen by the main process when it logs the step."""


@pytest.mark.slow
def test_two_processes_train_and_resume_after_kill_or_sigterm_to_the_weights_of_an_uninterrupted_run(
    small_model_dir, tmp_path
):
    from diffusers import ControlNetModel

    # 11 rows in batches of 2 x 2 processes: 3 steps an epoch, the last batch padded; 7 steps in all
    dataset = make_dataset(tmp_path / "ds", n=11)
    (tmp_path / "faults.py").write_text(FAULTS)
    launch = [*LAUNCH[: LAUNCH.index("-m", 2)], str(tmp_path / "faults.py"), "train"]
    flags = ["--max_train_steps=7", "--checkpointing_steps=2", "--resume_from_checkpoint=latest"]
    whole = tmp_path / "whole"
    done = _launch(train_args(small_model_dir, dataset, whole, *flags), tmp_path)
    assert [p.name for p in list_checkpoints(whole)] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    checkpoint = whole / "checkpoint-2"
    assert all(
        (checkpoint / name).is_file() for name in ("generator_0.safetensors", "generator_1.safetensors")
    )
    assert (checkpoint / "random_states_1.pkl").is_file() and "2 processes" in done.stdout
    assert done.stderr.count("no checkpoint in") == 1  # a note prints once, not once per process
    assert json.loads((checkpoint / "trainer_state.json").read_text())["samples_in_epoch"] == 8  # 2 x 2 x 2
    assert [r["epoch"] for r in read_metrics(whole) if "loss" in r] == [0, 0, 0, 1, 1, 1, 2]
    assert ControlNetModel.from_pretrained(whole).config.cross_attention_dim == 32

    out = tmp_path / "out"
    argv = train_args(small_model_dir, dataset, out, *flags)
    killed = _launch(argv, tmp_path, launch, check=False, FAULT_PIDS=str(tmp_path / "pids-1"), KILL_AT="3")
    assert killed.returncode != 0 and [p.name for p in list_checkpoints(out)] == ["checkpoint-2"]  # mid-epoch

    stopped = _launch(argv, tmp_path, launch, check=False, FAULT_PIDS=str(tmp_path / "pids-2"), TERM_AT="5")
    said = re.findall(
        r"controlkit train: stopped: saved \S+checkpoint-(\d+) at step (\d+) of 7", stopped.stderr
    )
    assert len(said) == 1, stopped.stderr[-3000:]  # said once (main process); every rank saved that step
    step = json.loads((list_checkpoints(out)[-1] / "trainer_state.json").read_text())["global_step"]
    assert said[0] == (str(step), str(step)) and step > 5
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == list(range(1, step + 1))

    _launch(argv, tmp_path)
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == list(range(1, 8))
    assert same_weights(out, whole)
