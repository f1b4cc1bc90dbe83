"""`controlkit eval` on bad input: one line each, exit code 2, before any image is generated."""

from __future__ import annotations

import shutil

import pytest
import yaml

from controlkit.cli import main
from eval_helpers import faces_dataset
from train_helpers import make_dataset


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return faces_dataset(tmp_path_factory.mktemp("faces") / "ds", 4)


def plain_controlnet(source, folder):
    """The weights of ``source`` without its controlkit.json: no base model, no condition recorded."""
    folder.mkdir()
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        shutil.copy(source / name, folder / name)
    return folder


def one_line_error(argv, capsys) -> str:
    """The error line of a failed `controlkit eval` (progress bars may come before it, a traceback never)."""
    capsys.readouterr()
    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err
    last = err.rstrip("\n").split("\n")[-1].split("\r")[-1]
    assert last.startswith("controlkit eval: error: ") and "Traceback" not in err
    return last


def test_a_folder_with_no_checkpoints(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    err = one_line_error(["--controlnet", str(tmp_path / "run"), "--out", str(tmp_path / "e")], capsys)
    assert "holds no ControlNet" in err and "checkpoint-N" in err


def test_a_dataset_without_a_condition_and_no_condition_flag(
    small_controlnet_dir, small_model_dir, tmp_path, capsys
):
    controlnet = plain_controlnet(small_controlnet_dir, tmp_path / "cn")
    dataset = make_dataset(tmp_path / "plain-ds", n=4)
    argv = ["--controlnet", str(controlnet), "--base", str(small_model_dir), "--dataset", str(dataset)]
    err = one_line_error([*argv, "--out", str(tmp_path / "e")], capsys)
    assert "records no condition" in err and "--condition" in err


@pytest.mark.parametrize("what", ["empty", "text-encoder"])
def test_a_clip_folder_that_is_not_one(what, small_controlnet_dir, small_model_dir, tmp_path, capsys):
    clip = tmp_path / "clip"
    if what == "empty":
        clip.mkdir()
    else:
        shutil.copytree(small_model_dir / "text_encoder", clip)  # a CLIP text tower alone is no CLIP model
    argv = ["--controlnet", str(small_controlnet_dir), "--clip", str(clip), "--out", str(tmp_path / "e")]
    err = one_line_error(argv, capsys)
    assert f"--clip {clip}" in err and "not a CLIP model" in err


def test_the_training_dataset_when_training_used_every_row(small_controlnet_dir, faces, tmp_path, capsys):
    run = shutil.copytree(small_controlnet_dir, tmp_path / "run")
    (run / "train_config.yaml").write_text(yaml.safe_dump({"dataset_name": str(faces), "seed": 0}))
    err = one_line_error(["--controlnet", str(run)], capsys)
    assert "trained on every row" in err and "--held-out N" in err


def test_an_unknown_checkpoint_name(small_controlnet_dir, tmp_path, capsys):
    argv = [
        "--controlnet",
        str(small_controlnet_dir),
        "--checkpoints",
        "checkpoint-9",
        "--out",
        str(tmp_path),
    ]
    err = one_line_error(argv, capsys)
    assert "checkpoint-9" in err and "final" in err


def test_eval_steps_without_held_out_samples_is_refused_before_training(
    small_model_dir, faces, tmp_path, capsys
):
    argv = [f"--pretrained_model_name_or_path={small_model_dir}", f"--dataset_name={faces}"]
    argv += [f"--output_dir={tmp_path / 'out'}", "--resolution=64", "--report_to=none", "--eval_steps=2"]
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert "controlkit train: error: --eval_steps needs at least 2 held-out samples" in err
    assert not (tmp_path / "out" / "diffusion_pytorch_model.safetensors").exists()
