"""`controlkit eval` stopped by SIGTERM: the finished checkpoints are kept, the one in hand is left, the
same command continues."""

from __future__ import annotations

import os
import signal

import pytest

from controlkit import cli
from controlkit.eval.evaluator import Evaluator
from controlkit.stopping import EXIT_STOPPED
from eval_helpers import faces_dataset
from train_helpers import run_training, train_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sigterm_keeps_finished_checkpoints_and_the_same_command_continues(
    small_model_dir, tmp_path, monkeypatch, capsys
):
    dataset = faces_dataset(tmp_path / "faces", 8)
    run = tmp_path / "run"
    extra = ("--max_train_steps=4", "--checkpointing_steps=2", "--max_train_samples=5")
    run_training(train_args(small_model_dir, dataset, run, *extra))
    out = tmp_path / "eval"
    argv = ["eval", "--controlnet", str(run), "--out", str(out), "--num", "3", "--steps", "2"]
    argv += ["--batch-size", "1", "--grid-rows", "1", "--device", "cpu"]
    batches, real = [], Evaluator._batch

    def counting(self, pipe, case, batch, precision):
        batches.append(case)
        if len(batches) == 13 and signal_it:  # base (3 images) and checkpoint-2 (9) done: 1st of checkpoint-4
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, pipe, case, batch, precision)

    monkeypatch.setattr(Evaluator, "_batch", counting)
    signal_it = True
    assert cli.main(argv) == EXIT_STOPPED
    assert len(batches) == 13  # the rest of checkpoint-4 was left
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"controlkit eval: stopped: 1 checkpoint(s) measured and kept in {out / 'checkpoints'}, the one in "
        "hand left; run the same command again to continue (finished checkpoints are not redone)"
    )
    assert (out / "checkpoints" / "checkpoint-2.json").is_file()
    assert not (out / "checkpoints" / "checkpoint-4.json").exists() and not (out / "eval.json").exists()

    signal_it, batches[:] = False, []
    assert cli.main(argv) == 0
    assert len(batches) == 9 and (out / "eval.json").is_file()  # checkpoint-4 only
