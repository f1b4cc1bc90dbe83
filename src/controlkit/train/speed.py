"""Speed options: the --fast preset, regional torch.compile, channels-last, the fused optimizer, and how
often the loop reads the loss back from the device.

What is safe and always faster is on by default: the latent cache for runs of more than one epoch (it
samples latents from the stored distribution, so it trains exactly as encoding every step does), fused
AdamW, data-loader workers with pinned memory on CUDA, and reading the loss back every
``SYNC_EVERY_STEPS_ON_GPU`` steps on a GPU instead of every step (each read waits for the GPU to finish
its queue). The rest changes numerics or start-up time and sits behind ``--fast`` and ``--compile``.
"""

from __future__ import annotations

import math
from typing import Any

from controlkit.console import say

FAST_PRESET: dict[str, Any] = {"cache_latents": True, "mixed_precision": "bf16"}
"""What --fast sets everywhere."""

FAST_PRESET_CUDA: dict[str, Any] = {"allow_tf32": True, "channels_last": True}
"""What --fast adds where CUDA is available. Not on a CPU: oneDNN runs these convolutions faster in the
default layout there (measured: 1.09x slower channels-last), and TF32 is a GPU feature."""

MAX_AUTO_WORKERS = 4
"""Data-loader workers on CUDA when --dataloader_num_workers is not given: decoding and resizing a batch of
512 px images takes tens of milliseconds, as long as a whole step on a fast GPU, so it must not happen in
the process that drives the GPU; a few workers keep ahead of it."""

SYNC_EVERY_STEPS_ON_GPU = 10
"""Steps between two reads of the loss on a GPU: its metrics line, the non-finite check and the agreed
stop happen at these steps (and at every checkpoint, validation, evaluation and the last step)."""

COMPILED_BLOCKS = ("BasicTransformerBlock", "ResnetBlock2D")
"""The repeated blocks that carry nearly all of a step's work; compiling them one by one (instead of the
whole model) compiles each shape once, so compile time stays short and graph breaks between blocks cost
nothing."""


def fast_preset() -> dict[str, Any]:
    """The --fast options for this machine, printed so the user sees what was set."""
    import torch

    preset = {**FAST_PRESET, **(FAST_PRESET_CUDA if torch.cuda.is_available() else {})}
    shown = " ".join(f"--{k}" if v is True else f"--{k}={v}" for k, v in preset.items())
    say(f"--fast: {shown} (flags and config keys you give override these)")
    return preset


def mixed_precision_for(requested: str | None, bf16_supported: bool | None) -> str | None:
    """bf16 where the GPU has it; fp16 on a GPU without (T4, V100), where bf16 would be emulated and slow.
    ``bf16_supported`` is None off CUDA (a CPU runs bf16)."""
    if requested == "bf16" and bf16_supported is False:
        say("this GPU has no bf16: using --mixed_precision fp16")
        return "fp16"
    return requested


def epochs_planned(config, rows: int, processes: int) -> int:
    """The epochs the run will cover, as the schedule will count them."""
    batches = math.ceil(rows / (config.train_batch_size * processes))
    steps_per_epoch = max(1, math.ceil(batches / config.gradient_accumulation_steps))
    if config.max_train_steps:
        return math.ceil(config.max_train_steps / steps_per_epoch)
    return config.num_train_epochs


def uses_latent_cache(config, rows: int, processes: int) -> bool:
    """--cache_latents as given, else on for runs of more than one epoch (the VAE encodes every image
    once instead of once per epoch) and whenever --cache_text_embeddings asks for the cache."""
    if config.cache_latents is not None:
        return config.cache_latents
    return config.cache_text_embeddings or epochs_planned(config, rows, processes) > 1


def channels_last_applies(config, device) -> bool:
    return bool(config.channels_last) and device.type == "cuda"


def to_channels_last(models: list) -> None:
    import torch

    for model in models:
        model.to(memory_format=torch.channels_last)


def optimizer_options(device, use_8bit_adam: bool) -> dict[str, Any]:
    """Fused AdamW on CUDA: one kernel for every parameter instead of several per tensor, same update."""
    if device.type == "cuda" and not use_8bit_adam:
        return {"fused": True}
    return {}


def data_workers(config, device) -> int:
    """--dataloader_num_workers as given; not given, 0 on a CPU (workers would take its cores from the
    step) and on CUDA up to ``MAX_AUTO_WORKERS``, leaving a core to the main process."""
    import os

    if config.is_given("dataloader_num_workers") or device.type != "cuda":
        return config.dataloader_num_workers
    return max(0, min(MAX_AUTO_WORKERS, (os.cpu_count() or 1) - 1))


def loader_options(num_workers: int, device) -> dict[str, Any]:
    """Workers that live for the whole run, and pinned memory for the copy to a GPU."""
    options: dict[str, Any] = {"num_workers": num_workers}
    if num_workers > 0:
        options.update(persistent_workers=True, prefetch_factor=4)
    if device.type == "cuda":
        options["pin_memory"] = True
    return options


def sync_every(device) -> int:
    """1 on a CPU (reading the loss costs nothing there), ``SYNC_EVERY_STEPS_ON_GPU`` on a GPU."""
    return 1 if device.type == "cpu" else SYNC_EVERY_STEPS_ON_GPU


def compiler_works(device) -> str | None:
    """None when torch.compile can build code for ``device``; else the reason, in a few words."""
    import torch

    try:
        compiled = torch.compile(lambda x: x * 2 + 1)
        compiled(torch.ones(4, device=device))
    except Exception as exc:  # noqa: BLE001 - any failure means eager mode; the reason is shown
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    return None


def compile_blocks(models: list, device) -> int:
    """Compile the repeated blocks of each model in place (``COMPILED_BLOCKS``); returns how many were
    compiled, 0 (and one line) when the compiler does not work here."""
    problem = compiler_works(device)
    if problem is not None:
        say(f"--compile: torch.compile does not work here ({problem}); training in eager mode")
        return 0
    count = 0
    for model in models:
        for module in model.modules():
            if type(module).__name__ in COMPILED_BLOCKS:
                module.compile()
                count += 1
    return count
