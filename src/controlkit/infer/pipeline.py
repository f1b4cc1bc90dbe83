"""Load a trained ControlNet with its base model into a diffusers StableDiffusionControlNetPipeline.

The base model defaults to the one recorded beside the ControlNet at training time (its
``ControlNetInfo``, which the caller has read once), so ``generate`` and ``app`` need only the ControlNet.
Weights load from safetensors only. The last pipeline loaded is kept, so the app and repeated
``generate`` calls load it once.
"""

from __future__ import annotations

import functools
from pathlib import Path

from controlkit.devices import pick_device, pick_dtype
from controlkit.errors import UserError
from controlkit.metadata import ControlNetInfo


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
