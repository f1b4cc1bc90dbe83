"""Load a trained ControlNet with its base model into a diffusers StableDiffusionControlNetPipeline.

The base model defaults to the one recorded beside the ControlNet at training time (``controlkit.json``),
so ``generate`` and ``app`` need only the ControlNet. Weights load from safetensors only. The last
pipeline loaded is kept, so the app and repeated ``generate`` calls load it once.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlkit.errors import UserError, first_line
from controlkit.metadata import is_hub_id, read_metadata

DEFAULT_RESOLUTION = 512


@dataclass(frozen=True)
class ControlNetInfo:
    """What ``controlkit train`` recorded beside a ControlNet, with defaults for a plain diffusers one."""

    controlnet: str
    base_model: str | None
    condition: str | None
    condition_options: dict[str, Any]
    resolution: int


def read_controlnet_info(controlnet: str | Path) -> ControlNetInfo:
    """The ControlNet's recorded base model, condition and training resolution."""
    name = str(controlnet)
    if not Path(name).exists() and not is_hub_id(name):
        raise UserError(f"ControlNet not found: {name} (give a folder from `controlkit train` or a Hub id)")
    meta = read_metadata(controlnet, repo_type="model")
    return ControlNetInfo(
        controlnet=str(controlnet),
        base_model=meta.get("base_model"),
        condition=meta.get("condition"),
        condition_options=dict(meta.get("condition_options") or {}),
        resolution=int(meta.get("resolution") or DEFAULT_RESOLUTION),
    )


def pick_device(device: str | None = None) -> str:
    """The device to run on: the one asked for, else CUDA, else Apple's MPS, else the CPU."""
    import torch

    if device:
        try:
            kind = torch.device(device).type
        except RuntimeError as exc:
            raise UserError(f"unknown --device {device!r}; use cuda, cuda:N, mps or cpu") from exc
        if kind not in ("cpu", "cuda", "mps"):
            raise UserError(f"unknown --device {device!r}; use cuda, cuda:N, mps or cpu")
        if kind == "mps" and not torch.backends.mps.is_available():
            raise UserError(f"--device {device}: Apple's MPS is not available here")
        if kind == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA GPU is available here")
        index = torch.device(device).index
        if kind == "cuda" and index is not None and index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA GPU(s) here")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str):
    """Half precision on an accelerator (bf16 where the GPU supports it, else fp16), fp32 on the CPU."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.startswith("mps"):
        return torch.float16
    return torch.float32


def _controlnet_location(controlnet: str) -> tuple[str, str | None]:
    """(path or id, subfolder): contract 4 puts the model at the root; or in ``controlnet/``."""
    local = Path(controlnet)
    if local.exists():
        if (local / "config.json").is_file():
            return controlnet, None
        if (local / "controlnet" / "config.json").is_file():
            return controlnet, "controlnet"
        raise UserError(f"{controlnet} holds no ControlNet (no config.json at its root or in controlnet/)")
    return controlnet, None


@functools.lru_cache(maxsize=1)
def _load(controlnet: str, base: str, device: str, dtype_name: str):
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, UniPCMultistepScheduler

    dtype = getattr(torch, dtype_name)
    location, subfolder = _controlnet_location(controlnet)
    # ``torch_dtype`` works on every supported diffusers; newer ones prefer ``dtype`` and warn.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Please use `dtype` instead.*", category=FutureWarning)
        try:
            model = ControlNetModel.from_pretrained(
                location, subfolder=subfolder, torch_dtype=dtype, use_safetensors=True
            )
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load the ControlNet {controlnet}: {first_line(exc)}") from exc
        try:
            pipe = StableDiffusionControlNetPipeline.from_pretrained(
                base, controlnet=model, torch_dtype=dtype, use_safetensors=True
            )
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load the base model {base}: {first_line(exc)}") from exc
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    return pipe.to(device)


def load_pipeline(controlnet: str | Path, base: str | None = None, device: str | None = None):
    """A ready StableDiffusionControlNetPipeline (UniPC scheduler) for ``controlnet`` on ``base``."""
    controlnet = str(controlnet)
    base = base or read_controlnet_info(controlnet).base_model
    if not base:
        where = "" if Path(controlnet).exists() else ", or the Hub is out of reach"
        raise UserError(f"{controlnet} records no base model (no controlkit.json{where}); pass --base MODEL")
    device = pick_device(device)
    dtype_name = str(pick_dtype(device)).removeprefix("torch.")
    return _load(controlnet, str(base), device, dtype_name)
