"""Train the small demo base that quickstart ships: a text-to-image latent diffusion model on synthetic faces.

A ControlNet can only show that it learned control on a base that already draws faces, so quickstart needs
a pretrained base, and this module makes it, reproducibly, on a GPU in minutes or on a CPU in hours. The VAE
downsamples 4x, so 64 px faces give 16x16 latents (SD's 8x would give 8x8, a coarse grid for a ControlNet
to place 68 landmarks on). First the VAE (reconstruction + a small KL term; fully convolutional, so it can
train on crops), then the UNet (epsilon prediction on cached latents, conditioned on the attribute captions
of the faces, min-SNR weighted, with EMA). The text encoder is a small CLIP text model that stays frozen at
its seeded random initialisation: its outputs are a fixed, distinct code per caption, which the UNet learns
to read through cross-attention. Every few minutes the run writes a resumable checkpoint to the work folder
and exports the EMA pipeline (diffusers layout, safetensors) to the output folder, with PROVENANCE.json,
README.md, samples.png and the loss log; it stops on its time budget.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from controlkit.conditions.geometry import box_downsample
from controlkit.devices import pick_device
from controlkit.errors import UserError
from controlkit.pictures import square_grid
from controlkit.pretrain.config import PretrainConfig

CHECKPOINT = "checkpoint.pt"
LOSS_LOG = "loss.jsonl"


@dataclass
class _State:
    """What a checkpoint holds beyond the weights: where the run is and how long it has taken."""

    phase: str = "vae"
    step: int = 0
    elapsed: float = 0.0
    vae_seconds: float = 0.0
    unet_seconds: float = 0.0
    vae_loss: float = float("nan")
    unet_loss: float = float("nan")
    losses: list[float] = field(default_factory=list)


def _model_config(config: PretrainConfig):
    from controlkit.models.small import SmallModelConfig

    return SmallModelConfig(
        sample_size=config.resolution,
        unet_channels=tuple(config.unet_channels),
        unet_layers_per_block=1,
        attention_head_dim=8,
        cross_attention_dim=config.text_hidden_size,
        vae_channels=tuple(config.vae_channels),
        text_hidden_size=config.text_hidden_size,
        text_layers=2,
        text_heads=2,
        norm_num_groups=8,
        seed=config.seed,
    )


def _initial_pipeline(config: PretrainConfig):
    """The seeded random pipeline, saved once, so a resumed run keeps its text encoder."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline

    from controlkit.data.synthetic_faces import caption_words
    from controlkit.models.small import build_small_pipeline

    init = config.work_dir / "init"
    if not (init / "model_index.json").is_file():
        words = tuple(caption_words())
        pipe = build_small_pipeline(_model_config(config), config.work_dir / "init-tokenizer", words)
        # A fully convolutional VAE (no mid-block attention) behaves alike on training crops and full images.
        vae_config = dict(pipe.vae.config)
        vae_config["mid_block_add_attention"] = False
        torch.manual_seed(config.seed)
        vae = AutoencoderKL.from_config(vae_config)
        # Start with small posterior noise (std ~0.05), else the decoder first sees noise, not the image.
        with torch.no_grad():
            vae.quant_conv.bias[vae.config.latent_channels :] = -6.0
        pipe.register_modules(vae=vae)
        pipe.save_pretrained(init, safe_serialization=True)
    return StableDiffusionPipeline.from_pretrained(init)


def _face_images(config: PretrainConfig) -> tuple[torch.Tensor, list[str]]:
    """The training faces in [-1, 1] at the training resolution and their captions (cached)."""
    from safetensors.torch import load_file, save_file

    from controlkit.data.synthetic_faces import describe, synthetic_faces

    cache = config.work_dir / "faces.safetensors"
    captions_file = config.work_dir / "captions.json"
    if cache.is_file() and captions_file.is_file():
        return load_file(cache)["images"], json.loads(captions_file.read_text())
    images = np.empty((config.images, config.resolution, config.resolution, 3), dtype=np.uint8)
    captions = []
    faces = synthetic_faces(config.images, seed=config.seed, size=config.render_size)
    for i, face in enumerate(tqdm(faces, total=config.images, desc="synthetic faces")):
        images[i] = np.asarray(box_downsample(face.image, config.resolution))
        captions.append(describe(face.attributes))
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()
    save_file({"images": tensor.half()}, cache)
    captions_file.write_text(json.dumps(captions))
    return tensor.half(), captions


class _Run:
    """One resumable run: the state, the checkpoint file, the loss log and the time budget."""

    def __init__(self, config: PretrainConfig):
        self.config = config
        self.started = time.monotonic()
        self.last_checkpoint = self.started
        path = config.work_dir / CHECKPOINT
        self.saved = torch.load(path, weights_only=True, map_location="cpu") if path.is_file() else {}
        self.state = _State(**self.saved.get("state", {}))
        self.base_elapsed = self.state.elapsed

    def elapsed(self) -> float:
        return self.base_elapsed + time.monotonic() - self.started

    def out_of_time(self) -> bool:
        return self.elapsed() > self.config.time_budget_minutes * 60

    def checkpoint_due(self) -> bool:
        return time.monotonic() - self.last_checkpoint > self.config.checkpoint_minutes * 60

    def log(self, record: dict) -> None:
        with open(self.config.work_dir / LOSS_LOG, "a") as f:
            f.write(json.dumps(record) + "\n")

    def save(self, tensors: dict) -> None:
        """Write the checkpoint atomically: a crash mid-write leaves the previous one intact."""
        self.state.elapsed = self.elapsed()
        path = self.config.work_dir / CHECKPOINT
        tmp = path.with_suffix(".tmp")
        torch.save({"state": asdict(self.state), **tensors}, tmp)
        tmp.replace(path)
        self.last_checkpoint = time.monotonic()


def _train_vae(run: _Run, vae, images: torch.Tensor) -> bool:
    """Reconstruction (L1 + MSE) with a small KL term, on random crops with random flips.

    False when the run's time budget ran out first (the VAE and its optimizer are saved to resume).
    """
    config, state = run.config, run.state
    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    if "vae" in run.saved:
        vae.load_state_dict(run.saved["vae"])
        optimizer.load_state_dict(run.saved["vae_optimizer"])
    device = images.device
    generator = torch.Generator(device).manual_seed(config.seed + state.step)
    phase_start, phase_base = time.monotonic(), state.vae_seconds
    bar = tqdm(total=config.vae_steps, initial=state.step, desc="VAE")
    recent: list[float] = []
    while state.step < config.vae_steps and not run.out_of_time():
        if phase_base + time.monotonic() - phase_start > config.vae_minutes * 60:
            break
        index = torch.randint(len(images), (config.vae_batch_size,), generator=generator, device=device)
        batch = images[index].float()
        crop = config.vae_crop
        y, x = torch.randint(config.resolution - crop + 1, (2,), generator=generator, device=device).tolist()
        batch = batch[:, :, y : y + crop, x : x + crop]
        if torch.rand((), generator=generator, device=device) < 0.5:
            batch = batch.flip(-1)
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample(generator=generator)).sample
        rec = F.l1_loss(reconstruction, batch) + F.mse_loss(reconstruction, batch)
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = rec + config.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        state.step += 1
        recent = (recent + [rec.item()])[-50:]
        state.vae_loss = float(np.mean(recent))
        bar.update(1)
        bar.set_postfix(rec=f"{state.vae_loss:.4f}")
        if state.step % 10 == 0 or state.step == 1:
            record = {"phase": "vae", "step": state.step, "rec": rec.item(), "kl": kl.item()}
            run.log({**record, "t": run.elapsed()})
        if run.checkpoint_due():
            state.vae_seconds = phase_base + time.monotonic() - phase_start
            run.save({"vae": vae.state_dict(), "vae_optimizer": optimizer.state_dict()})
    bar.close()
    state.vae_seconds = phase_base + time.monotonic() - phase_start
    vae.eval()
    if run.out_of_time():
        run.save({"vae": vae.state_dict(), "vae_optimizer": optimizer.state_dict()})
        return False
    return True


@torch.no_grad()
def _encode(vae, images: torch.Tensor, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The latent distribution (mean, std) of every training face, computed once."""
    means, stds = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="encoding latents"):
        dist = vae.encode(images[start : start + batch_size].float()).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def _encode_captions(pipe, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen text-encoder outputs per distinct caption (last: the empty prompt), and each face's index."""
    unique = sorted(set(captions)) + [""]
    position = {c: i for i, c in enumerate(unique)}
    tokens = pipe.tokenizer(unique, padding="max_length", truncation=True, return_tensors="pt").input_ids
    tokens = tokens.to(pipe.device)
    embeddings = torch.cat([pipe.text_encoder(tokens[i : i + 256])[0] for i in range(0, len(unique), 256)])
    return embeddings, torch.tensor([position[c] for c in captions], device=pipe.device)


def _train_unet(
    run: _Run, pipe, latents: tuple[torch.Tensor, torch.Tensor], captions: list[str], export
) -> None:
    """Epsilon prediction on cached latents, caption dropout (for guidance), min-SNR weights, EMA."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel, compute_snr

    config, state = run.config, run.state
    unet = pipe.unet
    unet.train()
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    embeddings, caption_index = _encode_captions(pipe, captions)
    mean, std = latents
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=1e-2)
    warmup = config.warmup_steps
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    ema = EMAModel(
        unet.parameters(), decay=config.ema_max_decay, use_ema_warmup=True, power=2 / 3, foreach=True
    )
    if "unet" in run.saved:
        unet.load_state_dict(run.saved["unet"])
        optimizer.load_state_dict(run.saved["unet_optimizer"])
        lr_schedule.load_state_dict(run.saved["lr_schedule"])
        ema.load_state_dict(run.saved["ema"])
    ema.to(mean.device)
    device = mean.device
    generator = torch.Generator(device).manual_seed(config.seed * 1000 + state.step)
    scaling = pipe.vae.config.scaling_factor
    phase_start, phase_base = time.monotonic(), state.unet_seconds

    def save() -> None:
        state.unet_seconds = phase_base + time.monotonic() - phase_start
        tensors = {"unet": unet.state_dict(), "unet_optimizer": optimizer.state_dict()}
        tensors |= {
            "ema": ema.state_dict(),
            "lr_schedule": lr_schedule.state_dict(),
            "vae": pipe.vae.state_dict(),
        }
        run.save(tensors)
        export(ema)

    pending: list[torch.Tensor] = []

    def read_losses() -> list[float]:
        plain = torch.stack(pending).tolist() if pending else []
        pending.clear()
        state.losses = (state.losses + plain)[-200:]
        if state.losses:
            state.unet_loss = float(np.mean(state.losses))
        return plain

    bar = tqdm(total=config.unet_steps, initial=state.step, desc="UNet")
    while state.step < config.unet_steps and not run.out_of_time():
        index = torch.randint(len(mean), (config.batch_size,), generator=generator, device=device)
        shape = mean[index].shape
        x0 = (mean[index] + std[index] * torch.randn(shape, generator=generator, device=device)) * scaling
        noise = torch.randn(x0.shape, generator=generator, device=device)
        timesteps = torch.randint(
            scheduler.config.num_train_timesteps, index.shape, generator=generator, device=device
        )
        drop = torch.rand(config.batch_size, generator=generator, device=device) < config.caption_dropout
        text = embeddings[torch.where(drop, len(embeddings) - 1, caption_index[index])]
        prediction = unet(scheduler.add_noise(x0, noise, timesteps), timesteps, text).sample
        snr = compute_snr(scheduler, timesteps)
        weights = torch.clamp(snr, max=config.snr_gamma) / snr
        loss = (F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3)) * weights).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        ema.step(unet.parameters())
        state.step += 1
        pending.append(F.mse_loss(prediction.detach(), noise))
        bar.update(1)
        if state.step % 10 == 0 or state.step == 1:
            # Read losses every 10 steps only: a read per step would stall a GPU on every step.
            plain = read_losses()
            bar.set_postfix(loss=f"{state.unet_loss:.4f}")
            run.log({"phase": "unet", "step": state.step, "loss": plain[-1], "t": run.elapsed()})
        if run.checkpoint_due():
            read_losses()
            save()
    bar.close()
    read_losses()
    save()


def _save_pipeline(pipe, ema, out: Path) -> None:
    """The EMA weights in the diffusers layout (safetensors), leaving the training weights untouched."""
    ema.store(pipe.unet.parameters())
    ema.copy_to(pipe.unet.parameters())
    try:
        pipe.save_pretrained(out, safe_serialization=True)
    finally:
        ema.restore(pipe.unet.parameters())


@torch.no_grad()
def sample_grid(pipe, config: PretrainConfig, n: int = 16, guidance_scale: float = 3.0) -> Image.Image:
    """Samples for held-out captions (faces the training set never had), as one grid."""
    from diffusers import DDIMScheduler

    from controlkit.data.synthetic_faces import describe, face_seed, sample_attributes

    seeds = [face_seed(config.seed + 999_999, i) for i in range(n)]
    prompts = [describe(sample_attributes(np.random.default_rng(seed))) for seed in seeds]
    scheduler = pipe.scheduler
    pipe.scheduler = DDIMScheduler.from_config(scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    try:
        images = pipe(
            prompts,
            num_inference_steps=config.sample_steps,
            guidance_scale=guidance_scale,
            generator=torch.Generator().manual_seed(config.seed),
            height=config.resolution,
            width=config.resolution,
        ).images
    finally:
        pipe.scheduler = scheduler
    return square_grid(images)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors"))


def _machine(config: PretrainConfig) -> dict:
    device = torch.device(pick_device(None if config.device == "auto" else config.device))
    if device.type == "cuda":
        trained_on = torch.cuda.get_device_name(device)
    else:
        trained_on = f"{config.threads} CPU thread(s)"
    return {
        "trained_on": trained_on,
        "processor": platform.processor() or platform.machine(),
        "torch_threads": config.threads,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def _write_provenance(config: PretrainConfig, state: _State, pipe, finished: bool) -> None:
    out = config.out
    names = ("unet", "vae", "text_encoder")
    counts = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in names}
    not_settings = ("command", "finetune_decoder_minutes")
    settings = {
        k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items() if k not in not_settings
    }
    provenance = {
        "command": config.command,
        "settings": settings,
        "finished": finished,
        "wall_time_minutes": round(state.elapsed / 60, 1),
        "vae_minutes": round(state.vae_seconds / 60, 1),
        "unet_minutes": round(state.unet_seconds / 60, 1),
        "unet_steps": state.step,
        "final_vae_reconstruction_loss": round(state.vae_loss, 5),
        "final_unet_loss": round(state.unet_loss, 5),
        "loss_definitions": {
            "vae": "L1 + MSE per pixel in [-1, 1], mean of the last 50 steps",
            "unet": "plain epsilon MSE (before min-SNR weights), mean of the last 200 steps",
        },
        "text_encoder": "frozen at its seeded random initialisation (never trained)",
        "parameters": counts,
        "weights_bytes": _folder_bytes(out),
        "vae_scaling_factor": pipe.vae.config.scaling_factor,
        "machine": _machine(config),
    }
    (out / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    status = "finished" if finished else "in progress (exported at a checkpoint)"
    (out / "README.md").write_text(
        f"""# controlkit demo base model

A small text-to-image latent diffusion model (Stable Diffusion layout: UNet2DConditionModel, AutoencoderKL
with {2 ** (len(config.vae_channels) - 1)}x downsampling, CLIP text encoder and tokenizer, DDPM scheduler)
trained from scratch on controlkit's synthetic faces at {config.resolution} px, with their attribute captions.
`controlkit quickstart` trains a ControlNet on it. The text encoder was never trained: it stays at its seeded
random initialisation, a fixed code per caption.

Made by:

    {config.command}

- status: {status}
- wall time: {provenance["wall_time_minutes"]} min on {provenance["machine"]["trained_on"]}
  (VAE {provenance["vae_minutes"]} min, UNet {provenance["unet_minutes"]} min, {state.step} UNet steps)
- final VAE reconstruction loss (L1 + MSE): {state.vae_loss:.4f}
- final UNet epsilon MSE: {state.unet_loss:.4f}
- parameters: {counts}; weights: {provenance["weights_bytes"] / 1e6:.1f} MB (safetensors, fp32)
- all settings: `PROVENANCE.json`; loss log: `loss.jsonl`; samples for held-out captions: `samples.png`
"""
    )


def pretrain(config: PretrainConfig) -> Path:
    """Run (or resume) pretraining and return the output folder, a loadable diffusers pipeline."""
    device = torch.device(pick_device(None if config.device == "auto" else config.device))
    torch.set_num_threads(config.threads)
    config.work_dir.mkdir(parents=True, exist_ok=True)
    config.out.mkdir(parents=True, exist_ok=True)
    run = _Run(config)
    state = run.state
    torch.backends.cuda.matmul.allow_tf32 = True
    pipe = _initial_pipeline(config).to(device)
    pipe.text_encoder.requires_grad_(False)
    images, captions = _face_images(config)
    images = images.to(device)
    if state.phase == "vae":
        if not _train_vae(run, pipe.vae, images):
            print("the time budget ran out in the VAE phase; run the same command again to continue")
            return config.out
        state.phase, state.step = "unet", 0
        run.saved = {}
        run.save({"vae": pipe.vae.state_dict()})
    if "vae" in run.saved:
        pipe.vae.load_state_dict(run.saved["vae"])
    pipe.vae.eval().requires_grad_(False)
    latents = _encode(pipe.vae, images)
    noise = torch.randn(latents[0].shape, generator=torch.Generator().manual_seed(0)).to(device)
    pipe.vae.register_to_config(scaling_factor=float(1.0 / (latents[0] + latents[1] * noise).std()))

    def export(ema) -> None:
        _save_pipeline(pipe, ema, config.out)
        if (config.work_dir / LOSS_LOG).is_file():
            (config.out / LOSS_LOG).write_bytes((config.work_dir / LOSS_LOG).read_bytes())
        ema.store(pipe.unet.parameters())
        ema.copy_to(pipe.unet.parameters())
        pipe.unet.eval()
        try:
            sample_grid(pipe, config).save(config.out / "samples.png")
        finally:
            ema.restore(pipe.unet.parameters())
            pipe.unet.train()
        _write_provenance(config, state, pipe, finished=state.step >= config.unet_steps or run.out_of_time())

    _train_unet(run, pipe, latents, captions, export)
    return config.out


DECODER_FILE = "decoder.safetensors"


def _decoder_keys(vae) -> list[str]:
    return [k for k in vae.state_dict() if k.startswith(("decoder.", "post_quant_conv."))]


def finetune_decoder(config: PretrainConfig, lr: float = 5e-4) -> Path:
    """Sharpen the VAE decoder (``config.finetune_decoder_minutes``) with the encoder frozen, then put it
    into the exported pipeline.

    The latent space stays exactly as the UNet learned it, so this can run after, or beside, the UNet
    phase. Trained weights go to the work folder first; they are written into ``out/vae`` (with
    PROVENANCE.json and samples.png updated) once ``out`` holds a pipeline: run the command again after
    the main run if it was still going.
    """
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(config.threads)
    minutes = config.finetune_decoder_minutes
    if not minutes or minutes <= 0:
        raise UserError("fine-tuning the decoder needs --finetune-decoder-minutes above 0")
    path = config.work_dir / DECODER_FILE
    info_path = path.with_suffix(".json")
    if not path.is_file():
        saved = _Run(config).saved
        if saved.get("state", {}).get("phase") != "unet":
            raise UserError(f"no finished VAE phase in {config.work_dir}; run pretrain-demo-base first")
        vae = _initial_pipeline(config).vae
        vae.load_state_dict(saved["vae"])
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
        images, _ = _face_images(config)
        keys = _decoder_keys(vae)
        params = [p for name, p in vae.named_parameters() if name in keys]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        generator = torch.Generator().manual_seed(config.seed + 1)
        started, step, recent = time.monotonic(), 0, []
        bar = tqdm(desc="VAE decoder")
        while time.monotonic() - started < minutes * 60:
            batch = images[torch.randint(len(images), (config.vae_batch_size,), generator=generator)].float()
            crop = config.vae_crop
            y, x = torch.randint(config.resolution - crop + 1, (2,), generator=generator).tolist()
            batch = batch[:, :, y : y + crop, x : x + crop]
            with torch.no_grad():
                latents = vae.encode(batch).latent_dist.sample(generator=generator)
            reconstruction = vae.decode(latents).sample
            loss = F.l1_loss(reconstruction, batch) + F.mse_loss(reconstruction, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            recent = (recent + [loss.item()])[-50:]
            bar.update(1)
            bar.set_postfix(rec=f"{np.mean(recent):.4f}")
        bar.close()
        state = vae.state_dict()
        save_file({k: state[k].contiguous() for k in keys}, path)
        info = {
            "minutes": minutes,
            "lr": lr,
            "steps": step,
            "final_reconstruction_loss": round(float(np.mean(recent)), 5),
        }
        info_path.write_text(json.dumps(info))
    if not (config.out / "model_index.json").is_file():
        print(f"decoder saved in {path}; run this again once {config.out} holds the pipeline")
        return config.out
    pipe = StableDiffusionPipeline.from_pretrained(config.out)
    pipe.vae.load_state_dict(load_file(path), strict=False)
    pipe.vae.save_pretrained(config.out / "vae", safe_serialization=True)
    pipe.unet.eval()
    sample_grid(pipe, config).save(config.out / "samples.png")
    provenance_path = config.out / "PROVENANCE.json"
    provenance = json.loads(provenance_path.read_text())
    provenance["decoder_finetune"] = {"command": config.command, **json.loads(info_path.read_text())}
    provenance["weights_bytes"] = _folder_bytes(config.out)
    provenance_path.write_text(json.dumps(provenance, indent=2) + "\n")
    finetune = provenance["decoder_finetune"]
    line = (
        "- then the VAE decoder was fine-tuned with the encoder frozen (latents unchanged): "
        f"`{config.command}` ({finetune['steps']} steps,"
        f" final L1 + MSE {finetune['final_reconstruction_loss']:.4f})\n"
    )
    readme = config.out / "README.md"
    if line not in readme.read_text():
        readme.write_text(readme.read_text() + line)
    return config.out
