"""`controlkit pretrain-demo-base` on tiny settings: a loadable pipeline, its provenance, and resuming."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import ControlNetModel, StableDiffusionPipeline

from controlkit.cli import main
from controlkit.devices import pick_device
from controlkit.errors import UserError
from controlkit.pretrain.config import PretrainConfig


def tiny(out, unet_steps: int) -> list[str]:
    return [
        "pretrain-demo-base", "--out", str(out), "--images", "16", "--render-size", "64",
        "--resolution", "32", "--vae-crop", "16", "--unet-channels", "16,32", "--vae-channels", "8,16,16",
        "--text-hidden-size", "16",
        "--vae-steps", "3", "--vae-batch-size", "4", "--unet-steps", str(unet_steps), "--batch-size", "4",
        "--sample-steps", "2", "--warmup-steps", "2",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "base"
    assert main(tiny(out, unet_steps=4)) == 0
    return out


def test_writes_a_loadable_pipeline_with_provenance(tiny_base):
    pipe = StableDiffusionPipeline.from_pretrained(tiny_base)
    assert 2 ** (len(pipe.vae.config.block_out_channels) - 1) == 4  # 32 px -> 8x8 latents
    ControlNetModel.from_unet(pipe.unet)
    assert pipe.vae.config.scaling_factor != 0.18215  # measured on the latents, not SD's constant
    image = pipe("a close-up photo of a smiling woman", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (32, 32, 3)
    assert not list(tiny_base.rglob("*.bin"))
    provenance = json.loads((tiny_base / "PROVENANCE.json").read_text())
    assert provenance["command"].startswith("controlkit pretrain-demo-base --out")
    assert provenance["unet_steps"] == 4 and provenance["finished"]
    assert provenance["settings"]["unet_channels"] == [16, 32]
    assert provenance["final_unet_loss"] > 0 and provenance["final_vae_reconstruction_loss"] > 0
    assert "4 UNet steps" in (tiny_base / "README.md").read_text()
    assert (tiny_base / "samples.png").is_file() and (tiny_base / "loss.jsonl").is_file()


def test_rerun_resumes_from_the_checkpoint(tiny_base):
    before = StableDiffusionPipeline.from_pretrained(tiny_base).unet.state_dict()
    assert main(tiny(tiny_base, unet_steps=6)) == 0
    provenance = json.loads((tiny_base / "PROVENANCE.json").read_text())
    assert provenance["unet_steps"] == 6  # continued from step 4, not from scratch
    records = [json.loads(line) for line in (tiny_base / "loss.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records].count("vae") == 1  # the VAE phase did not run again
    after = StableDiffusionPipeline.from_pretrained(tiny_base).unet.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(UserError, match="multiple of 8"):
        PretrainConfig(resolution=60)
    with pytest.raises(UserError, match="3 values"):
        PretrainConfig(vae_channels=(8, 8))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            pick_device("cuda")


def test_a_budget_spent_in_the_vae_phase_stops_there_and_resumes(tmp_path, capsys):
    out = tmp_path / "base"
    assert main([*tiny(out, unet_steps=2), "--time-budget-minutes", "0"]) == 0
    assert "VAE phase" in capsys.readouterr().out and not (out / "model_index.json").exists()
    saved = torch.load(tmp_path / "base-work" / "checkpoint.pt", weights_only=True)
    assert saved["state"]["phase"] == "vae" and "vae_optimizer" in saved
    assert main(tiny(out, unet_steps=2)) == 0
    provenance = json.loads((out / "PROVENANCE.json").read_text())
    assert provenance["unet_steps"] == 2 and provenance["final_vae_reconstruction_loss"] > 0


def test_device_and_missing_checkpoint_are_one_line_errors(tmp_path, capsys):
    assert main([*tiny(tmp_path / "a", unet_steps=1), "--device", "gpu"]) == 2
    assert not (tmp_path / "a").exists()  # checked before any folder is made
    assert main([*tiny(tmp_path / "b", unet_steps=1), "--finetune-decoder-minutes", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "unknown --device 'gpu'" in err and "no finished VAE phase" in err and "Traceback" not in err
