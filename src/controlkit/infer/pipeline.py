"""Load a trained ControlNet with its base model into a diffusers StableDiffusionControlNetPipeline.

The base model defaults to the one recorded beside the ControlNet at training time (its
``ControlNetInfo``, which the caller has read once), so ``generate`` and ``app`` need only the ControlNet.
Weights load from safetensors only. The last pipeline loaded is kept, so the app and repeated
``generate`` calls load it once. ``controlnet_config`` checks a local ControlNet folder before anything
loads, and ``min_size`` says how small an output it can make.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from controlkit.devices import pick_device, pick_dtype
from controlkit.errors import UserError
from controlkit.metadata import ControlNetInfo
from controlkit.paths import check_exists

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_DEFAULT_ENCODER = (16, 32, 96, 256)
"""diffusers' default ``conditioning_embedding_out_channels``: three stride-2 steps, SD's 8x."""


def controlnet_config(controlnet: str | Path) -> dict[str, Any] | None:
    """The config.json of a local ControlNet folder, once it is known to be one: a ControlNetModel's
    config with safetensors weights beside it, at the root or in ``controlnet/``. For a Hub id, its
    config.json where the Hub (or its cache) gives it, else None."""
    name = str(controlnet)
    if not check_exists(name, "ControlNet"):
        return _hub_config(name)
    folder = Path(name)
    found = [f for f in (folder, folder / "controlnet") if (f / "config.json").is_file()]
    if not found:
        raise UserError(
            f"{name} is not a ControlNet folder (no config.json at its root or in controlnet/); give a "
            "folder that `controlkit train` wrote, or a Hub id"
        )
    model = found[0]
    try:
        config = json.loads((model / "config.json").read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(
            f"{model / 'config.json'} is not valid JSON ({exc}); is {name} a ControlNet?"
        ) from exc
    kind = config.get("_class_name") if isinstance(config, dict) else type(config).__name__
    if kind not in (None, "ControlNetModel"):
        raise UserError(f"{name} is not a ControlNet folder: its config.json describes a {kind}")
    if not list(model.glob("*.safetensors")):
        pickled = sorted(p.name for p in model.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if not pickled:
            raise UserError(
                f"{name} is not a ControlNet folder: no weights (*.safetensors) beside its config.json"
            )
        convert = (
            f"from diffusers import ControlNetModel; ControlNetModel.from_pretrained('{model}', "
            f"use_safetensors=False).save_pretrained('{model}')"
        )
        raise UserError(
            f"{name} has only pickle weights ({', '.join(pickled)}), which can run code when loaded; if you "
            f'trust where they came from, convert them to safetensors once: python -c "{convert}"'
        )
    return config


def _hub_config(repo: str) -> dict[str, Any] | None:
    from huggingface_hub import hf_hub_download

    try:
        config = json.loads(Path(hf_hub_download(repo, "config.json")).read_text())
    except Exception:  # offline, no such repo, a damaged file: loading the model will say what is wrong
        return None
    return config if isinstance(config, dict) else None


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
