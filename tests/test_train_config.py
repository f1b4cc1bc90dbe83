"""TrainConfig: the reference's flags and defaults, config files, --vram presets, and bad input."""

from __future__ import annotations

import pytest

from controlkit.errors import UserError
from controlkit.train.config import TrainConfig, load_config_file, write_effective_config

# Every flag of diffusers' examples/controlnet/train_controlnet.py, with its default.
REFERENCE_DEFAULTS = {
    "pretrained_model_name_or_path": None, "controlnet_model_name_or_path": None, "revision": None,
    "variant": None, "tokenizer_name": None, "output_dir": "controlnet-model", "cache_dir": None,
    "seed": None, "resolution": 512, "train_batch_size": 4, "num_train_epochs": 1, "max_train_steps": None,
    "checkpointing_steps": 500, "checkpoints_total_limit": None, "resume_from_checkpoint": None,
    "gradient_accumulation_steps": 1, "gradient_checkpointing": False, "learning_rate": 5e-6,
    "scale_lr": False, "lr_scheduler": "constant", "lr_warmup_steps": 500, "lr_num_cycles": 1,
    "lr_power": 1.0,
    "use_8bit_adam": False, "dataloader_num_workers": 0, "adam_beta1": 0.9, "adam_beta2": 0.999,
    "adam_weight_decay": 1e-2, "adam_epsilon": 1e-08, "max_grad_norm": 1.0, "push_to_hub": False,
    "hub_token": None, "hub_model_id": None, "logging_dir": "logs", "allow_tf32": False,
    "report_to": "tensorboard", "mixed_precision": None, "enable_xformers_memory_efficient_attention": False,
    "set_grads_to_none": False, "dataset_name": None, "dataset_config_name": None, "train_data_dir": None,
    "image_column": "image", "conditioning_image_column": "conditioning_image", "caption_column": "text",
    "max_train_samples": None, "proportion_empty_prompts": 0, "validation_prompt": None,
    "validation_image": None, "num_validation_images": 4, "validation_steps": 100,
    "tracker_project_name": "train_controlnet",
}  # fmt: skip

BASE = ["--pretrained_model_name_or_path=base", "--dataset_name=data"]


def test_every_reference_flag_keeps_its_name_and_default():
    config = TrainConfig.from_args(BASE)
    for name, default in REFERENCE_DEFAULTS.items():
        if name not in ("pretrained_model_name_or_path", "dataset_name"):
            assert getattr(config, name) == default, name


def test_the_walkthrough_command_line_parses_unchanged(tmp_path):
    argv = (
        f"--pretrained_model_name_or_path={tmp_path}/sd21 --output_dir=model_out "
        f"--dataset_name={tmp_path}/faces --conditioning_image_column=spiga_seg --image_column=image "
        "--caption_column=image_caption --resolution=512 --learning_rate=1e-5 --validation_image "
        "./face_landmarks1.jpeg ./face_landmarks2.jpeg --validation_prompt"
    ).split()
    argv += [
        "High-quality close-up dslr photo of man wearing a hat with trees in the background",
        "Girl smiling, professional dslr photograph",
    ]
    argv += (
        "--train_batch_size=4 --num_train_epochs=3 --tracker_project_name=controlnet "
        "--enable_xformers_memory_efficient_attention --checkpointing_steps=5000 --validation_steps=5000 "
        "--report_to none --push_to_hub"
    ).split()
    config = TrainConfig.from_args(argv)
    assert config.conditioning_image_column == "spiga_seg" and config.caption_column == "image_caption"
    assert config.learning_rate == 1e-5 and config.num_train_epochs == 3 and config.push_to_hub
    assert config.validation_image == ["./face_landmarks1.jpeg", "./face_landmarks2.jpeg"]
    assert config.validation_prompt[1] == "Girl smiling, professional dslr photograph"
    assert config.enable_xformers_memory_efficient_attention and config.checkpointing_steps == 5000


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_config_file_holds_the_same_keys_and_flags_override_it(tmp_path, suffix):
    path = tmp_path / f"run{suffix}"
    if suffix == ".yaml":
        path.write_text(
            "pretrained_model_name_or_path: base\ndataset_name: data\nlearning_rate: 1e-5\n"
            "train_batch_size: 8\nvalidation_prompt: [a, b]\ngradient_checkpointing: true\n"
        )
    else:
        path.write_text(
            'pretrained_model_name_or_path = "base"\ndataset_name = "data"\nlearning_rate = 1e-5\n'
            'train_batch_size = 8\nvalidation_prompt = ["a", "b"]\ngradient_checkpointing = true\n'
        )
    config = TrainConfig.from_args(
        [f"--config={path}", "--train_batch_size=2", "--no-gradient_checkpointing"]
    )
    assert config.learning_rate == 1e-5 and config.validation_prompt == ["a", "b"]
    assert config.train_batch_size == 2 and config.gradient_checkpointing is False


def test_effective_config_reruns_the_same_training(tmp_path):
    config = TrainConfig.from_args([*BASE, "--vram=12", "--seed=3", "--hub_token=secret"])
    path = write_effective_config(config, tmp_path)
    assert "secret" not in path.read_text()
    again = TrainConfig.from_args([f"--config={path}"])
    assert {**again.to_dict(), "config": None, "hub_token": None} == {
        **config.to_dict(),
        "config": None,
        "hub_token": None,
    }


def test_vram_preset_sets_and_prints_options_and_flags_win(capsys):
    config = TrainConfig.from_args([*BASE, "--vram=8", "--train_batch_size=2"])
    assert config.gradient_checkpointing and config.use_8bit_adam and config.cache_latents
    assert config.mixed_precision == "fp16" and config.gradient_accumulation_steps == 4
    assert config.train_batch_size == 2
    printed = capsys.readouterr().err
    assert "--vram 8" in printed and "--gradient_checkpointing" in printed
    assert not TrainConfig.from_args(BASE).gradient_checkpointing


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--resolution=100"], "multiple of 8"),
        (["--proportion_empty_prompts=1.5"], "proportion_empty_prompts"),
        (["--train_batch_size=0"], "train_batch_size"),
        (["--train_data_dir=x"], "only one of"),
        (["--validation_prompt", "a", "b", "c", "--validation_image", "x", "y"], "validation_image"),
        (["--report_to=wandb", "--hub_token=t"], "leak"),
    ],
)
def test_bad_input_is_one_clear_line(argv, message):
    with pytest.raises(UserError, match=message) as info:
        TrainConfig.from_args([*BASE, *argv])
    assert "\n" not in str(info.value)


def test_missing_required_inputs():
    with pytest.raises(UserError, match="pretrained_model_name_or_path"):
        TrainConfig.from_args(["--dataset_name=data"])
    with pytest.raises(UserError, match="dataset_name or --train_data_dir"):
        TrainConfig.from_args(["--pretrained_model_name_or_path=base"])


def test_bad_config_files(tmp_path):
    unknown = tmp_path / "a.yaml"
    unknown.write_text("learning_rat: 1e-5\n")
    with pytest.raises(UserError, match="unknown key 'learning_rat'"):
        load_config_file(unknown)
    bad_value = tmp_path / "b.toml"
    bad_value.write_text('train_batch_size = "four"\n')
    with pytest.raises(UserError, match="train_batch_size"):
        load_config_file(bad_value)
    with pytest.raises(UserError, match="not found"):
        load_config_file(tmp_path / "missing.yaml")


def test_the_cli_prints_user_errors_as_one_line_and_exits_2(capsys):
    from controlkit.cli import main

    assert main(["train", *BASE, "--resolution=100"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("controlkit train: error: --resolution must be") and "\n" not in err
