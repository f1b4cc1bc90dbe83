"""Faults of long training runs, each injected: preemption (SIGTERM), a full disk, damaged checkpoints, two
runs on one folder, a folder holding another run, a torn metrics line, NaN on screen, pickle weights."""

from __future__ import annotations

import errno
import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controlkit import cli
from controlkit.errors import UserError
from controlkit.stopping import EXIT_STOPPED
from controlkit.train.checkpoints import list_checkpoints, resolve_resume
from controlkit.train.manifest import MANIFEST_FILE, check_checkpoint, checkpoint_size
from controlkit.train.metrics import read_metrics
from train_helpers import make_dataset, run_training, same_weights, train_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RESUME = "--resume_from_checkpoint=latest"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "pairs", n=8)


def four_steps(model, dataset, out, *extra: str) -> list[str]:
    """4 steps with checkpoints at 2 and 4."""
    return train_args(model, dataset, out, "--max_train_steps=4", "--checkpointing_steps=2", *extra)


@pytest.fixture(scope="module")
def finished(small_model_dir, dataset, tmp_path_factory):
    """An uninterrupted run of ``four_steps``: what every resumed run below must end with."""
    out = tmp_path_factory.mktemp("finished") / "out"
    run_training(four_steps(small_model_dir, dataset, out))
    return out


def _wait_for_step(out: Path, process: subprocess.Popen, step: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        if any(record.get("step", 0) >= step for record in read_metrics(out)):
            return
        time.sleep(0.02)
    raise AssertionError(f"the run did not reach step {step} in {timeout} s")


@pytest.mark.slow
def test_sigterm_saves_the_step_in_hand_and_the_same_command_resumes_exactly(
    small_model_dir, dataset, tmp_path
):
    out = tmp_path / "out"
    argv = train_args(small_model_dir, dataset, out, "--checkpointing_steps=1000")
    command = [sys.executable, "-m", "controlkit", "train", *argv, "--max_train_steps=1000"]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for_step(out, process, 2)
        with pytest.raises(UserError, match=f"output_dir {out} is in use by process {process.pid} "):
            run_training([*argv, RESUME])  # a second run on the same folder
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == EXIT_STOPPED, err[-3000:]
    (checkpoint,) = list_checkpoints(out)
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    assert [r["step"] for r in read_metrics(out)] == list(range(1, step + 1))  # the step reached, saved
    assert err.strip().splitlines()[-1] == (
        f"controlkit train: stopped: saved {checkpoint} at step {step} of 1000; to continue, run the same "
        "command with --resume_from_checkpoint latest"
    )
    assert not (out / ".controlkit.lock").exists() and (checkpoint / MANIFEST_FILE).is_file()

    resumed = run_training([*argv, f"--max_train_steps={step + 2}", RESUME])
    whole = run_training(
        train_args(small_model_dir, dataset, tmp_path / "whole", f"--max_train_steps={step + 2}")
    )
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in whole], rel=1e-5)
    assert same_weights(out, tmp_path / "whole")


def _fill_the_disk_at(monkeypatch, writer: str, marker: str) -> None:
    """Make the writer of ``writer`` files fail midway, as on a full disk, for paths containing ``marker``:
    accelerate's torch files (optimizer, schedule) raise OSError, safetensors its own error."""
    import accelerate.checkpointing
    import safetensors.torch
    from safetensors import SafetensorError

    module, name = (
        (accelerate.checkpointing, "save") if writer == "torch" else (safetensors.torch, "serialize_file")
    )
    real = getattr(module, name)

    def filling_up(obj, path, *args, **kwargs):
        if marker in str(path):
            Path(path).write_bytes(b"\0" * 1000)
            if writer == "torch":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(module, name, filling_up)


@pytest.mark.parametrize("writer", ["torch", "safetensors"])
def test_a_full_disk_stops_in_one_line_and_the_same_command_continues(
    small_model_dir, dataset, finished, tmp_path, monkeypatch, capsys, writer
):
    out = tmp_path / "out"
    argv = ["train", *four_steps(small_model_dir, dataset, out)]
    with monkeypatch.context() as patch:
        _fill_the_disk_at(patch, writer, ".tmp-checkpoint-4")  # the second checkpoint does not fit
        assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    needed = checkpoint_size(out / "checkpoint-2") / 1e6
    assert re.fullmatch(
        rf"controlkit train: error: cannot write checkpoint-4 in {re.escape(str(out))}: (Error while "
        r"serializing: I/O error: )?No space left on device( \(os error 28\))? \([\d.]+ [KMGT]?B free there, "
        rf"about {needed:.1f} MB needed\); free some space \(or lower --checkpoints_total_limit\) and run "
        r"the same command with --resume_from_checkpoint latest \(it continues from checkpoint-2\)",
        err,
    ), err
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2"] and not list(out.glob(".tmp-*"))
    assert resolve_resume(out, "latest").name == "checkpoint-2"
    assert not (out / ".controlkit.lock").exists()  # released on the error

    assert cli.main([*argv, RESUME]) == 0  # space freed: the same command continues
    assert same_weights(out, finished)
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2", "checkpoint-4"]


def test_a_full_disk_for_the_final_model_is_one_line_too(
    small_model_dir, dataset, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        _fill_the_disk_at(patch, "safetensors", f"{out}/diffusion_pytorch_model")
        assert cli.main(["train", *four_steps(small_model_dir, dataset, out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"controlkit train: error: cannot write the ControlNet in {out}: Error while ")
    assert err.endswith("--resume_from_checkpoint latest (it continues from checkpoint-4)")


def test_a_damaged_latest_is_said_set_aside_and_the_previous_checkpoint_used(
    small_model_dir, dataset, finished, tmp_path, capsys
):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    optimizer = out / "checkpoint-4" / "optimizer.bin"
    size = optimizer.stat().st_size
    optimizer.write_bytes(optimizer.read_bytes()[:100])  # a copy cut short
    records = run_training(four_steps(small_model_dir, dataset, out, RESUME))
    assert (
        f"checkpoint-4 is damaged (optimizer.bin has 100 of its {size} bytes); resuming from checkpoint-2 "
        "instead (set aside as checkpoint-4.damaged)"
    ) in capsys.readouterr().err
    assert [r["step"] for r in records] == [1, 2, 3, 4] and same_weights(out, finished)
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2", "checkpoint-4"]
    assert (out / "checkpoint-4.damaged").is_dir() and check_checkpoint(
        out / "checkpoint-4", "trainer_state.json"
    ) is None


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:16] = b"not json"
    path.write_bytes(bytes(data))


DAMAGE = {
    "cut optimizer": ("optimizer.bin", _cut, r"optimizer.bin has \d+ of its \d+ bytes"),
    "no optimizer": ("optimizer.bin", Path.unlink, "optimizer.bin is missing"),
    "garbled header": (
        "controlnet/diffusion_pytorch_model.safetensors",
        _garble_header,
        "controlnet/diffusion_pytorch_model.safetensors fails its sha256 check",
    ),
}
OLD_DAMAGE = {  # checkpoints written before manifests existed
    "cut weights": (
        "controlnet/diffusion_pytorch_model.safetensors",
        _cut,
        "controlnet/diffusion_pytorch_model.safetensors is not a complete safetensors file",
    ),
    "garbled generator": (
        "generator_0.safetensors",
        _garble_header,
        "generator_0.safetensors is not a complete safetensors file",
    ),
    "no optimizer": ("optimizer.bin", Path.unlink, r"optimizer.bin \(the optimizer state\) is missing"),
    "cut optimizer": ("optimizer.bin", _cut, "optimizer.bin is not a complete torch file"),
    "cut state": ("trainer_state.json", _cut, "trainer_state.json does not parse"),
}


@pytest.mark.parametrize(
    ("old", "damage"), [(False, name) for name in DAMAGE] + [(True, name) for name in OLD_DAMAGE]
)
def test_damage_is_found_and_a_damaged_checkpoint_named_explicitly_is_an_error(
    finished, tmp_path, old, damage
):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    if old:
        for checkpoint in list_checkpoints(out):
            (checkpoint / MANIFEST_FILE).unlink()
    name, harm, problem = (OLD_DAMAGE if old else DAMAGE)[damage]
    assert check_checkpoint(out / "checkpoint-4", "trainer_state.json") is None  # intact, with or without
    harm(out / "checkpoint-4" / name)
    with pytest.raises(
        UserError, match=f"checkpoint {out / 'checkpoint-4'} is damaged: {problem}; name another"
    ):
        resolve_resume(out, "checkpoint-4")  # never a silent fresh start
    assert resolve_resume(out, "latest") == out / "checkpoint-2"
    harm(out / "checkpoint-2" / name)
    with pytest.raises(
        UserError, match=f"no complete checkpoint in {out} to resume from \\(checkpoint-2: {problem}"
    ):
        resolve_resume(out, "latest")


def test_a_new_run_into_a_used_folder_is_refused_unless_overwritten(
    small_model_dir, dataset, finished, tmp_path, capsys
):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    (out / "notes.txt").write_text("mine")
    argv = train_args(
        small_model_dir,
        dataset,
        out,
        "--max_train_steps=3",
        "--checkpointing_steps=1",
        "--checkpoints_total_limit=2",
    )
    with pytest.raises(
        UserError,
        match=f"output_dir {out} holds another training run \\(checkpoint-2, checkpoint-4, metrics.jsonl, "
        "diffusion_pytorch_model.safetensors, ...\\); continue it with --resume_from_checkpoint latest, "
        "replace it with --overwrite_output_dir, or choose another --output_dir",
    ):
        run_training(argv)
    assert same_weights(out, finished) and len(read_metrics(out)) == 4  # nothing touched
    records = run_training([*argv, "--overwrite_output_dir"])
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3] == [r["step"] for r in records]
    # the limit pruned the new run's oldest checkpoint, not the old run's higher-numbered ones
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2", "checkpoint-3"]
    assert (out / "notes.txt").read_text() == "mine"
    assert (
        "--overwrite_output_dir: removed the previous run's checkpoint-2, checkpoint-4"
        in capsys.readouterr().err
    )
    assert "overwrite_output_dir" not in (out / "train_config.yaml").read_text()  # a rerun must not wipe
    with pytest.raises(UserError, match="give only one of --overwrite_output_dir"):
        run_training([*argv, "--overwrite_output_dir", RESUME])


def test_resuming_with_other_settings_says_so_and_a_torn_metrics_line_is_dropped(
    small_model_dir, dataset, finished, tmp_path, capsys
):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "epoch": 0, "lo')  # killed while appending
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4]
    extra = ["--max_train_steps=6", "--learning_rate=2e-4", RESUME]
    records = run_training(train_args(small_model_dir, dataset, out, "--checkpointing_steps=2", *extra))
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert (
        "checkpoint-4 was trained with other settings: learning_rate 0.0001 (now 0.0002); continuing with "
        "the settings given now"
    ) in capsys.readouterr().err
    run_training(
        train_args(small_model_dir, dataset, out, "--checkpointing_steps=2", "--max_train_steps=7", RESUME)
    )
    assert "other settings" in capsys.readouterr().err  # checkpoint-6 recorded 2e-4; the flags say 1e-4 again


def test_the_nan_stop_message_is_the_last_line_on_screen(small_model_dir, dataset, tmp_path, capsys):
    argv = ["train", *train_args(small_model_dir, dataset, tmp_path / "out", "--max_train_steps=6")]
    assert cli.main([*argv, "--learning_rate=1e30"]) == 2
    gc.collect()  # a progress bar left open redraws itself when it is collected
    screen = [line for line in re.split(r"[\r\n]+", capsys.readouterr().err) if line.strip()]
    assert screen[-1].startswith("controlkit train: error: the loss became")


def test_a_pickle_only_controlnet_says_how_to_allow_it(small_model_dir, dataset, tmp_path, capsys):
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(small_model_dir, subfolder="unet")
    ControlNetModel.from_unet(unet).save_pretrained(tmp_path / "pickled", safe_serialization=False)
    argv = train_args(small_model_dir, dataset, tmp_path / "out", "--max_train_steps=1")
    argv = ["train", *argv, f"--controlnet_model_name_or_path={tmp_path / 'pickled'}"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "only pickle weights" in err and "allow them with `controlkit train --allow_pickle`" in err
    assert cli.main([*argv, "--allow_pickle"]) == 0


def test_a_lock_left_by_a_killed_process_not_yet_reaped_is_taken_over(tmp_path):
    """A run killed with -9 together with its launcher lingers as a zombie until init reaps it; signal 0
    still reaches a zombie, so the lock must look at the process's state (found by the 2-process test)."""
    from controlkit.locks import FolderLock

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.kill()
    time.sleep(0.5)  # exited, not reaped: this test waits for it only at the end
    lock = tmp_path / ".controlkit.lock"
    lock.write_text(json.dumps({"pid": child.pid, "host": os.uname().nodename, "command": "train"}))
    try:
        with FolderLock(lock, "out"):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
    finally:
        child.wait()
