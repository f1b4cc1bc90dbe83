"""Which device and precision to run on, for the commands that run a model outside `accelerate`."""

from __future__ import annotations

from controlkit.errors import UserError

DEVICE_KINDS = ("cpu", "cuda", "mps")


def pick_device(device: str | None = None) -> str:
    """The device to run on: the one asked for (checked), else CUDA, else Apple's MPS, else the CPU."""
    import torch

    if device:
        try:
            parsed = torch.device(device)
        except RuntimeError as exc:
            raise UserError(f"unknown --device {device!r}; use cuda, cuda:N, mps or cpu") from exc
        if parsed.type not in DEVICE_KINDS:
            raise UserError(f"unknown --device {device!r}; use cuda, cuda:N, mps or cpu")
        if parsed.type == "mps" and not torch.backends.mps.is_available():
            raise UserError(f"--device {device}: Apple's MPS is not available here")
        if parsed.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA GPU is available here")
        if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
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
