"""The ControlNet training recipe, as one straight script over small components.

``train()`` reads as its steps: start (checks that fail in seconds, the accelerator, the seed), the data
(and the settings it resolves), the validation inputs, the models, the training inputs, the optimizer and
schedule, logging, resume, the loop, the finish. The loop: encode (or read the latent cache), add noise,
run ControlNet + frozen UNet, regress the noise (or the velocity), step; checkpoints, metrics and
validation happen at optimizer steps. All the randomness of a step (latent sampling, noise, timesteps,
caption dropout) comes from one seeded generator per process that checkpoints save, so a resumed run and
a cached run train exactly like an uninterrupted uncached one. The config is never changed: what the run
resolves lives in ``data.settings``.

Faults: the main process holds output_dir for the run (``output.claim_output_dir``) and decides which
checkpoint to resume; the others follow its decision (``agreement``). Given a ``StopRequest``
(the CLI's ``graceful_stop``), a SIGTERM or SIGINT saves a checkpoint at the next read of the loss (after
the step in hand on a CPU, within ``speed.SYNC_EVERY_STEPS_ON_GPU`` steps on a GPU) and raises ``Stopped``;
every process learns of the stop from that read's reduce, so all save the same step and the stop adds no
synchronisation. A checkpoint or model that cannot be written stops in one line.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from controlkit import __version__
from controlkit.conditions.base import Condition
from controlkit.console import say
from controlkit.errors import UserError, first_line
from controlkit.metadata import ControlNetInfo, DatasetInfo
from controlkit.stopping import Stopped, StopRequest
from controlkit.train import checkpoints, speed
from controlkit.train.agreement import decided_by_main
from controlkit.train.checkpoints import EpochSampler, Position
from controlkit.train.config import (
    RunSettings,
    TrainConfig,
    effective_config,
    trained_settings,
    write_effective_config,
)
from controlkit.train.data import PairedImages, TrainingData, collate, load_training_data, tokenize
from controlkit.train.evaluation import TrainingEvaluation, prepare_evaluation
from controlkit.train.memory import adam_class, peak_memory_mb
from controlkit.train.metrics import MetricsLog
from controlkit.train.models import TrainingModels, load_models
from controlkit.train.output import claim_output_dir, prepare_output_dir
from controlkit.train.validation import ValidationPair, log_validation, validation_pairs


def train(config: TrainConfig, stop: StopRequest | None = None) -> Path:
    """Train a ControlNet as the config says; returns output_dir (the ControlNet is saved at its root).

    With ``stop`` (from ``controlkit.stopping.graceful_stop``), a stop request saves a checkpoint after
    the step in hand and raises ``Stopped``.
    """
    check_inputs(config)
    output_dir = prepare_output_dir(config.output_dir)
    accelerator = make_accelerator(config, output_dir)
    with claim_output_dir(config, output_dir, accelerator):
        run = start(config, accelerator, output_dir, stop)
        data = load_data(run)
        validate = prepare_validation(run, data)  # a bad --validation_image fails before the models load
        evaluate = prepare_evaluation(run, data, validate.pairs, validate.condition)
        models = load_models(config, run.accelerator)
        inputs = training_inputs(run, data, models)
        schedule = optimizer_and_schedule(run, models, inputs)
        start_logging(run, data, schedule)
        position = resume(run, models, epoch_size=inputs.sampler.epoch_length)
        train_loop(run, models, inputs, schedule, position, validate, evaluate)
        finish(run, data, models, position, validate, evaluate)
    return output_dir


@dataclass
class Run:
    """What every step of one training run shares."""

    config: TrainConfig
    accelerator: Any
    output_dir: Path
    seed: int  # the user's, or one drawn once for every process
    generator: torch.Generator  # all the randomness of a step, per process; checkpoints save it
    metrics: MetricsLog
    optimizer_class: type
    resume_path: Path | None = None
    repo_id: str | None = None  # the Hub repo to push to, checked before training
    stop: StopRequest | None = None  # set by a signal: save after the step in hand and stop
    settings_record: dict | None = None  # what checkpoints record (trained_settings), once the data is read
    checkpoint_bytes: int = 0  # a checkpoint's expected size before the first exists

    @property
    def stop_requested(self) -> bool:
        return self.stop is not None and self.stop.requested


@dataclass
class Inputs:
    """What the loop reads: samples in the sampler's order, and how a batch becomes model inputs."""

    dataset: Any
    sampler: EpochSampler
    loader: Any
    encode: Callable  # batch -> (latent mean, latent std, prompt embeddings)
    empty_prompt_embeds: torch.Tensor  # for caption dropout


@dataclass
class Schedule:
    """The optimizer and LR schedule, the prepared data loader, and the step counts."""

    optimizer: Any
    lr_scheduler: Any
    loader: Any
    total_steps: int
    num_epochs: int
    total_batch_size: int


def check_inputs(config: TrainConfig) -> None:
    """The flags, and the files they name, before anything is written."""
    config.validate()
    missing = [path for path in config.validation_image or [] if not Path(path).is_file()]
    if missing:  # here, not in validate(): a command line parses anywhere, training needs the files
        raise UserError(f"--validation_image not found: {', '.join(missing)}")


def start(config: TrainConfig, accelerator, output_dir: Path, stop: StopRequest | None = None) -> Run:
    """What can fail in seconds comes first: the checkpoint to resume, Hub access, the optimizer's package;
    then the seed (the user's, else the checkpoint's), agreed by every process."""
    resume_path = None
    if config.resume_from_checkpoint:  # the main process checks the files (and sets a damaged one aside)
        resume_path = decided_by_main(
            accelerator, lambda: checkpoints.resolve_resume(output_dir, config.resume_from_checkpoint)
        )
    recorded = checkpoints.recorded_settings(resume_path) if resume_path is not None else None
    seed = shared_seed(accelerator, config.seed if config.seed is not None else (recorded or {}).get("seed"))
    repo_id = None
    if config.push_to_hub and accelerator.is_main_process:
        from controlkit.train import hub

        repo_id = hub.check_push_access(config)
    if config.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    from accelerate.utils import set_seed

    set_seed(seed)
    optimizer_class = adam_class(config.use_8bit_adam)  # fails here, before loading anything, without a GPU
    generator = torch.Generator(device=accelerator.device).manual_seed(seed + accelerator.process_index)
    metrics = MetricsLog(output_dir, enabled=accelerator.is_main_process)
    return Run(
        config, accelerator, output_dir, seed, generator, metrics, optimizer_class, resume_path, repo_id, stop
    )


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
            mixed_precision=speed.mixed_precision_for(
                config.mixed_precision, torch.cuda.is_bf16_supported() if torch.cuda.is_available() else None
            ),
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


def load_data(run: Run) -> TrainingData:
    """The data before the models (its errors come before a long model download): decodable rows, and
    the run's settings resolved from the flags and the dataset's record."""
    from controlkit.train.cache import default_cache_root

    with run.accelerator.main_process_first():
        data = load_training_data(run.config, seed=run.seed, cache_root=default_cache_root(run.config))
    run.settings_record = trained_settings(run.config, data.settings, run.accelerator.num_processes)
    return data


def load_condition(info: DatasetInfo) -> Condition | None:
    """The dataset's condition for validation scores, or None (said in one line) if it can't be built."""
    if not info.condition:
        return None
    from controlkit import conditions

    try:
        return conditions.get(info.condition, **info.condition_options)
    except (UserError, ImportError) as exc:
        say(f"validation will not score adherence ({info.condition}): {exc}")
        return None


@dataclass
class Validator:
    """Validation at optimizer steps: fixed pairs, scored with the dataset's condition when it has one."""

    pairs: list[ValidationPair]
    condition: Condition | None
    settings: RunSettings

    def __call__(self, run: Run, models: TrainingModels, step: int) -> None:
        """Sample, save the grid, log the scores (main process; the VAE and text encoder on the device)."""
        if not self.pairs or not run.accelerator.is_main_process:
            return
        base = models.base
        with models.encoders.in_use():
            scores = log_validation(
                vae=base.vae,
                text_encoder=base.text_encoder,
                tokenizer=base.tokenizer,
                unet=base.unet,
                controlnet=models.controlnet,
                config=run.config,
                settings=self.settings,
                accelerator=run.accelerator,
                weight_dtype=models.weight_dtype,
                step=step,
                pairs=self.pairs,
                condition=self.condition,
            )
        if scores:
            run.metrics.write({"step": step, "validation": scores})
            run.accelerator.log(scores, step=step)


def prepare_validation(run: Run, data: TrainingData) -> Validator:
    """The validation pairs (images read and checked now) and the condition that scores them."""
    config = run.config
    condition = load_condition(data.info)
    pairs = []
    if config.validation_prompt or config.validation_image or config.validation_rows:
        pairs = validation_pairs(config, data.settings, condition, dataset=data.dataset)
    return Validator(pairs, condition, data.settings)


def training_inputs(run: Run, data: TrainingData, models: TrainingModels) -> Inputs:
    """The training samples and how a batch becomes (latent mean, latent std, prompt embeddings), with the
    empty-prompt embedding for caption dropout: from the VAE and text encoder, or from the latent cache
    (then the VAE, and the text encoder when the cache holds the embeddings, are parked off the device)."""
    config, accelerator, base = run.config, run.accelerator, models.base
    pairs = PairedImages(data, base.tokenizer)
    processes = accelerator.num_processes
    workers = speed.data_workers(config, accelerator.device)
    cache = None
    if speed.uses_latent_cache(config, len(pairs), processes):
        from controlkit.train.cache import CachedPairs, prepare_cache

        cache = prepare_cache(
            config=config,
            data=data,
            pairs=pairs,
            vae=base.vae,
            text_encoder=base.text_encoder,
            tokenizer=base.tokenizer,
            accelerator=accelerator,
            weight_dtype=models.weight_dtype,
            with_text=config.cache_text_embeddings,
            workers=workers,
        )
        dataset = CachedPairs(pairs, cache)
        models.encoders.park(text_encoder_too=cache.has_text)
    else:
        dataset = pairs

    @torch.no_grad()
    def encode(batch):
        if cache is None:
            dist = base.vae.encode(batch["pixel_values"].to(dtype=models.weight_dtype)).latent_dist
            mean, std = dist.mean, dist.std
        else:
            mean, std = batch["latent_mean"], batch["latent_std"]
        if "prompt_embeds" in batch:
            return mean, std, batch["prompt_embeds"]
        return mean, std, base.text_encoder(batch["input_ids"], return_dict=False)[0]

    if cache is not None and cache.has_text:
        empty_prompt_embeds = cache.empty_prompt_embeds.to(accelerator.device)
    else:
        with torch.no_grad():
            empty_prompt_embeds = base.text_encoder(
                tokenize(base.tokenizer, [""]).to(accelerator.device), return_dict=False
            )[0][0]
    sampler = EpochSampler(
        len(dataset), data.settings.seed, multiple=config.train_batch_size * processes if processes > 1 else 1
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        sampler=sampler,
        batch_size=config.train_batch_size,
        collate_fn=collate,
        **speed.loader_options(workers, accelerator.device),
    )
    return Inputs(dataset, sampler, loader, encode, empty_prompt_embeds)


def optimizer_and_schedule(run: Run, models: TrainingModels, inputs: Inputs) -> Schedule:
    """AdamW over the ControlNet and the LR schedule, with step counts as the reference computes them;
    the ControlNet, optimizer, loader and schedule are prepared by accelerate here."""
    config, accelerator = run.config, run.accelerator
    learning_rate = config.learning_rate
    if config.scale_lr:
        learning_rate *= (
            config.gradient_accumulation_steps * config.train_batch_size * accelerator.num_processes
        )
    optimizer = run.optimizer_class(
        models.controlnet.parameters(),
        lr=learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
        **speed.optimizer_options(accelerator.device, config.use_8bit_adam),
    )
    batches_per_process = math.ceil(len(inputs.loader) / accelerator.num_processes)
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
    models.controlnet, optimizer, loader, lr_scheduler = accelerator.prepare(
        models.controlnet, optimizer, inputs.loader, lr_scheduler
    )
    steps_per_epoch = math.ceil(len(loader) / config.gradient_accumulation_steps)
    total_batch_size = (
        config.train_batch_size * accelerator.num_processes * config.gradient_accumulation_steps
    )
    return Schedule(
        optimizer,
        lr_scheduler,
        loader,
        total_steps,
        math.ceil(total_steps / steps_per_epoch),
        total_batch_size,
    )


def _tracker_config(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: " | ".join(map(str, value)) if isinstance(value, list) else value
        for key, value in values.items()
        if value is not None
    }


def start_logging(run: Run, data: TrainingData, schedule: Schedule) -> None:
    """The effective config (with the run's settings) and the trackers; one line on what will be trained."""
    config, accelerator = run.config, run.accelerator
    if accelerator.is_main_process:
        write_effective_config(config, run.output_dir, data.settings)
        accelerator.init_trackers(
            config.tracker_project_name, config=_tracker_config(effective_config(config, data.settings))
        )
    accelerator.print(
        f"training on {len(data.dataset)} samples ({len(data.skipped)} skipped), {schedule.num_epochs} "
        f"epochs, {schedule.total_steps} steps, batch {schedule.total_batch_size} (per device "
        f"{config.train_batch_size} x {accelerator.num_processes} processes x "
        f"{config.gradient_accumulation_steps} accumulation)"
    )


def resume(run: Run, models: TrainingModels, epoch_size: int) -> Position:
    """Where training starts: the checkpoint's position (with its random generator, the metrics up to it,
    and a note if it was trained with other settings), or the beginning; leftovers of a crashed checkpoint
    write and a torn last metrics line are removed."""
    accelerator, position = run.accelerator, Position()
    run.checkpoint_bytes = checkpoints.expected_checkpoint_bytes(models.controlnet)
    if run.resume_path is not None:
        position = checkpoints.load_checkpoint(accelerator, run.resume_path, run.generator, epoch_size)
        _say_changed_settings(run.resume_path, run.settings_record or {})
        accelerator.print(f"resumed from {run.resume_path} at step {position.global_step}")
    run.metrics.truncate_after(position.global_step)
    if accelerator.is_main_process:
        checkpoints.remove_partial(run.output_dir)
    return position


def _say_changed_settings(path: Path, now: dict[str, Any]) -> None:
    """One line when the checkpoint was trained with other settings than this run's (older checkpoints
    recorded none)."""
    recorded = checkpoints.recorded_settings(path)
    if recorded is None:
        return
    changed = [
        f"{key} {recorded.get(key)!r} (now {now.get(key)!r})"
        for key in sorted(recorded.keys() | now.keys())
        if recorded.get(key) != now.get(key)
    ]
    if changed:
        say(
            f"{path.name} was trained with other settings: {', '.join(changed)}; continuing with the "
            "settings given now"
        )


class _StepMeter:
    """The losses of the optimizer steps since the loss was last read back from the device, and the time.

    A read waits for the device to finish its queue, so on a GPU it happens every few steps
    (``speed.sync_every``), at steps every process agrees on. The stop flag rides on the same reduce: the
    processes agree on stopping at the same step at no extra synchronisation.
    """

    def __init__(self, device):
        self.every = speed.sync_every(device)
        self.loss_sum, self.count = torch.zeros((), device=device), 0
        self.pending: list[tuple[int, int, float, torch.Tensor]] = []  # (step, epoch, lr, loss on device)
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss
        self.count += 1

    def close_step(self, step: int, epoch: int, lr: float) -> None:
        """An optimizer step ended: keep its loss (averaged over micro-batches) on the device."""
        self.pending.append((step, epoch, lr, self.loss_sum / self.count))
        self.loss_sum, self.count = torch.zeros_like(self.loss_sum), 0

    def read(
        self, accelerator, stop: bool = False
    ) -> tuple[list[tuple[int, int, float, float]], float, bool]:
        """The pending steps with their losses averaged over processes, the seconds per step since the last
        read, and whether any process was asked to stop."""
        flag = torch.full_like(self.loss_sum, float(stop))  # a fill kernel: no host-to-device copy, no sync
        values = torch.stack([*(loss for *_, loss in self.pending), flag])
        *losses, stops = accelerator.reduce(values, reduction="mean").tolist()
        seconds = (time.perf_counter() - self.start) / len(self.pending)
        steps = [
            (step, epoch, lr, loss) for (step, epoch, lr, _), loss in zip(self.pending, losses, strict=True)
        ]
        self.pending, self.start = [], time.perf_counter()
        return steps, seconds, stops > 0


def train_loop(
    run: Run,
    models: TrainingModels,
    inputs: Inputs,
    schedule: Schedule,
    position: Position,
    validate: Validator,
    evaluate: TrainingEvaluation | None = None,
) -> None:
    """Epochs of micro-batches from where ``position`` stands, until the last optimizer step."""
    from tqdm.auto import tqdm

    accelerator = run.accelerator
    progress = tqdm(
        total=schedule.total_steps,
        initial=position.global_step,
        desc="steps",
        disable=not accelerator.is_local_main_process,
    )
    meter, first_epoch = _StepMeter(accelerator.device), position.epoch
    try:  # the bar is closed before any message that ends the run, so that message is the last line
        for epoch in range(first_epoch, schedule.num_epochs):
            if position.global_step >= schedule.total_steps:
                break
            inputs.sampler.set_position(epoch, position.samples_in_epoch if epoch == first_epoch else 0)
            position.epoch, position.samples_in_epoch = epoch, inputs.sampler.start
            for batch in schedule.loader:
                meter.add(_micro_step(run, models, inputs, schedule, batch))
                position.samples_in_epoch += run.config.train_batch_size * accelerator.num_processes
                if not accelerator.sync_gradients:
                    continue
                position.global_step += 1
                _after_step(run, models, schedule, position, validate, evaluate, meter, progress)
                if position.global_step >= schedule.total_steps:
                    break
    finally:
        progress.close()


def _micro_step(run: Run, models: TrainingModels, inputs: Inputs, schedule: Schedule, batch) -> torch.Tensor:
    """The loss of one batch, backward, and the optimizer step at the end of an accumulation."""
    config, accelerator, base = run.config, run.accelerator, models.base
    with accelerator.accumulate(models.controlnet):
        loss = training_loss(
            batch,
            encode=inputs.encode,
            controlnet=models.controlnet,
            unet=base.unet,
            noise_scheduler=base.noise_scheduler,
            generator=run.generator,
            weight_dtype=models.weight_dtype,
            empty_prompt_embeds=inputs.empty_prompt_embeds,
            proportion_empty_prompts=config.proportion_empty_prompts,
            scaling_factor=base.vae.config.scaling_factor,
        )
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(models.controlnet.parameters(), config.max_grad_norm)
        schedule.optimizer.step()
        schedule.lr_scheduler.step()
        schedule.optimizer.zero_grad(set_to_none=config.set_grads_to_none)
    return loss.detach()


def _after_step(
    run: Run,
    models: TrainingModels,
    schedule: Schedule,
    position: Position,
    validate: Validator,
    evaluate: TrainingEvaluation | None,
    meter: _StepMeter,
    progress,
) -> None:
    """An optimizer step is done. When its loss is read (``_StepMeter``): stop on a non-finite loss, record
    the steps since the last read; checkpoint, validate and evaluate when due; asked to stop, checkpoint
    and stop."""
    config, accelerator, step = run.config, run.accelerator, position.global_step
    meter.close_step(step, position.epoch, schedule.lr_scheduler.get_last_lr()[0])
    progress.update(1)
    due_checkpoint = step % config.checkpointing_steps == 0
    due_validation = step % config.validation_steps == 0
    due_evaluation = evaluate is not None and step % config.eval_steps == 0
    due = due_checkpoint or due_validation or due_evaluation or step >= schedule.total_steps
    if not (due or step % meter.every == 0):
        return
    steps, seconds, stopping = meter.read(accelerator, run.stop_requested)
    for done, epoch, lr, loss in steps:
        _record_step(run, schedule, done, epoch, lr, loss, seconds)
    progress.set_postfix(loss=f"{steps[-1][3]:.4f}", lr=f"{steps[-1][2]:.2e}")
    if due_checkpoint or stopping:
        saved = checkpoints.save_checkpoint(
            accelerator,
            run.output_dir,
            position,
            run.generator,
            limit=config.checkpoints_total_limit,
            settings=run.settings_record,
            expected_bytes=run.checkpoint_bytes,
        )
        accelerator.print(f"saved {saved}")
        if stopping:
            accelerator.end_training()
            raise Stopped(
                f"saved {saved} at step {step} of {schedule.total_steps}; to continue, run "
                "the same command with --resume_from_checkpoint latest"
            )
    if due_validation:
        validate(run, models, step)
    if due_evaluation:
        evaluate(run, models, step)


def _record_step(run: Run, schedule: Schedule, step: int, epoch: int, lr: float, loss: float, seconds: float):
    """One step's metrics line and tracker values; a non-finite loss ends the run in one line."""
    accelerator = run.accelerator
    if not math.isfinite(loss):
        accelerator.end_training()
        last = checkpoints.list_checkpoints(run.output_dir)
        raise UserError(
            f"the loss became {loss} at step {step}; training stopped "
            f"(last good checkpoint: {last[-1] if last else 'none'}); try a lower --learning_rate "
            "or --mixed_precision bf16"
        )
    record = {
        "step": step,
        "epoch": epoch,
        "loss": loss,
        "lr": lr,
        "images_per_s": schedule.total_batch_size / seconds,
        "peak_memory_mb": peak_memory_mb(accelerator.device),
    }
    run.metrics.write(record)
    accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)


def finish(
    run: Run,
    data: TrainingData,
    models: TrainingModels,
    position: Position,
    validate: Validator,
    evaluate: TrainingEvaluation | None = None,
) -> None:
    """The final ControlNet where the reference saves it, its controlkit record (with its step), a last
    validation and evaluation (naming the best step so far) and the model card (every run); the upload
    with --push_to_hub."""
    config, accelerator = run.config, run.accelerator
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        controlnet = accelerator.unwrap_model(models.controlnet)
        try:
            controlnet.save_pretrained(run.output_dir, safe_serialization=True)
        except checkpoints.WRITE_ERRORS as exc:
            needed = run.checkpoint_bytes // 3
            raise UserError(checkpoints.write_error(run.output_dir, "the ControlNet", exc, needed)) from exc
        info = ControlNetInfo(
            base_model=config.pretrained_model_name_or_path,
            condition=data.info.condition,
            condition_options=data.info.condition_options,
            resolution=data.settings.resolution,
            dataset=data.source,
            controlkit_version=__version__,
            step=position.global_step,
        )
        info.write(run.output_dir)
        if position.global_step % config.validation_steps != 0:
            validate(run, models, position.global_step)
        if evaluate is not None:
            if position.global_step % config.eval_steps != 0:
                evaluate(run, models, position.global_step)
            accelerator.print(evaluate.best_so_far(run.output_dir))
        from controlkit.train import card, hub

        flags = effective_config(config, data.settings)
        card.write_model_card(run.output_dir, info, flags, run.repo_id or hub.repo_name(config))
        if run.repo_id is not None:
            hub.push_to_hub(run.output_dir, run.repo_id, config.hub_token)
    accelerator.end_training()


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
