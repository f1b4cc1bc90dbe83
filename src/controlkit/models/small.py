"""Small Stable-Diffusion-shaped model folders, built from configs, in the diffusers layout.

The trainer, the generator and the tests load them by path exactly as they load a Hub id. The VAE
keeps SD's 8x downsampling so a ControlNet made from the UNet sees latents of the usual shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from controlkit.models.tokenizer import write_byte_level_tokenizer


@dataclass
class SmallModelConfig:
    """The sizes of a small SD-shaped model; the defaults make a model that trains in seconds on a CPU."""

    sample_size: int = 64
    unet_channels: tuple[int, ...] = (32, 64)
    unet_layers_per_block: int = 1
    attention_head_dim: int = 8
    cross_attention_dim: int = 32
    vae_channels: tuple[int, ...] = (16, 32, 32, 32)
    text_hidden_size: int = 32
    text_layers: int = 2
    text_heads: int = 2
    max_length: int = 77
    prediction_type: str = "epsilon"
    norm_num_groups: int = 8
    seed: int = 0


def build_small_pipeline(config: SmallModelConfig, tokenizer_dir: str | Path, words: tuple[str, ...] = ()):
    """A StableDiffusionPipeline with random weights of the given sizes."""
    torch.manual_seed(config.seed)
    latent_size = config.sample_size // 2 ** (len(config.vae_channels) - 1)
    n = len(config.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=config.unet_channels,
        layers_per_block=config.unet_layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        cross_attention_dim=config.cross_attention_dim,
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=config.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * len(config.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(config.vae_channels),
        layers_per_block=1,
        norm_num_groups=config.norm_num_groups,
        sample_size=config.sample_size,
    )
    tokenizer = write_byte_level_tokenizer(tokenizer_dir, words, config.max_length)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.text_hidden_size,
            intermediate_size=config.text_hidden_size * 2,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.text_heads,
            max_position_embeddings=config.max_length,
            projection_dim=config.cross_attention_dim,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
        prediction_type=config.prediction_type,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def write_small_model(
    path: str | Path, config: SmallModelConfig | None = None, words: tuple[str, ...] = ()
) -> Path:
    """Write a small SD-shaped model folder (safetensors, diffusers layout) and return its path."""
    path = Path(path)
    config = config or SmallModelConfig()
    pipeline = build_small_pipeline(config, path / "tokenizer", words)
    pipeline.save_pretrained(path, safe_serialization=True)
    return path
