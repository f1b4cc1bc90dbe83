"""The ControlNet training recipe, as one straight script over small components.

Set up (output folder, accelerator, seed, models, data, optimizer, schedule), optionally resume, then
loop: encode (or read the latent cache), add noise, run ControlNet + frozen UNet, regress the noise (or
the velocity), step. Checkpoints, metrics and validation happen at optimizer steps. All the randomness of
a step (latent sampling, noise, timesteps, caption dropout) comes from one seeded generator per process
that checkpoints save, so a resumed run and a cached run train exactly like an uninterrupted uncached one.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from controlkit import __version__
from controlkit.errors import UserError, first_line
from controlkit.metadata import write_metadata
from controlkit.models.loading import load_base_components, load_controlnet
from controlkit.train import checkpoints
from controlkit.train.config import TrainConfig, write_effective_config
from controlkit.train.data import PairedImages, collate, load_training_data, tokenize
from controlkit.train.memory import adam_class, choose_attention, peak_memory_mb
from controlkit.train.metrics import MetricsLog


class EpochSampler(torch.utils.data.Sampler):
    """A shuffle fixed by (seed, epoch) that can start part-way, so a resume neither repeats nor skips."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch, self.start = size, seed, 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        yield from order[self.start :].tolist()

    def __len__(self) -> int:
        return self.size - self.start


@dataclass
class Position:
    """Where training stands: optimizer steps done, current epoch, samples of it already consumed."""

    global_step: int = 0
    epoch: int = 0
    samples_in_epoch: int = 0


def prepare_output_dir(path: str) -> Path:
    """Create output_dir and prove it is writable, or say in one line why not."""
    output_dir = Path(path)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to output_dir {output_dir}: {exc.strerror or exc}") from exc
    return output_dir


def make_accelerator(config: TrainConfig, output_dir: Path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import ProjectConfiguration

    # train() may run several times in one process (quickstart, tests) with other precision/accumulation
    # settings; accelerate keeps those in process-wide state, so start it afresh (the process group stays).
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()

    if config.report_to == "wandb":  # "all" takes whichever trackers are installed
        from controlkit.errors import require

        require("wandb", "wandb")
    try:
        accelerator = Accelerator(
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            mixed_precision=config.mixed_precision,
            log_with=None if config.report_to == "none" else config.report_to,
            project_config=ProjectConfiguration(
                project_dir=str(output_dir), logging_dir=str(output_dir / config.logging_dir)
            ),
        )
    except ValueError as exc:
        raise UserError(f"cannot set up training: {first_line(exc)}") from exc
    if accelerator.device.type == "cpu" and accelerator.mixed_precision == "fp16":
        raise UserError(
            "--mixed_precision fp16 needs a GPU (the --vram presets set it); on a CPU use bf16 or no"
        )
    return accelerator


def shared_seed(accelerator, seed: int | None) -> int:
    """The user's seed, or one random seed agreed by every process (recorded in the effective config)."""
    from accelerate.utils import broadcast_object_list

    if seed is not None:
        return seed
    chosen = [secrets.randbelow(2**31)]
    broadcast_object_list(chosen)
    return chosen[0]


def load_condition(metadata: dict):
    """The dataset's condition for validation scores, or None (said in one line) if it can't be built."""
    name = metadata.get("condition")
    if not name:
        return None
    from controlkit import conditions

    try:
        return conditions.get(name, **metadata.get("condition_options", {}))
    except (UserError, ImportError) as exc:
        print(f"validation will not score adherence ({name}): {exc}", file=sys.stderr)
        return None


def training_loss(
    batch,
    *,
    encode,
    controlnet,
    unet,
    noise_scheduler,
    generator,
    weight_dtype,
    empty_prompt_embeds,
    proportion_empty_prompts: float,
    scaling_factor: float,
) -> torch.Tensor:
    """One diffusion training loss: noise the latents, predict with ControlNet residuals, regress."""
    latent_mean, latent_std, prompt_embeds = encode(batch)
    device, bsz = latent_mean.device, latent_mean.shape[0]
    sample = torch.randn(latent_mean.shape, generator=generator, device=device)
    latents = (latent_mean.float() + latent_std.float() * sample) * scaling_factor
    noise = torch.randn(latents.shape, generator=generator, device=device)
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (bsz,), generator=generator, device=device
    ).long()
    drop = torch.rand(bsz, generator=generator, device=device) < proportion_empty_prompts
    prompt_embeds = torch.where(drop[:, None, None], empty_prompt_embeds.to(prompt_embeds), prompt_embeds)
    noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps).to(weight_dtype)
    down_residuals, mid_residual = controlnet(
        noisy_latents,
        timesteps,
        encoder_hidden_states=prompt_embeds,
        controlnet_cond=batch["conditioning_pixel_values"].to(dtype=weight_dtype),
        return_dict=False,
    )
    model_pred = unet(
        noisy_latents,
        timesteps,
        encoder_hidden_states=prompt_embeds,
        down_block_additional_residuals=[r.to(dtype=weight_dtype) for r in down_residuals],
        mid_block_additional_residual=mid_residual.to(dtype=weight_dtype),
        return_dict=False,
    )[0]
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise UserError(f"unknown prediction type {prediction_type!r} in the base model's scheduler")
    return F.mse_loss(model_pred.float(), target.float(), reduction="mean")


def _register_controlnet_hooks(accelerator) -> None:
    """Checkpoints hold the ControlNet in diffusers form (safetensors) instead of a bare state dict."""
    from diffusers import ControlNetModel

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                model.save_pretrained(Path(output_dir) / "controlnet", safe_serialization=True)
                if weights:
                    weights.pop()

    def load_hook(models, input_dir):
        while models:
            model = models.pop()
            loaded = ControlNetModel.from_pretrained(input_dir, subfolder="controlnet", use_safetensors=True)
            model.register_to_config(**loaded.config)
            model.load_state_dict(loaded.state_dict())
            del loaded

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def _tracker_config(config: TrainConfig) -> dict[str, Any]:
    return {
        key: " | ".join(map(str, value)) if isinstance(value, list) else value
        for key, value in config.public_dict().items()
        if value is not None
    }


def _models(config: TrainConfig, accelerator):
    """The frozen base parts (mixed-precision dtype, on the device) and the ControlNet to train (fp32)."""
    base = load_base_components(
        config.pretrained_model_name_or_path,
        revision=config.revision,
        variant=config.variant,
        cache_dir=config.cache_dir,
        tokenizer_name=config.tokenizer_name,
        allow_pickle=config.allow_pickle,
    )
    if config.controlnet_model_name_or_path:
        controlnet = load_controlnet(
            config.controlnet_model_name_or_path, cache_dir=config.cache_dir, allow_pickle=config.allow_pickle
        )
    else:
        from diffusers import ControlNetModel

        controlnet = ControlNetModel.from_unet(base.unet)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
        accelerator.mixed_precision, torch.float32
    )
    for frozen in (base.vae, base.unet, base.text_encoder):
        frozen.requires_grad_(False)
        frozen.eval()
        frozen.to(accelerator.device)
        if weight_dtype != torch.float32:  # casting at all makes diffusers warn, even to float32
            frozen.to(dtype=weight_dtype)
    controlnet.train()
    choose_attention([base.unet, controlnet], config.enable_xformers_memory_efficient_attention)
    if config.gradient_checkpointing:
        controlnet.enable_gradient_checkpointing()
    _register_controlnet_hooks(accelerator)
    return base, controlnet, weight_dtype


def _training_inputs(config: TrainConfig, data, base, accelerator, weight_dtype):
    """The training dataset, how a batch becomes (latent mean, latent std, prompt embeddings), and the
    empty-prompt embedding for caption dropout: from the VAE and text encoder, or from the latent cache."""
    from controlkit.train.cache import CachedPairs, prepare_cache

    pairs = PairedImages(data, config.resolution, base.tokenizer, config.seed)
    if config.cache_latents:
        cache = prepare_cache(
            config=config,
            data=data,
            pairs=pairs,
            vae=base.vae,
            text_encoder=base.text_encoder,
            tokenizer=base.tokenizer,
            accelerator=accelerator,
            weight_dtype=weight_dtype,
        )
        train_dataset = CachedPairs(pairs, cache)
        empty_prompt_embeds = cache.empty_prompt_embeds.to(accelerator.device)
        base.vae.to("cpu")
        base.text_encoder.to("cpu")

        def encode(batch):
            return batch["latent_mean"], batch["latent_std"], batch["prompt_embeds"]
    else:
        train_dataset = pairs
        with torch.no_grad():
            empty_prompt_embeds = base.text_encoder(
                tokenize(base.tokenizer, [""]).to(accelerator.device), return_dict=False
            )[0][0]

        @torch.no_grad()
        def encode(batch):
            dist = base.vae.encode(batch["pixel_values"].to(dtype=weight_dtype)).latent_dist
            return dist.mean, dist.std, base.text_encoder(batch["input_ids"], return_dict=False)[0]

    return train_dataset, encode, empty_prompt_embeds


def train(config: TrainConfig) -> Path:
    """Train a ControlNet as the config says; returns output_dir (the ControlNet is saved at its root)."""
    config.validate()
    missing = [path for path in config.validation_image or [] if not Path(path).is_file()]
    if missing:  # here, not in validate(): a command line parses anywhere, training needs the files
        raise UserError(f"--validation_image not found: {', '.join(missing)}")
    output_dir = prepare_output_dir(config.output_dir)
    resume_path = (
        checkpoints.resolve_resume(output_dir, config.resume_from_checkpoint)
        if config.resume_from_checkpoint
        else None
    )
    accelerator = make_accelerator(config, output_dir)
    config.seed = shared_seed(accelerator, config.seed)
    repo_id = None
    if config.push_to_hub and accelerator.is_main_process:
        from controlkit.train import hub

        repo_id = hub.check_push_access(config)
    if config.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    from accelerate.utils import set_seed

    set_seed(config.seed)

    adam = adam_class(config.use_8bit_adam)  # fails here, before loading anything, without a GPU

    # Data first (its errors come before a long model download): decodable rows, column names resolved.
    from controlkit.train.cache import default_cache_root

    with accelerator.main_process_first():
        data = load_training_data(config, cache_root=default_cache_root(config))
    config.image_column = data.image_column
    config.conditioning_image_column = data.conditioning_image_column
    config.caption_column = data.caption_column
    if config.annotation_column == "annotation" and data.metadata.get("annotation_column"):
        config.annotation_column = data.metadata["annotation_column"]

    # Validation inputs too: a bad --validation_image fails before the models load.
    condition = load_condition(data.metadata)
    validation_pairs = []
    if config.validation_prompt or config.validation_image or config.validation_rows:
        from controlkit.train import validation

        validation_pairs = validation.validation_pairs(config, condition, dataset=data.dataset)
    base, controlnet, weight_dtype = _models(config, accelerator)
    train_dataset, encode, empty_prompt_embeds = _training_inputs(
        config, data, base, accelerator, weight_dtype
    )

    sampler = EpochSampler(len(train_dataset), config.seed)
    train_dataloader = torch.utils.data.DataLoader(
        train_dataset,
        sampler=sampler,
        batch_size=config.train_batch_size,
        num_workers=config.dataloader_num_workers,
        collate_fn=collate,
    )

    # Optimizer and schedule (step counts as the reference computes them).
    learning_rate = config.learning_rate
    if config.scale_lr:
        learning_rate *= (
            config.gradient_accumulation_steps * config.train_batch_size * accelerator.num_processes
        )
    optimizer = adam(
        controlnet.parameters(),
        lr=learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    batches_per_process = math.ceil(len(train_dataloader) / accelerator.num_processes)
    steps_per_epoch = math.ceil(batches_per_process / config.gradient_accumulation_steps)
    total_steps = config.max_train_steps or config.num_train_epochs * steps_per_epoch
    from diffusers.optimization import get_scheduler

    lr_scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=total_steps * accelerator.num_processes,
        num_cycles=config.lr_num_cycles,
        power=config.lr_power,
    )
    controlnet, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        controlnet, optimizer, train_dataloader, lr_scheduler
    )
    steps_per_epoch = math.ceil(len(train_dataloader) / config.gradient_accumulation_steps)
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    total_batch_size = (
        config.train_batch_size * accelerator.num_processes * config.gradient_accumulation_steps
    )

    # Trackers, effective config.
    if accelerator.is_main_process:
        write_effective_config(config, output_dir)
        accelerator.init_trackers(config.tracker_project_name, config=_tracker_config(config))
    metrics = MetricsLog(output_dir, enabled=accelerator.is_main_process)

    generator = torch.Generator(device=accelerator.device).manual_seed(
        config.seed + accelerator.process_index
    )
    position = Position()
    if resume_path is not None:
        state = checkpoints.load_checkpoint(accelerator, resume_path, generator)
        position = Position(state["global_step"], state["epoch"], state["samples_in_epoch"])
        if position.samples_in_epoch >= len(train_dataset):
            position = Position(position.global_step, position.epoch + 1, 0)
        metrics.truncate_after(position.global_step)
        accelerator.print(f"resumed from {resume_path} at step {position.global_step}")
    if accelerator.is_main_process:
        checkpoints.remove_partial(output_dir)

    def run_validation(step: int) -> None:
        if not validation_pairs or not accelerator.is_main_process:
            return
        from controlkit.train import validation

        if config.cache_latents:
            base.vae.to(accelerator.device)
            base.text_encoder.to(accelerator.device)
        scores = validation.log_validation(
            vae=base.vae,
            text_encoder=base.text_encoder,
            tokenizer=base.tokenizer,
            unet=base.unet,
            controlnet=controlnet,
            config=config,
            accelerator=accelerator,
            weight_dtype=weight_dtype,
            step=step,
            pairs=validation_pairs,
            condition=condition,
        )
        if config.cache_latents:
            base.vae.to("cpu")
            base.text_encoder.to("cpu")
        if scores:
            metrics.write({"step": step, "validation": scores})
            accelerator.log(scores, step=step)

    accelerator.print(
        f"training on {len(train_dataset)} samples ({len(data.skipped)} skipped), {num_epochs} epochs, "
        f"{total_steps} steps, batch {total_batch_size} (per device {config.train_batch_size} x "
        f"{accelerator.num_processes} processes x {config.gradient_accumulation_steps} accumulation)"
    )
    from tqdm.auto import tqdm

    progress = tqdm(
        total=total_steps,
        initial=position.global_step,
        desc="steps",
        disable=not accelerator.is_local_main_process,
    )
    scaling_factor = base.vae.config.scaling_factor
    loss_sum, micro_batches, step_start = torch.zeros((), device=accelerator.device), 0, time.perf_counter()
    first_epoch, done = position.epoch, position.global_step >= total_steps
    for epoch in range(first_epoch, num_epochs):
        if done:
            break
        sampler.set_position(epoch, position.samples_in_epoch if epoch == first_epoch else 0)
        position.epoch, position.samples_in_epoch = epoch, sampler.start
        for batch in train_dataloader:
            with accelerator.accumulate(controlnet):
                loss = training_loss(
                    batch,
                    encode=encode,
                    controlnet=controlnet,
                    unet=base.unet,
                    noise_scheduler=base.noise_scheduler,
                    generator=generator,
                    weight_dtype=weight_dtype,
                    empty_prompt_embeds=empty_prompt_embeds,
                    proportion_empty_prompts=config.proportion_empty_prompts,
                    scaling_factor=scaling_factor,
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(controlnet.parameters(), config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=config.set_grads_to_none)
            loss_sum += loss.detach()
            micro_batches += 1
            position.samples_in_epoch += config.train_batch_size * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            position.global_step += 1
            step_loss = accelerator.reduce(loss_sum / micro_batches, reduction="mean").item()
            elapsed = time.perf_counter() - step_start
            if not math.isfinite(step_loss):
                accelerator.end_training()
                last = checkpoints.list_checkpoints(output_dir)
                raise UserError(
                    f"the loss became {step_loss} at step {position.global_step}; training stopped "
                    f"(last good checkpoint: {last[-1] if last else 'none'}); try a lower --learning_rate "
                    "or --mixed_precision bf16"
                )
            record = {
                "step": position.global_step,
                "epoch": epoch,
                "loss": step_loss,
                "lr": lr_scheduler.get_last_lr()[0],
                "images_per_s": total_batch_size / elapsed,
                "peak_memory_mb": peak_memory_mb(accelerator.device),
            }
            metrics.write(record)
            accelerator.log({k: v for k, v in record.items() if k != "step"}, step=position.global_step)
            progress.update(1)
            progress.set_postfix(loss=f"{step_loss:.4f}", lr=f"{record['lr']:.2e}")
            if position.global_step % config.checkpointing_steps == 0:
                saved = checkpoints.save_checkpoint(
                    accelerator,
                    output_dir,
                    position.global_step,
                    vars(position),
                    generator,
                    limit=config.checkpoints_total_limit,
                )
                accelerator.print(f"saved {saved}")
            if position.global_step % config.validation_steps == 0:
                run_validation(position.global_step)
            loss_sum, micro_batches, step_start = torch.zeros_like(loss_sum), 0, time.perf_counter()
            if position.global_step >= total_steps:
                done = True
                break
    progress.close()

    # The final ControlNet where the reference saves it, with what generate/app need to know.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(controlnet).save_pretrained(output_dir, safe_serialization=True)
        metadata = {
            "base_model": config.pretrained_model_name_or_path,
            "condition": data.metadata.get("condition"),
            "condition_options": data.metadata.get("condition_options", {}),
            "resolution": config.resolution,
            "dataset": data.source,
            "controlkit_version": __version__,
        }
        write_metadata(output_dir, metadata)
        if position.global_step % config.validation_steps != 0:
            run_validation(position.global_step)
        if repo_id is not None:
            from controlkit.train import hub

            hub.write_model_card(output_dir, dataclasses.replace(config, hub_model_id=repo_id), metadata)
            hub.push_to_hub(output_dir, repo_id, config.hub_token)
    accelerator.end_training()
    return output_dir
