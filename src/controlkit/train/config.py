"""The training configuration: every flag of the diffusers ControlNet example, plus controlkit's extras.

One dataclass is the single source of truth: the argparse flags, the ``--config`` file keys and the
effective config written to ``output_dir/train_config.yaml`` all come from its fields. Precedence, lowest
first: field defaults, the ``--fast`` preset, the ``--vram`` preset, the config file, flags given on the
command line.
This module imports nothing heavy, so ``controlkit train --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlkit import flags
from controlkit.errors import UserError, first_line
from controlkit.flags import option

CONFIG_FILE_NAME = "train_config.yaml"
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
REPORT_TO = ("tensorboard", "wandb", "all", "none")
PRIVATE_FIELDS = ("config", "hub_token", "overwrite_output_dir")
"""Left out of logs, cards and the effective config: the token, the config file's own path, and the
one-off instruction to clear output_dir (a rerun from train_config.yaml must not wipe a folder silently)."""


@dataclass
class TrainConfig:
    """Field names and defaults are those of diffusers' examples/controlnet/train_controlnet.py."""

    # Models
    pretrained_model_name_or_path: str | None = option(
        None,
        "Base Stable Diffusion 1.x/2.x model: a Hub id or a local folder in the diffusers layout (required).",
    )
    controlnet_model_name_or_path: str | None = option(
        None, "Start from this ControlNet (Hub id or folder) instead of a copy of the base model's UNet."
    )
    revision: str | None = option(None, "Revision (branch, tag or commit) of the base model on the Hub.")
    variant: str | None = option(None, "Weights variant of the base model, e.g. fp16.")
    tokenizer_name: str | None = option(None, "Tokenizer name or path, if not the base model's own.")
    allow_pickle: bool = option(
        False, "Allow loading pickle (.bin/.ckpt) weights; by default only safetensors are loaded."
    )
    # Output and reproducibility
    output_dir: str = option(
        "controlnet-model",
        "Where the ControlNet, checkpoints, logs and metrics are written. One run at a time: a folder "
        "that another run is writing, or that holds another run (unless resuming it), is refused.",
    )
    overwrite_output_dir: bool = option(
        False,
        "Start a new run in an output_dir that holds another run: its checkpoints, metrics, validation "
        "grids, model and logs are removed first (other files stay).",
    )
    cache_dir: str | None = option(None, "Where downloaded models and datasets are stored.")
    seed: int | None = option(None, "A seed for reproducible training (data order, noise, caption dropout).")
    resolution: int = option(
        512,
        "Training resolution in pixels; images are resized and center-cropped to it. When not given, a "
        "dataset that `controlkit data build` made at another resolution trains at that one.",
    )
    # Schedule
    train_batch_size: int = option(4, "Batch size per device.")
    num_train_epochs: int = option(
        1, "Number of passes over the dataset (ignored if max_train_steps is set)."
    )
    max_train_steps: int | None = option(None, "Total optimizer steps; overrides num_train_epochs.")
    checkpointing_steps: int = option(
        500, "Save a resumable checkpoint-N/ every N optimizer steps (the final model is saved separately)."
    )
    checkpoints_total_limit: int | None = option(
        None, "Keep at most this many checkpoints (oldest removed first)."
    )
    resume_from_checkpoint: str | None = option(
        None, 'Resume from a checkpoint: "latest", a checkpoint-N name in output_dir, or a path.'
    )
    gradient_accumulation_steps: int = option(1, "Micro-batches accumulated before each optimizer step.")
    gradient_checkpointing: bool = option(False, "Recompute activations in the backward pass to save memory.")
    learning_rate: float = option(5e-6, "Initial learning rate (after the warm-up).")
    scale_lr: bool = option(
        False, "Scale the learning rate by GPUs x gradient accumulation steps x batch size."
    )
    lr_scheduler: str = option("constant", "Learning-rate schedule.", choices=LR_SCHEDULERS)
    lr_warmup_steps: int = option(500, "Warm-up steps of the learning-rate schedule.")
    lr_num_cycles: int = option(1, "Hard restarts of the cosine_with_restarts schedule.")
    lr_power: float = option(1.0, "Power factor of the polynomial schedule.")
    # Optimizer and memory
    use_8bit_adam: bool = option(
        False, "8-bit Adam from bitsandbytes (needs a CUDA GPU and controlkit[lowmem])."
    )
    dataloader_num_workers: int = option(
        0,
        "Worker processes loading data (0: in the main process). Not given: 0 on a CPU, and on CUDA up to 4 "
        "(one core left to the main process), so decoding images never holds up the GPU.",
    )
    adam_beta1: float = option(0.9, "Adam beta1.")
    adam_beta2: float = option(0.999, "Adam beta2.")
    adam_weight_decay: float = option(1e-2, "Adam weight decay.")
    adam_epsilon: float = option(1e-08, "Adam epsilon.")
    max_grad_norm: float = option(1.0, "Clip gradients to this norm.")
    allow_tf32: bool = option(False, "Allow TF32 matmuls on Ampere GPUs (faster, slightly less precise).")
    mixed_precision: str | None = option(
        None,
        "Mixed precision: the frozen UNet, VAE and text encoder in fp16/bf16, the ControlNet in fp32. "
        "Default: the accelerate config's setting.",
        choices=("no", "fp16", "bf16"),
    )
    enable_xformers_memory_efficient_attention: bool = option(
        False, "Use xformers attention if installed; otherwise PyTorch's SDPA (the default) is used."
    )
    set_grads_to_none: bool = option(False, "Set gradients to None instead of zero (saves memory).")
    vram: int | None = option(
        None,
        "Apply the walkthrough's memory settings for a GPU of this many GB and print them "
        "(flags and config keys you give still win).",
        choices=(8, 12, 16, 24),
    )
    cache_latents: bool | None = option(
        None,
        "Encode each image with the VAE once, keep its latent distribution on disk and reuse it across "
        "epochs and runs (trains exactly like encoding every step; about 64 KB per 512 px image in "
        "fp16). Default: on when the run covers more than one epoch.",
    )
    cache_text_embeddings: bool = option(
        False,
        "With the latent cache, also keep each caption's text embedding (77 x 1024 values at SD 2.1's "
        "size, about 158 KB in fp16), so the text encoder leaves the GPU too (--vram 8 does).",
    )
    latents_cache_dir: str | None = option(
        None, "Where the latent cache is kept (default: ~/.cache/controlkit/latents)."
    )
    fast: bool = option(
        False,
        "Speed preset: the latent cache, bf16 mixed precision (fp16 where the GPU has no bf16), and on "
        "CUDA TF32 matmuls and channels-last tensors (flags you give win).",
    )
    compile: bool = option(
        False,
        "torch.compile the UNet's and ControlNet's repeated blocks (regional: one compile per block shape, "
        "so start-up stays short); without a working compiler, one line and eager mode.",
    )
    channels_last: bool = option(
        False, "Channels-last memory format for the UNet and ControlNet on CUDA (no effect on a CPU)."
    )
    # Hub and tracking
    push_to_hub: bool = option(False, "Upload the final ControlNet and its model card to the Hub.")
    hub_token: str | None = option(None, "Hub token (default: the saved login or HF_TOKEN).")
    hub_model_id: str | None = option(None, "Hub repo to push to (default: the output_dir name).")
    logging_dir: str = option("logs", "Tracker log folder, relative to output_dir.")
    report_to: str = option("tensorboard", "Tracker for losses and validation images.", choices=REPORT_TO)
    tracker_project_name: str = option("train_controlnet", "Project name passed to the tracker.")
    # Data
    dataset_name: str | None = option(
        None,
        "Training data: a Hub dataset id, a folder written by datasets' save_to_disk (e.g. by "
        "`controlkit data build`), or parquet file(s)/folder.",
    )
    dataset_config_name: str | None = option(None, "Config of the Hub dataset, if it has several.")
    train_data_dir: str | None = option(
        None,
        "An image folder whose metadata.jsonl gives file_name, conditioning_image_file_name and the caption.",
    )
    # A column flag not given takes the name that `controlkit data build` recorded with the dataset.
    image_column: str = option("image", "Column of target images (not given: the dataset's recorded name).")
    conditioning_image_column: str = option(
        "conditioning_image", "Column of conditioning images (not given: the dataset's recorded name)."
    )
    caption_column: str = option(
        "text", "Column of captions, a string or a list of strings (not given: the dataset's recorded name)."
    )
    annotation_column: str = option(
        "annotation",
        "Column of condition annotations, used for adherence scores of --validation_rows (not given: the "
        "dataset's recorded name).",
    )
    max_train_samples: int | None = option(
        None, "Train on at most this many samples (for debugging or quick runs)."
    )
    max_unusable_rows_fraction: float = option(
        0.1,
        "Stop before training when more than this share of the rows cannot be used (a missing or "
        "undecodable image or conditioning image); below it those rows are skipped and named.",
    )
    proportion_empty_prompts: float = option(
        0.0, "Fraction of captions replaced by the empty prompt (caption dropout), from 0 to 1."
    )
    # Validation
    validation_prompt: list[str] | None = option(None, "Prompts evaluated every validation_steps.")
    validation_image: list[str] | None = option(
        None,
        "Conditioning images for the validation prompts (one, or one per prompt); a NAME.json beside an "
        "image may hold its annotation for adherence scores.",
    )
    validation_rows: int = option(
        0, "Also validate on this many (conditioning image, caption) rows taken from the training dataset."
    )
    num_validation_images: int = option(4, "Images generated per validation pair.")
    validation_steps: int = option(100, "Run validation every N optimizer steps.")
    validation_inference_steps: int | None = option(
        None, "Denoising steps per validation image (default: 20, UniPC as the reference uses)."
    )
    # Evaluation during training (`controlkit eval`'s evaluator)
    eval_steps: int | None = option(
        None,
        "Every N optimizer steps (and at the end), measure adherence (matched, shuffled, off-domain prompts, "
        "ControlNet off) on --eval_samples held-out samples: the rows --max_train_samples leaves out, else "
        "the --validation_image pairs with annotation sidecars. Figures go to metrics.jsonl and the tracker.",
    )
    eval_samples: int = option(8, "Held-out samples the in-training evaluation generates from.")
    eval_clip: str | None = option(
        None, "A CLIP model (Hub id or folder, safetensors) for the in-training evaluation's prompt fidelity."
    )
    # The file this configuration was read from (not itself a training option).
    config: str | None = option(
        None, "A YAML or TOML file holding these same keys; flags given here override it."
    )
    given: tuple[str, ...] = option(
        (), "The keys the command line and the config file set (from_namespace fills it).", hidden=True
    )

    @classmethod
    def from_args(cls, argv: list[str]) -> TrainConfig:
        """Parse a `controlkit train` command line (with --config file support) into a TrainConfig."""
        parser = argparse.ArgumentParser(prog="controlkit train")
        add_arguments(parser)
        return cls.from_namespace(parser.parse_args(argv))

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> TrainConfig:
        """Merge defaults, --vram preset, config file and explicitly given flags (parsed with SUPPRESS)."""
        flags_given = {k: v for k, v in vars(namespace).items() if k in _FIELDS}
        from_file = load_config_file(flags_given["config"]) if flags_given.get("config") else {}
        explicit = {**from_file, **flags_given}
        values = {}
        if flags.parse_bool(explicit.get("fast", False)):
            from controlkit.train.speed import fast_preset

            values.update(fast_preset())
        vram = explicit.get("vram")
        if vram is not None:
            from controlkit.train.memory import vram_preset

            values.update(vram_preset(int(vram)))
        values.update(explicit)
        config = cls(**values, given=tuple(explicit))
        config.validate()
        return config

    def is_given(self, name: str) -> bool:
        """Whether the user chose this setting: set by flag or config file, or (for a config made in
        Python) different from its default. A setting not given may give way to the dataset's record."""
        return name in self.given or getattr(self, name) != _FIELDS[name].default

    def validate(self) -> None:
        """One clear line for each kind of bad input, before any model is loaded."""
        if not self.pretrained_model_name_or_path:
            raise UserError("--pretrained_model_name_or_path is required (a Hub id or a local model folder)")
        if self.dataset_name is None and self.train_data_dir is None:
            raise UserError("give the training data with --dataset_name or --train_data_dir")
        if self.dataset_name is not None and self.train_data_dir is not None:
            raise UserError("give only one of --dataset_name and --train_data_dir")
        if self.resolution <= 0 or self.resolution % 8 != 0:
            raise UserError(
                f"--resolution must be a positive multiple of 8 (VAE downsamples 8x), got {self.resolution}"
            )
        if not 0 <= self.max_unusable_rows_fraction <= 1:
            raise UserError(
                f"--max_unusable_rows_fraction must be in [0, 1], got {self.max_unusable_rows_fraction}"
            )
        if self.overwrite_output_dir and self.resume_from_checkpoint:
            raise UserError(
                "give only one of --overwrite_output_dir (start afresh) and --resume_from_checkpoint "
                "(continue)"
            )
        if self.cache_text_embeddings and self.cache_latents is False:
            raise UserError("--cache_text_embeddings keeps them in the latent cache: drop --no-cache_latents")
        if not 0 <= self.proportion_empty_prompts <= 1:
            raise UserError(
                f"--proportion_empty_prompts must be in [0, 1], got {self.proportion_empty_prompts}"
            )
        for name in (
            "train_batch_size",
            "gradient_accumulation_steps",
            "checkpointing_steps",
            "validation_steps",
        ):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise UserError(f"--eval_steps must be at least 1, got {self.eval_steps}")
        if self.eval_samples < 2:  # the shuffled case swaps conditionings between samples
            raise UserError(f"--eval_samples must be at least 2, got {self.eval_samples}")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise UserError(
                f"--checkpoints_total_limit must be at least 1, got {self.checkpoints_total_limit}"
            )
        if self.max_train_steps is not None and self.max_train_steps < 1:
            raise UserError(f"--max_train_steps must be at least 1, got {self.max_train_steps}")
        if self.validation_prompt is not None and self.validation_image is not None:
            n_prompts, n_images = len(self.validation_prompt), len(self.validation_image)
            if not (n_prompts == 1 or n_images == 1 or n_prompts == n_images):
                raise UserError(
                    f"give one --validation_image, one --validation_prompt, or as many of each "
                    f"(got {n_images} images and {n_prompts} prompts)"
                )
        if self.report_to == "wandb" and self.hub_token is not None:
            raise UserError(
                "--hub_token with --report_to wandb would leak the token to wandb; use `hf auth login`"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings (every flag's value)."""
        return {f.name: getattr(self, f.name) for f in flags.flag_fields(TrainConfig)}

    def public_dict(self) -> dict[str, Any]:
        """The settings without the token and the config file's own path: what logs, cards and reruns show."""
        return {k: v for k, v in self.to_dict().items() if k not in PRIVATE_FIELDS}


_FIELDS = {f.name: f for f in flags.flag_fields(TrainConfig)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as a flag of the same name; unset flags stay out of the namespace."""
    flags.add_arguments(parser, TrainConfig, underscores=True, suppress=True)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or TOML config with the flag names as keys, checking names and types."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    if path.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise UserError(f"config file must be .yaml, .yml, .json or .toml: {path}")
    import yaml

    try:
        text = path.read_text()
        raw = tomllib.loads(text) if path.suffix == ".toml" else (yaml.safe_load(text) or {})
    except (ValueError, yaml.YAMLError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"cannot parse config file {path}: {first_line(exc)}") from exc
    if not isinstance(raw, dict):
        raise UserError(f"config file {path} must hold a mapping of flag names to values")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in _FIELDS or name == "config":
            raise UserError(f"unknown key {key!r} in config file {path}")
        values[name] = _coerce(_FIELDS[name], value, path)
    return values


def _coerce(f: dataclasses.Field, value: Any, path: Path) -> Any:
    if value is None:
        return None
    convert = flags.converter(f)
    try:
        if flags.is_list(f):
            items = value if isinstance(value, list) else [value]
            return [convert(item) for item in items]
        converted = convert(value)
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad value for {f.name!r} in config file {path}: {value!r}") from exc
    if "choices" in f.metadata and converted not in f.metadata["choices"]:
        raise UserError(f"bad value for {f.name!r} in config file {path}: {value!r}")
    return converted


@dataclass(frozen=True)
class RunSettings:
    """What one run resolved where its config left a choice open; the config itself is never changed.

    The seed is the user's or one drawn once for every process; the columns and the resolution are the
    flags' values, or the dataset's recorded ones where the flags were not given. Field names are the
    flags' names, so these values stand in for them in the effective config, the model card and reruns.
    """

    seed: int
    resolution: int
    image_column: str = "image"
    conditioning_image_column: str = "conditioning_image"
    caption_column: str = "text"
    annotation_column: str = "annotation"


TRAINED_BY = (
    "pretrained_model_name_or_path",
    "revision",
    "variant",
    "tokenizer_name",
    "controlnet_model_name_or_path",
    "dataset_name",
    "dataset_config_name",
    "train_data_dir",
    "max_train_samples",
    "proportion_empty_prompts",
    "train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "scale_lr",
    "lr_scheduler",
    "lr_warmup_steps",
    "lr_num_cycles",
    "lr_power",
    "use_8bit_adam",
    "adam_beta1",
    "adam_beta2",
    "adam_weight_decay",
    "adam_epsilon",
    "max_grad_norm",
    "mixed_precision",
)
"""The flags that change what a step trains (a checkpoint records them; a resume with others says so)."""
_CONSTANT_SCHEDULES = ("constant", "constant_with_warmup")


def trained_settings(config: TrainConfig, settings: RunSettings, num_processes: int) -> dict[str, Any]:
    """What a checkpoint records of the settings: the flags that change the training, with the values the
    run resolved, the number of processes and, for a decaying schedule, its length. Not the length of a
    constant-rate run: extending one is the usual reason to resume."""
    values = {name: getattr(config, name) for name in TRAINED_BY}
    values.update(dataclasses.asdict(settings), num_processes=num_processes)
    del values["annotation_column"]  # scores validation only
    if config.lr_scheduler not in _CONSTANT_SCHEDULES:
        values.update(max_train_steps=config.max_train_steps, num_train_epochs=config.num_train_epochs)
    return values


def effective_config(config: TrainConfig, settings: RunSettings | None = None) -> dict[str, Any]:
    """The public settings with the values the run resolved in place of open choices."""
    return {**config.public_dict(), **(dataclasses.asdict(settings) if settings else {})}


def write_effective_config(
    config: TrainConfig, output_dir: str | os.PathLike, settings: RunSettings | None = None
) -> Path:
    """Write the merged configuration (with the run's resolved settings); `--config` on this file reruns
    the same training."""
    import yaml

    path = Path(output_dir) / CONFIG_FILE_NAME
    path.write_text(yaml.safe_dump(effective_config(config, settings), sort_keys=False))
    return path
