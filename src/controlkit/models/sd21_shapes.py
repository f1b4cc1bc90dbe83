"""A Stable-Diffusion-2.1-base-shaped model folder with random weights, built from configs.

Memory and speed depend on shapes, not on trained weights, so a GPU benchmark can measure the real
model (865.9M UNet, 340M OpenCLIP-H text encoder, 83.7M VAE, a 361M ControlNet made from the UNet)
on a machine that cannot download it. The configs are those of stabilityai/stable-diffusion-2-1-base;
the tokenizer is the offline byte-level one, and the text encoder's vocabulary is padded to CLIP's
49408 tokens so its embedding table weighs what the real one does.

``divisor`` makes the same model narrower for CPU benchmarks: every width (UNet, ControlNet, VAE, norm
groups) divided by it and the text encoder's by twice as much, with SD's blocks, depths, attention heads
and 8x VAE unchanged. Convolutions cost width squared and attention width, so at half the resolution
(256 px for ``divisor=4``) each part costs 1/64 of the real one and the VAE / text encoder / UNet split of
a training step is SD 2.1-base's at 512 px (measured with torch's FLOP counter by
``benchmarks/train_profile.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

CLIP_VOCAB_SIZE = 49408

UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "upcast_attention": False,
    "use_linear_projection": True,
}

VAE_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

TEXT_CONFIG: dict[str, Any] = {
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
    "max_position_embeddings": 77,
    "layer_norm_eps": 1e-05,
    "vocab_size": CLIP_VOCAB_SIZE,
}

SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}


def scaled_configs(divisor: int = 1) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The UNet, VAE and text-encoder configs with every width divided by ``divisor`` (the text encoder's
    by ``2 x divisor``); 1 is SD 2.1-base itself."""
    if divisor == 1:
        return dict(UNET_CONFIG), dict(VAE_CONFIG), dict(TEXT_CONFIG)
    if divisor not in (2, 4, 8):
        raise ValueError(f"divisor must be 1, 2, 4 or 8, got {divisor}")
    text_hidden = TEXT_CONFIG["hidden_size"] // (2 * divisor)
    unet = {
        **UNET_CONFIG,
        "block_out_channels": [c // divisor for c in UNET_CONFIG["block_out_channels"]],
        "norm_num_groups": UNET_CONFIG["norm_num_groups"] // divisor,
        "cross_attention_dim": text_hidden,
    }
    vae = {
        **VAE_CONFIG,
        "block_out_channels": [c // divisor for c in VAE_CONFIG["block_out_channels"]],
        "norm_num_groups": VAE_CONFIG["norm_num_groups"] // divisor,
    }
    text = {
        **TEXT_CONFIG,
        "hidden_size": text_hidden,
        "intermediate_size": 4 * text_hidden,
        "num_attention_heads": TEXT_CONFIG["num_attention_heads"] // divisor,
        "projection_dim": TEXT_CONFIG["projection_dim"] // divisor,
    }
    return unet, vae, text


def build_sd21_components(
    tokenizer_dir: str | Path, device: str | torch.device = "cpu", divisor: int = 1
) -> dict[str, Any]:
    """UNet, VAE, text encoder (random weights, on ``device``), offline tokenizer and PNDM scheduler.

    ``device="meta"`` builds the shapes without allocating weights (for parameter counts); ``divisor``
    narrows every part (``scaled_configs``).
    """
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from controlkit.models.tokenizer import write_byte_level_tokenizer

    tokenizer = write_byte_level_tokenizer(tokenizer_dir, max_length=TEXT_CONFIG["max_position_embeddings"])
    if len(tokenizer) > CLIP_VOCAB_SIZE:
        raise ValueError(
            f"the offline tokenizer has {len(tokenizer)} tokens, more than CLIP's {CLIP_VOCAB_SIZE}"
        )
    unet_config, vae_config, text_config = scaled_configs(divisor)
    text_config = CLIPTextConfig(
        **text_config,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.device(device):
        return {
            "unet": UNet2DConditionModel(**unet_config),
            "vae": AutoencoderKL(**vae_config),
            "text_encoder": CLIPTextModel(text_config),
            "tokenizer": tokenizer,
            "scheduler": PNDMScheduler.from_config(SCHEDULER_CONFIG),
        }


def write_sd21_model(
    path: str | Path, device: str | torch.device = "cpu", seed: int = 0, divisor: int = 1
) -> Path:
    """Write the SD-2.1-base-shaped folder (diffusers layout, fp32 safetensors, ~5.2 GB; ``divisor=4``:
    about 90 MB) and return its path.

    Building on a GPU (``device="cuda"``) is much faster than on a CPU; the files are the same kind.
    """
    from diffusers import StableDiffusionPipeline

    path = Path(path)
    torch.manual_seed(seed)
    parts = build_sd21_components(path / "tokenizer", device, divisor)
    pipeline = StableDiffusionPipeline(
        **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipeline.to("cpu").save_pretrained(path, safe_serialization=True)
    return path
