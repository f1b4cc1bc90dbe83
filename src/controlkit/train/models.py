"""The models of a training run: the frozen base parts and the ControlNet that learns.

The frozen VAE, UNet and text encoder sit on the device in the mixed-precision dtype (cast before they
move, so the device never holds their fp32 weights); the ControlNet trains in fp32. With the latent cache
the VAE (and with ``--cache_text_embeddings`` the text encoder) has nothing to do during training, so
``FrozenEncoders`` parks it on the CPU and brings it back only while validation samples images. With
``--gradient_checkpointing`` the ControlNet's blocks are recomputed in the backward pass, and under
``--vram 8`` the frozen UNet's too (``memory.FROZEN_UNET_CHECKPOINTING``). ``--channels_last`` and
``--compile`` act on the UNet and the ControlNet (``speed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from controlkit.models.loading import BaseComponents, load_base_components, load_controlnet
from controlkit.train import speed
from controlkit.train.checkpoints import register_hooks
from controlkit.train.config import TrainConfig
from controlkit.train.memory import checkpoint_frozen_unet, checkpoints_frozen_unet, choose_attention


class FrozenEncoders:
    """The frozen VAE and text encoder, and the one place that moves them on and off the device."""

    def __init__(self, vae, text_encoder, device):
        self.vae, self.text_encoder, self.device, self.parked = vae, text_encoder, device, ()

    def park(self, text_encoder_too: bool = True) -> None:
        """Move the VAE (and the text encoder) to the CPU until ``in_use`` needs them (their outputs are
        cached)."""
        self.parked = (self.vae, self.text_encoder) if text_encoder_too else (self.vae,)
        self._move("cpu")

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """On the device for the block (back to the CPU afterwards when parked)."""
        if self.parked:
            self._move(self.device)
        try:
            yield
        finally:
            if self.parked:
                self._move("cpu")

    def _move(self, device) -> None:
        for model in self.parked:
            model.to(device)
        if str(device) == "cpu" and torch.cuda.is_available():
            torch.cuda.empty_cache()  # give their blocks back: a small card needs them for other tensors


@dataclass
class TrainingModels:
    base: BaseComponents
    controlnet: Any  # diffusers ControlNetModel (accelerate wraps it once prepared)
    weight_dtype: torch.dtype
    encoders: FrozenEncoders


def load_models(config: TrainConfig, accelerator) -> TrainingModels:
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
        if weight_dtype != torch.float32:  # casting at all makes diffusers warn, even to float32
            frozen.to(accelerator.device, dtype=weight_dtype)
        else:
            frozen.to(accelerator.device)
    controlnet.train()
    choose_attention([base.unet, controlnet], config.enable_xformers_memory_efficient_attention)
    if config.gradient_checkpointing:
        controlnet.enable_gradient_checkpointing()
    if checkpoints_frozen_unet(config):
        checkpoint_frozen_unet(base.unet)
    if speed.channels_last_applies(config, accelerator.device):
        speed.to_channels_last([base.unet, controlnet])
    if config.compile:
        speed.compile_blocks([base.unet, controlnet], accelerator.device)
    register_hooks(accelerator)
    encoders = FrozenEncoders(base.vae, base.text_encoder, accelerator.device)
    return TrainingModels(base, controlnet, weight_dtype, encoders)
