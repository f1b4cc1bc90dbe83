"""The training loop: outputs, resume, cache, checkpoints, NaN stop, and what each flag group changes."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from controlkit.metadata import ControlNetInfo
from train_helpers import interrupt_at, make_dataset, run_training, train_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "pairs", metadata={"condition": "canny"})


def test_trains_and_saves_a_diffusers_controlnet(small_model_dir, dataset, tmp_path):
    from diffusers import ControlNetModel

    out = tmp_path / "out"
    records = run_training(train_args(small_model_dir, dataset, out, "--max_train_steps=3"))
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(r["loss"] > 0 and r["images_per_s"] > 0 and r["peak_memory_mb"] > 0 for r in records)
    assert records[0]["lr"] == pytest.approx(1e-4)
    controlnet = ControlNetModel.from_pretrained(out)
    assert isinstance(controlnet, ControlNetModel)
    assert (out / "diffusion_pytorch_model.safetensors").is_file() and not list(out.rglob("*.bin"))
    meta = ControlNetInfo.read(out)
    assert meta.base_model == str(small_model_dir) and meta.condition == "canny"
    assert meta.resolution == 64 and meta.dataset == str(dataset)
    effective = yaml.safe_load((out / "train_config.yaml").read_text())
    assert effective["max_train_steps"] == 3 and effective["seed"] == 7 and "hub_token" not in effective
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1
    assert torch.isfinite(next(controlnet.parameters())).all()


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(folder / "diffusion_pytorch_model.safetensors")


@pytest.mark.parametrize(
    ("flags", "cut_at"),
    [
        (["--checkpointing_steps=3"], 4),  # checkpoint mid-epoch (6 of 8 samples)
        # 7 samples in batches of 2 x 2 accumulation: a short last batch, checkpoint at an epoch's end
        (["--checkpointing_steps=2", "--gradient_accumulation_steps=2", "--max_train_samples=7"], 3),
    ],
)
def test_resume_continues_exactly_like_an_uninterrupted_run(
    small_model_dir, dataset, tmp_path, monkeypatch, flags, cut_at
):
    extra = ["--max_train_steps=6", "--proportion_empty_prompts=0.5", *flags]
    whole = run_training(train_args(small_model_dir, dataset, tmp_path / "whole", *extra))
    with monkeypatch.context() as patch:
        interrupt_at(patch, cut_at)
        with pytest.raises(KeyboardInterrupt):
            run_training(train_args(small_model_dir, dataset, tmp_path / "cut", *extra))
    assert not (tmp_path / "cut" / "diffusion_pytorch_model.safetensors").exists()
    resumed = run_training(
        train_args(small_model_dir, dataset, tmp_path / "cut", *extra, "--resume_from_checkpoint=latest")
    )
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in whole], rel=1e-5)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.parametrize("with_text", [False, True], ids=["latents", "latents+text"])
def test_cached_latents_train_like_the_uncached_path_and_are_reused(
    small_model_dir, dataset, tmp_path, monkeypatch, with_text
):
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel

    extra = [
        "--max_train_steps=4",
        "--proportion_empty_prompts=0.5",
        f"--latents_cache_dir={tmp_path / 'cache'}",
    ]
    cache_flags = ["--cache_latents", *(["--cache_text_embeddings"] if with_text else [])]
    plain = run_training(train_args(small_model_dir, dataset, tmp_path / "plain", *extra))
    cached = run_training(train_args(small_model_dir, dataset, tmp_path / "cached", *extra, *cache_flags))
    assert [r["loss"] for r in cached] == pytest.approx([r["loss"] for r in plain], rel=1e-4)
    assert len([p for p in (tmp_path / "cache").iterdir() if p.name != "decode-checks"]) == 1

    def must_not_run(*args, **kwargs):
        raise AssertionError("the VAE or text encoder ran although their outputs are cached")

    text_runs = []
    monkeypatch.setattr(AutoencoderKL, "encode", must_not_run)
    forward = CLIPTextModel.forward
    monkeypatch.setattr(
        CLIPTextModel,
        "forward",
        must_not_run if with_text else lambda *a, **k: text_runs.append(1) or forward(*a, **k),
    )
    again = run_training(train_args(small_model_dir, dataset, tmp_path / "again", *extra, *cache_flags))
    assert [r["loss"] for r in again] == pytest.approx([r["loss"] for r in cached], rel=1e-6)
    assert bool(text_runs) is not with_text  # without its embeddings cached, the text encoder runs each step


def test_checkpoint_limit_is_honoured(small_model_dir, dataset, tmp_path):
    out = tmp_path / "out"
    extra = ["--max_train_steps=4", "--checkpointing_steps=1", "--checkpoints_total_limit=2"]
    run_training(train_args(small_model_dir, dataset, out, *extra))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state == {"global_step": 4, "epoch": 0, "samples_in_epoch": 8}
    assert (out / "checkpoint-4" / "controlnet" / "diffusion_pytorch_model.safetensors").is_file()


def test_a_checkpoint_that_does_not_exist_is_an_error(small_model_dir, dataset, tmp_path):
    from controlkit.errors import UserError

    argv = train_args(small_model_dir, dataset, tmp_path / "out", "--resume_from_checkpoint=checkpoint-99")
    with pytest.raises(UserError, match="checkpoint 'checkpoint-99' does not exist"):
        run_training(argv)
    with pytest.raises(UserError, match="does not exist"):
        run_training([*argv, f"--resume_from_checkpoint={tmp_path / 'nowhere'}"])


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(
    small_model_dir, dataset, tmp_path
):
    from controlkit.errors import UserError

    out = tmp_path / "out"
    argv = train_args(small_model_dir, dataset, out, "--max_train_steps=6", "--checkpointing_steps=1")
    with pytest.raises(UserError, match=r"the loss became (nan|inf) at step \d; training stopped") as info:
        run_training([*argv, "--learning_rate=1e30"])
    good = sorted(out.glob("checkpoint-*"))
    assert good and str(good[-1]) in str(info.value)
    assert not (out / "diffusion_pytorch_model.safetensors").exists()


def test_unwritable_output_dir_is_one_line(tmp_path):
    from controlkit.errors import UserError
    from controlkit.train.output import prepare_output_dir

    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot write to output_dir"):
        prepare_output_dir(str(tmp_path / "file" / "out"))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_the_loss_regresses_noise_or_velocity_as_the_scheduler_says(prediction_type):
    from diffusers import DDPMScheduler

    from controlkit.train.trainer import training_loss

    scheduler = DDPMScheduler(prediction_type=prediction_type)
    mean, std = torch.randn(2, 4, 8, 8), torch.rand(2, 4, 8, 8)
    embeds, empty = torch.randn(2, 77, 32), torch.zeros(77, 32)
    seen = {}

    def controlnet(x, t, encoder_hidden_states, controlnet_cond, return_dict):
        seen["embeds"] = encoder_hidden_states
        return [torch.zeros(1)], torch.zeros(1)

    def unet(x, t, **kwargs):
        return (torch.zeros_like(x),)  # predicting zeros: the loss is the mean square of the target

    batch = {"conditioning_pixel_values": torch.rand(2, 3, 64, 64)}
    loss = training_loss(
        batch,
        encode=lambda b: (mean, std, embeds),
        controlnet=controlnet,
        unet=unet,
        noise_scheduler=scheduler,
        generator=torch.Generator().manual_seed(0),
        weight_dtype=torch.float32,
        empty_prompt_embeds=empty,
        proportion_empty_prompts=1.0,
        scaling_factor=0.5,
    )
    g = torch.Generator().manual_seed(0)
    latents = (mean + std * torch.randn(mean.shape, generator=g)) * 0.5
    noise = torch.randn(latents.shape, generator=g)
    timesteps = torch.randint(0, 1000, (2,), generator=g)
    target = noise if prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
    assert loss.item() == pytest.approx(target.pow(2).mean().item(), rel=1e-6)
    assert torch.equal(seen["embeds"], torch.zeros(2, 77, 32))  # every caption dropped at proportion 1


def test_accumulation_schedule_and_scale_lr_change_steps_and_learning_rates(
    small_model_dir, dataset, tmp_path
):
    extra = ["--gradient_accumulation_steps=2", "--max_train_steps=3", "--lr_scheduler=linear"]
    extra += ["--lr_warmup_steps=2", "--scale_lr", "--learning_rate=1e-5", "--checkpointing_steps=3"]
    records = run_training(train_args(small_model_dir, dataset, tmp_path / "out", *extra))
    assert [r["epoch"] for r in records] == [0, 0, 1]  # 8 samples = 2 steps of 2 x 2
    assert [r["lr"] for r in records] == pytest.approx([2e-5, 4e-5, 0.0])  # 1e-5 x 2 x 2, warm-up, decay
    state = json.loads((tmp_path / "out" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["samples_in_epoch"] == 4


def test_memory_flags(small_model_dir, dataset, tmp_path, monkeypatch, capsys):
    from diffusers import ControlNetModel

    from controlkit.errors import UserError

    calls = []
    original = ControlNetModel.enable_gradient_checkpointing
    monkeypatch.setattr(
        ControlNetModel, "enable_gradient_checkpointing", lambda self: calls.append(1) or original(self)
    )
    extra = ["--max_train_steps=1", "--gradient_checkpointing", "--set_grads_to_none"]
    extra += ["--enable_xformers_memory_efficient_attention", "--mixed_precision=bf16"]
    records = run_training(train_args(small_model_dir, dataset, tmp_path / "out", *extra))
    assert calls and len(records) == 1
    assert "xformers is not installed; using PyTorch's SDPA attention" in capsys.readouterr().err
    controlnet = ControlNetModel.from_pretrained(tmp_path / "out")
    assert next(controlnet.parameters()).dtype == torch.float32  # trained in fp32 beside a bf16 UNet
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="needs a CUDA GPU"):
            run_training(train_args(small_model_dir, dataset, tmp_path / "adam8", "--use_8bit_adam"))
        with pytest.raises(UserError, match="fp16 needs a GPU"):
            run_training(train_args(small_model_dir, dataset, tmp_path / "fp16", "--vram=24"))


def test_starts_from_an_existing_controlnet(small_model_dir, dataset, tmp_path):
    from diffusers import ControlNetModel, UNet2DConditionModel

    start = ControlNetModel.from_unet(UNet2DConditionModel.from_pretrained(small_model_dir, subfolder="unet"))
    torch.nn.init.constant_(start.controlnet_cond_embedding.conv_out.weight, 0.5)
    start.save_pretrained(tmp_path / "start")
    extra = [
        "--max_train_steps=1",
        f"--controlnet_model_name_or_path={tmp_path / 'start'}",
        "--learning_rate=1e-9",
    ]
    run_training(train_args(small_model_dir, dataset, tmp_path / "out", *extra))
    trained = ControlNetModel.from_pretrained(tmp_path / "out")
    assert torch.allclose(trained.controlnet_cond_embedding.conv_out.weight, torch.tensor(0.5), atol=1e-6)
