"""The models of a training run: the frozen base parts and the ControlNet that learns.

The frozen VAE, UNet and text encoder sit on the device in the mixed-precision dtype; the ControlNet
trains in fp32. With ``--cache_latents`` the VAE and text encoder have nothing to do during training,
so ``FrozenEncoders`` parks them on the CPU and brings them back only while validation samples images.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from controlkit.models.loading import BaseComponents, load_base_components, load_controlnet
from controlkit.train.checkpoints import register_hooks
from controlkit.train.config import TrainConfig
from controlkit.train.memory import choose_attention


class FrozenEncoders:
    """The frozen VAE and text encoder, and the one place that moves them on and off the device."""

    def __init__(self, vae, text_encoder, device):
        self.models, self.device, self.parked = (vae, text_encoder), device, False

    def park(self) -> None:
        """Move them to the CPU until ``in_use`` needs them (their outputs are cached)."""
        self._move("cpu")
        self.parked = True

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
        for model in self.models:
            model.to(device)


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
        frozen.to(accelerator.device)
        if weight_dtype != torch.float32:  # casting at all makes diffusers warn, even to float32
            frozen.to(dtype=weight_dtype)
    controlnet.train()
    choose_attention([base.unet, controlnet], config.enable_xformers_memory_efficient_attention)
    if config.gradient_checkpointing:
        controlnet.enable_gradient_checkpointing()
    register_hooks(accelerator)
    encoders = FrozenEncoders(base.vae, base.text_encoder, accelerator.device)
    return TrainingModels(base, controlnet, weight_dtype, encoders)
