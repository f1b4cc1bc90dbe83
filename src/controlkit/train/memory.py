"""Memory options: the --vram presets, 8-bit Adam, the attention implementation, peak-memory readings."""

from __future__ import annotations

import resource
from typing import Any

from controlkit.console import say
from controlkit.errors import UserError, require

# What the diffusers ControlNet walkthrough recommends per GPU memory size. 8 GB there needs DeepSpeed
# offload; here the frozen VAE and text encoder leave the GPU instead (cache_latents) with batch 1 x 4.
VRAM_PRESETS: dict[int, dict[str, Any]] = {
    24: {"mixed_precision": "fp16"},
    16: {"mixed_precision": "fp16", "gradient_checkpointing": True, "use_8bit_adam": True},
    12: {
        "mixed_precision": "fp16",
        "gradient_checkpointing": True,
        "use_8bit_adam": True,
        "enable_xformers_memory_efficient_attention": True,
        "set_grads_to_none": True,
    },
    8: {
        "mixed_precision": "fp16",
        "gradient_checkpointing": True,
        "use_8bit_adam": True,
        "enable_xformers_memory_efficient_attention": True,
        "set_grads_to_none": True,
        "cache_latents": True,
        "train_batch_size": 1,
        "gradient_accumulation_steps": 4,
    },
}


def vram_preset(gigabytes: int) -> dict[str, Any]:
    """The options for a GPU with this much memory; printed so the user sees what was set."""
    if gigabytes not in VRAM_PRESETS:
        raise UserError(f"--vram must be one of {sorted(VRAM_PRESETS)}, got {gigabytes}")
    preset = VRAM_PRESETS[gigabytes]
    shown = " ".join(f"--{k}" if v is True else f"--{k}={v}" for k, v in preset.items())
    say(f"--vram {gigabytes}: {shown} (flags and config keys you give override these)")
    return dict(preset)


def adam_class(use_8bit_adam: bool) -> type:
    """torch's AdamW, or bitsandbytes' 8-bit AdamW (which needs a CUDA GPU)."""
    import torch

    if not use_8bit_adam:
        return torch.optim.AdamW
    if not torch.cuda.is_available():
        raise UserError(
            "--use_8bit_adam needs a CUDA GPU (bitsandbytes 8-bit Adam); drop the flag on this machine"
        )
    bnb = require("bitsandbytes", "lowmem")
    return bnb.optim.AdamW8bit


def choose_attention(models: list, use_xformers: bool) -> str:
    """PyTorch SDPA unless xformers is asked for and installed; says so in one line when it isn't."""
    if use_xformers:
        from diffusers.utils.import_utils import is_xformers_available

        if is_xformers_available():
            for model in models:
                model.enable_xformers_memory_efficient_attention()
            return "xformers"
        say("xformers is not installed; using PyTorch's SDPA attention instead")
    from diffusers.models.attention_processor import AttnProcessor2_0

    for model in models:
        model.set_attn_processor(AttnProcessor2_0())
    return "sdpa"


def peak_memory_mb(device) -> float:
    """Peak GPU memory allocated on CUDA; otherwise the process's peak resident memory."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
