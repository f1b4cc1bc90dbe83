"""`controlkit generate` on input a hostile user gives: seeds past torch's range, folders that hold no
ControlNet, sizes too small to draw, pickle weights. Each is one line (exit code 2) before any model loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from controlkit.cli import main
from controlkit.errors import UserError
from controlkit.infer.generate import output_size
from controlkit.infer.pipeline import min_size
from controlkit.seeds import MAX_SEED

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def error_of(capsys, *argv: str) -> str:
    assert main(["generate", "--prompt", "x", "--steps", "1", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def conditioning(tmp_path):
    path = tmp_path / "mask.png"
    Image.new("RGB", (64, 64), "lime").save(path)
    return path


def test_seeds_past_the_generators_range_are_one_line(small_controlnet_dir, conditioning, tmp_path, capsys):
    model = ["--controlnet", str(small_controlnet_dir), "--conditioning-image", str(conditioning)]
    err = error_of(capsys, *model, "--seed", str(MAX_SEED), "--num-images", "2", "--out", str(tmp_path / "a"))
    assert f"--seed {MAX_SEED}: image i uses seed + i, which must lie in 0..2**64 - 1" in err
    assert f"the seed must be at most {MAX_SEED - 1}" in err
    assert "--seed -1: " in error_of(capsys, *model, "--seed", "-1", "--out", str(tmp_path / "b"))
    out = tmp_path / "c"
    assert main(["generate", "--prompt", "x", "--steps", "1", *model, "--seed", str(MAX_SEED - 1)]
                + ["--num-images", "2", "--out", str(out)]) == 0  # fmt: skip
    seeds = [image["seed"] for image in json.loads((out / "scores.json").read_text())["images"]]
    assert seeds == [MAX_SEED - 1, MAX_SEED]


def test_a_folder_without_a_controlnet_says_so(small_model_dir, conditioning, tmp_path, capsys):
    source = ["--conditioning-image", str(conditioning), "--out", str(tmp_path / "out")]
    empty = tmp_path / "empty"
    empty.mkdir()
    err = error_of(capsys, "--controlnet", str(empty), *source)
    assert f"{empty} is not a ControlNet folder (no config.json at its root or in controlnet/)" in err
    err = error_of(capsys, "--controlnet", str(small_model_dir / "unet"), *source)
    assert "is not a ControlNet folder: its config.json describes a UNet2DConditionModel" in err
    bare = tmp_path / "config-only"
    bare.mkdir()
    (bare / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    assert "no weights (*.safetensors)" in error_of(capsys, "--controlnet", str(bare), *source)


def test_a_size_too_small_to_draw_says_so(small_controlnet_dir, photos, tmp_path, capsys):
    smallest = min_size(json.loads((small_controlnet_dir / "config.json").read_text()))
    assert smallest == 16  # SD's 8x conditioning encoder, then two down blocks: one halving
    photo = ["--image", str(photos / "astronaut.png")]
    err = error_of(
        capsys, "--controlnet", str(small_controlnet_dir), *photo, "--height", "7", "--out", str(tmp_path)
    )
    assert err.endswith(
        "--height 7 is too small, 8 once rounded to a multiple of 8: this ControlNet makes images of at "
        "least 16 px a side (its smallest latents vanish below that); its training size is 64"
    )
    with pytest.raises(UserError, match="--width 0 is too small: "):
        output_size(None, 0, 64, smallest)
    assert output_size(12, None, 64, smallest) == (64, 16)
    sd = {"down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]}
    assert min_size(sd) == 64 and min_size(None) == 8


def test_pickle_weights_are_refused_with_how_to_convert_them(
    small_controlnet_dir, conditioning, tmp_path, capsys
):
    from diffusers import ControlNetModel

    pickled = tmp_path / "pickled"
    ControlNetModel.from_pretrained(small_controlnet_dir).save_pretrained(pickled, safe_serialization=False)
    shutil.copy(small_controlnet_dir / "controlkit.json", pickled)
    args = [
        "--controlnet",
        str(pickled),
        "--conditioning-image",
        str(conditioning),
        "--out",
        str(tmp_path / "o"),
    ]
    err = error_of(capsys, *args)
    assert "has only pickle weights (diffusion_pytorch_model.bin), which can run code when loaded" in err
    command = err.split('python -c "')[1].rstrip('"')
    subprocess.run([sys.executable, "-c", command], check=True)  # what the message says to run
    assert main(["generate", "--prompt", "x", "--steps", "1", "--num-images", "1", *args]) == 0
