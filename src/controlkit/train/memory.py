"""Memory options: the --vram presets, 8-bit Adam, the attention implementation, checkpointing the frozen
UNet, peak-memory readings."""

from __future__ import annotations

import re
import resource
from typing import Any

from controlkit.console import say
from controlkit.errors import UserError, require

# What the diffusers ControlNet walkthrough recommends per GPU memory size. 8 GB there needs DeepSpeed
# offload; here nothing is offloaded but the frozen VAE and text encoder, which leave the GPU once their
# outputs are cached (cache_latents), with batch 1 x 4 and the frozen UNet's blocks checkpointed too
# (FROZEN_UNET_CHECKPOINTING).
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
        "cache_text_embeddings": True,
        "train_batch_size": 1,
        "gradient_accumulation_steps": 4,
    },
}


FROZEN_UNET_CHECKPOINTING = frozenset({8})
"""The presets under which --gradient_checkpointing also recomputes the frozen UNet's blocks.

The ControlNet's residuals join the frozen UNet's skip connections and middle block, so the backward pass
runs through the UNet's up blocks and autograd keeps their activations (about 0.36 GiB per 512 px image
in half precision, measured on SD 2.1-base's shapes). Recomputing them costs about a sixth more backward
time: worth it where every GiB counts, not on larger cards.
"""

MIN_DIFFUSERS_FOR_FROZEN_CHECKPOINTING = (0, 32)
"""diffusers' blocks checkpoint whenever gradients are on from 0.32 (before: only in train mode)."""


def vram_preset(gigabytes: int) -> dict[str, Any]:
    """The options for a GPU with this much memory; printed so the user sees what was set."""
    if gigabytes not in VRAM_PRESETS:
        raise UserError(f"--vram must be one of {sorted(VRAM_PRESETS)}, got {gigabytes}")
    preset = VRAM_PRESETS[gigabytes]
    shown = " ".join(f"--{k}" if v is True else f"--{k}={v}" for k, v in preset.items())
    frozen = ", the frozen UNet's blocks checkpointed too" if gigabytes in FROZEN_UNET_CHECKPOINTING else ""
    say(f"--vram {gigabytes}: {shown}{frozen} (flags and config keys you give override these)")
    return dict(preset)


def checkpoints_frozen_unet(config) -> bool:
    """Whether this run recomputes the frozen UNet's blocks: --gradient_checkpointing under a preset that
    asks for it (FROZEN_UNET_CHECKPOINTING)."""
    return bool(config.gradient_checkpointing) and config.vram in FROZEN_UNET_CHECKPOINTING


def checkpoint_frozen_unet(unet) -> bool:
    """Recompute the frozen UNet's blocks in the backward pass instead of keeping their activations.

    diffusers checkpoints a block when gradients are enabled, whatever the module's requires_grad or
    eval mode (from 0.32); the frozen UNet stays in eval mode. Older diffusers checkpoint only in train
    mode: there it says so in one line and returns False (training works, without the saving).
    """
    import diffusers

    installed = tuple(int(part) for part in re.findall(r"\d+", diffusers.__version__)[:2])
    if installed < MIN_DIFFUSERS_FOR_FROZEN_CHECKPOINTING:
        wanted = ".".join(map(str, MIN_DIFFUSERS_FOR_FROZEN_CHECKPOINTING))
        say(
            f"diffusers {diffusers.__version__} checkpoints only models in train mode: the frozen UNet's "
            f"activations are kept (pip install 'diffusers>={wanted}' to save them)"
        )
        return False
    unet.enable_gradient_checkpointing()
    return True


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
