"""Load a trained ControlNet with its base model into a diffusers StableDiffusionControlNetPipeline.

The base model defaults to the one recorded beside the ControlNet at training time (its
``ControlNetInfo``, which the caller has read once), so ``generate`` and ``app`` need only the ControlNet.
Weights load from safetensors only. The last pipeline loaded is kept, so the app and repeated
``generate`` calls load it once. ``min_size`` says how small an output a ControlNet can make (from its
config: ``models.loading.controlnet_config``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from controlkit.devices import pick_device, pick_dtype
from controlkit.errors import UserError
from controlkit.metadata import ControlNetInfo

_DEFAULT_ENCODER = (16, 32, 96, 256)
"""diffusers' default ``conditioning_embedding_out_channels``: three stride-2 steps, SD's 8x."""


def min_size(config: dict[str, Any] | None) -> int:
    """The smallest output side (px) this ControlNet makes: its conditioning encoder's downsampling (the
    VAE's) times its down blocks', below which its smallest latents vanish; 8 when its config is unknown."""
    if not config:
        return 8
    encoder = len(config.get("conditioning_embedding_out_channels") or _DEFAULT_ENCODER) - 1
    blocks = max(0, len(config.get("down_block_types") or ()) - 1)
    return max(8, 2 ** (encoder + blocks))


@functools.lru_cache(maxsize=1)
def _load(controlnet: str, base: str, device: str, dtype_name: str):
    import torch

    from controlkit.models.loading import controlnet_pipeline

    return controlnet_pipeline(base, controlnet, getattr(torch, dtype_name), device)


def load_pipeline(
    controlnet: str | Path, info: ControlNetInfo, *, base: str | None = None, device: str | None = None
):
    """A ready StableDiffusionControlNetPipeline (UniPC scheduler) for ``controlnet`` on ``base``, else on
    the base model its ``info`` records."""
    controlnet = str(controlnet)
    base = base or info.base_model
    if not base:
        where = "" if Path(controlnet).exists() else ", or the Hub is out of reach"
        raise UserError(f"{controlnet} records no base model (no controlkit.json{where}); pass --base MODEL")
    device = pick_device(device)
    dtype_name = str(pick_dtype(device)).removeprefix("torch.")
    return _load(controlnet, str(base), device, dtype_name)
