"""Peak GPU memory of `controlkit train --vram 8|12|16|24` on SD 2.1-base's real shapes, estimated on a CPU.

No GPU is needed: every model is built from SD 2.1-base's configs (``controlkit.models.sd21_shapes``) as
fake tensors (``FakeTensorMode``: shapes and dtypes, no storage, no arithmetic), and
``torch.distributed._tools.mem_tracker.MemTracker`` follows every tensor the step allocates and frees,
by category, with CUDA's 512-byte allocation rounding. Per preset it measures one training step (forward
of ControlNet + frozen UNet, MSE loss, backward, optimizer step, zero_grad, in the steady state: optimizer
states and, without set_grads_to_none or with accumulation, gradients already there) and one validation
sampling step (text encoder, ControlNet + UNet at batch 2 for classifier-free guidance, VAE decode of one
512 px image), each with the memory the training keeps while it runs.

This CPU build cannot place fake tensors on "cuda" through autograd (its device guard is missing), and
CPU autocast casts other ops than CUDA autocast (group_norm, layer_norm, softmax, upsampling stay fp16
there), so the tensors live on the fake CPU and a small function mode applies CUDA autocast's fp16 policy
(``CudaAutocast``); SDPA is routed to the flash / memory-efficient kernels' fake implementations, which
keep no attention matrix, as a GPU does; bitsandbytes' 8-bit AdamW is replaced by an optimizer that keeps
the same state tensors (``AdamW8bitStates``).

    .venv/bin/python benchmarks/vram_estimate.py [--resolution 512] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.distributed._tools.mem_tracker import MemTracker
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from controlkit.train.config import TrainConfig  # noqa: E402
from controlkit.train.memory import FROZEN_UNET_CHECKPOINTING, VRAM_PRESETS  # noqa: E402
from controlkit.train.trainer import training_loss  # noqa: E402

GIB = 2**30
CONTEXT_GIB = 0.5
"""CUDA context, cuBLAS/cuDNN handles: outside torch's allocator, so added to the tracked peak."""
CARD_RESERVE_GIB = 0.5
"""What a card keeps for itself and the allocator's slack: an N GB card is given N - 0.5 GiB here."""
CARDS = (8, 12, 16, 24)
LOSS_SCALE = 2.0**16
BNB_BLOCK = 256
"""bitsandbytes' blockwise quantisation: one fp32 absmax per 256 values of each 8-bit state."""
BNB_MIN_8BIT_SIZE = 4096
"""bitsandbytes keeps fp32 states for tensors with fewer values than this."""


# --- CUDA autocast, emulated -----------------------------------------------------------------------------

_LOW = {
    F.linear, F.conv1d, F.conv2d, F.conv_transpose2d, torch.matmul, torch.mm, torch.bmm, torch.baddbmm,
    torch.addmm, torch.einsum, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.bmm,
    torch.Tensor.mm, F.scaled_dot_product_attention,
}  # fmt: skip
_FP32 = {
    F.group_norm, F.layer_norm, F.interpolate, F.softmax, torch.softmax, torch.Tensor.softmax,
    F.log_softmax, torch.exp, torch.Tensor.exp, torch.pow, torch.Tensor.pow, torch.rsqrt, F.mse_loss,
    torch.sum, torch.Tensor.sum, torch.cumsum, torch.norm, F.softplus, torch.logsumexp,
}  # fmt: skip
"""The ops of diffusers' and transformers' SD models in CUDA autocast's fp16 and fp32 lists (ATen's
autocast_mode.h: AT_FORALL_LOWER_PRECISION_FP, AT_FORALL_FP32, AT_FORALL_FP32_SET_OPT_DTYPE)."""


@dataclass
class AttentionLog:
    """The attention calls seen: the biggest score matrix a math (unfused) path would have kept."""

    calls: int = 0
    flash: int = 0
    efficient: int = 0
    largest_scores_bytes: int = 0
    largest_scores_shape: list[int] = field(default_factory=list)


class CudaAutocast(TorchFunctionMode):
    """CUDA autocast's casting, applied in Python, and SDPA sent to the fused kernels a GPU runs.

    Casting before the call (as autocast does below autograd) puts the casts in the autograd graph, so the
    fp16 copies that ops save for backward are tracked. As in autocast, the fp16 copy of a parameter is
    made once per autocast region (``_cache``). ``enabled`` is a stack, saved and restored by
    ``checkpoint_fn`` so that recomputation in the backward pass casts as the forward did.
    """

    def __init__(self) -> None:
        super().__init__()
        self.enabled = [False]
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.attention = AttentionLog()

    @contextlib.contextmanager
    def region(self, enabled: bool = True) -> Iterator[None]:
        """``with torch.autocast("cuda", torch.float16)`` (``enabled=False``: a region without it)."""
        self.enabled.append(enabled)
        try:
            yield
        finally:
            self.enabled.pop()
            if not any(self.enabled):
                self._cache.clear()

    def checkpoint_fn(self, module: Callable, *args: Any) -> Any:
        """diffusers' default checkpointing (non-reentrant), with the autocast state of the forward."""
        state = self.enabled[-1]

        def run(*inner: Any) -> Any:
            # The backward pass's recomputation runs without the function modes of the forward: re-enter.
            active = self in _get_current_function_mode_stack()
            with contextlib.nullcontext() if active else self, self.region(state):
                return module(*inner)

        return torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False)

    def _cast(self, value: Any, dtype: torch.dtype) -> Any:
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.dtype == dtype:
            return value
        if value.is_leaf and value.requires_grad:
            hit = self._cache.get(id(value))
            if hit is not None and hit[0] is value:
                return hit[1]
            cast = value.to(dtype)
            self._cache[id(value)] = (value, cast)
            return cast
        return value.to(dtype)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if self.enabled[-1]:
            if func in _LOW:
                args = tuple(self._cast(a, torch.float16) for a in args)
                kwargs = {k: self._cast(v, torch.float16) for k, v in kwargs.items()}
            elif func in _FP32:
                args = tuple(self._cast(a, torch.float32) for a in args)
                kwargs = {k: self._cast(v, torch.float32) for k, v in kwargs.items()}
        if func is F.scaled_dot_product_attention:
            return self._fused_attention(*args, **kwargs)
        return func(*args, **kwargs)

    def _fused_attention(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        scale: float | None = None,
        enable_gqa: bool = False,
    ) -> torch.Tensor:
        """FlashAttention-2 where a GPU's SDPA picks it (fp16/bf16, head dim <= 256, no mask), else the
        memory-efficient kernel: both keep only the output and a log-sum-exp per query row."""
        log = self.attention
        log.calls += 1
        scores = query.shape[0] * query.shape[1] * query.shape[2] * key.shape[2] * query.element_size()
        if scores > log.largest_scores_bytes:
            log.largest_scores_bytes = scores
            log.largest_scores_shape = [query.shape[0], query.shape[1], query.shape[2], key.shape[2]]
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
        half = query.dtype in (torch.float16, torch.bfloat16)
        if half and attn_mask is None and query.shape[-1] <= 256:
            log.flash += 1
            return torch.ops.aten._scaled_dot_product_flash_attention(
                query, key, value, dropout_p, is_causal, False, scale=scale
            )[0]
        log.efficient += 1
        return torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, attn_mask, grad, dropout_p, is_causal, scale=scale
        )[0]


# --- bitsandbytes' 8-bit AdamW, emulated --------------------------------------------------------------


class AdamW8bitStates(torch.optim.Optimizer):
    """The state tensors of ``bnb.optim.AdamW8bit`` without bitsandbytes: two uint8 moments per parameter
    (fp32 below 4096 values) and one fp32 absmax per 256-value block of each; a fused in-place update."""

    def __init__(self, params: Any, lr: float = 1e-5) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    if p.numel() >= BNB_MIN_8BIT_SIZE:
                        blocks = math.ceil(p.numel() / BNB_BLOCK)
                        for name in ("state1", "state2"):
                            state[name] = torch.zeros_like(p, dtype=torch.uint8)
                        for name in ("absmax1", "absmax2"):
                            state[name] = torch.zeros(blocks, dtype=torch.float32, device=p.device)
                    else:
                        state["state1"] = torch.zeros_like(p, dtype=torch.float32)
                        state["state2"] = torch.zeros_like(p, dtype=torch.float32)
                p.add_(p.grad, alpha=-group["lr"])  # the real kernel updates in place, without temporaries


# --- the tracker --------------------------------------------------------------------------------------


class Tracker(MemTracker):
    """MemTracker that skips gradient hooks on frozen parameters (torch refuses hooks on tensors that do
    not require grad; MemTracker installs them on every module it sees run)."""

    def _track_module_params_and_buffers(self, module: torch.nn.Module, install_grad_hooks: bool = True):
        trainable = all(p.requires_grad for p in module.parameters())
        return super()._track_module_params_and_buffers(module, install_grad_hooks and trainable)

    def __init__(self) -> None:
        super().__init__()
        self.laps: dict[str, dict[str, float]] = {}

    def _update_peak_stats(self, peak_state) -> None:  # noqa: ANN001
        """Only the global peak: the per-module peaks (unused here) cost a walk over every module per op."""
        for dev, dev_snap in self._curr_mem_snap.items():
            if self._peak_mem.get(dev, 0) < dev_snap["Total"]:
                self._peak_mem[dev] = dev_snap["Total"]
                self._peak_mem_snap[dev] = dict(dev_snap)

    def lap(self, name: str) -> None:
        """Close a part of the phase: keep its peak under ``name``, start the next part's from now."""
        part = self.peak()
        if name not in self.laps or part["total"] > self.laps[name]["total"]:
            self.laps[name] = part
        self._peak_mem_snap = self.get_tracker_snapshot("current")
        self._peak_mem = {dev: snap["Total"] for dev, snap in self._peak_mem_snap.items()}

    def phase_peak(self) -> dict[str, Any]:
        """The largest part's figures, with every part's peak (GiB) and which part set it."""
        name = max(self.laps, key=lambda key: self.laps[key]["total"])
        return {**self.laps[name], "set_by": name, "parts": {k: v["total"] for k, v in self.laps.items()}}

    def peak(self) -> dict[str, float]:
        """The peak (GiB) and what the memory held at that moment, by category."""
        snapshot = self.get_tracker_snapshot("peak")
        totals: dict[str, int] = {}
        for dev_snap in snapshot.values():
            for key, value in dev_snap.items():
                totals[str(getattr(key, "value", key))] = (
                    totals.get(str(getattr(key, "value", key)), 0) + value
                )
        get = totals.get
        return {
            "total": get("Total", 0) / GIB,
            "params": (get("Parameter", 0) + get("Buffer", 0)) / GIB,
            "grads": get("Gradient", 0) / GIB,
            "optimizer": get("Optstate", 0) / GIB,
            "activations": (get("Activation", 0) + get("Temp", 0) + get("Other", 0)) / GIB,
        }


# --- presets ------------------------------------------------------------------------------------------


@dataclass
class Preset:
    """What a --vram preset changes in the memory of a step (from memory.py and TrainConfig's defaults)."""

    vram: int
    batch: int
    accumulation: int
    checkpoint_controlnet: bool
    checkpoint_unet: bool
    use_8bit_adam: bool
    set_grads_to_none: bool
    encoders_parked: bool  # latents and text embeddings cached: VAE and text encoder off the GPU

    @classmethod
    def of(cls, vram: int) -> Preset:
        values = {name: f.default for name, f in TrainConfig.__dataclass_fields__.items()}
        values.update(VRAM_PRESETS[vram])
        if values["mixed_precision"] != "fp16":
            raise SystemExit(f"--vram {vram} no longer trains in fp16: this estimate assumes it does")
        checkpointing = bool(values["gradient_checkpointing"])
        return cls(
            vram=vram,
            batch=int(values["train_batch_size"]),
            accumulation=int(values["gradient_accumulation_steps"]),
            checkpoint_controlnet=checkpointing,
            checkpoint_unet=checkpointing and vram in FROZEN_UNET_CHECKPOINTING,
            use_8bit_adam=bool(values["use_8bit_adam"]),
            set_grads_to_none=bool(values["set_grads_to_none"]),
            encoders_parked=bool(values.get("cache_latents")) and bool(values.get("cache_text_embeddings")),
        )


# --- models -------------------------------------------------------------------------------------------


def _cast_params(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``module.to(dtype)`` for fake parameters (``Module.to`` would swap tensors, which fake ones refuse)."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None and param.is_floating_point():
                sub._parameters[name] = torch.nn.Parameter(param.detach().to(dtype), param.requires_grad)
        for name, buffer in list(sub._buffers.items()):
            if buffer is not None and buffer.is_floating_point():
                sub._buffers[name] = buffer.to(dtype)
    return module


@dataclass
class Models:
    unet: Any
    controlnet: Any
    vae: Any
    text_encoder: Any
    scheduler: Any
    counts: dict[str, float]


def build_models(autocast: CudaAutocast, preset: Preset) -> Models:
    """SD 2.1-base (random fake weights) as the trainer holds it: frozen parts fp16 and in eval mode, the
    ControlNet from the UNet in fp32 and training, checkpointing as the preset asks."""
    from diffusers import ControlNetModel, DDPMScheduler

    from controlkit.models.sd21_shapes import build_sd21_components

    with tempfile.TemporaryDirectory() as folder:
        parts = build_sd21_components(folder, "cpu")
    unet, vae, text_encoder = parts["unet"], parts["vae"], parts["text_encoder"]
    controlnet = ControlNetModel.from_unet(unet)
    counts = {
        name: sum(p.numel() for p in model.parameters()) / 1e6
        for name, model in (
            ("unet", unet),
            ("controlnet", controlnet),
            ("vae", vae),
            ("text_encoder", text_encoder),
        )
    }
    for frozen in (unet, vae, text_encoder):
        frozen.requires_grad_(False)
        frozen.eval()
        _cast_params(frozen, torch.float16)
    controlnet.train()
    if preset.checkpoint_controlnet:
        controlnet.enable_gradient_checkpointing(autocast.checkpoint_fn)
    if preset.checkpoint_unet:
        unet.enable_gradient_checkpointing(autocast.checkpoint_fn)
    scheduler = DDPMScheduler.from_config(parts["scheduler"].config)
    return Models(unet, controlnet, vae, text_encoder, scheduler, counts)


# --- the steps ----------------------------------------------------------------------------------------


def _batch(preset: Preset, resolution: int) -> dict[str, torch.Tensor]:
    """One batch as the loader hands it to the GPU (cached latents and embeddings under --vram 8)."""
    size, latent = preset.batch, resolution // 8
    batch = {"conditioning_pixel_values": torch.empty(size, 3, resolution, resolution)}
    if preset.encoders_parked:
        batch["latent_mean"] = torch.empty(size, 4, latent, latent, dtype=torch.float16)
        batch["latent_std"] = torch.empty(size, 4, latent, latent, dtype=torch.float16)
        batch["prompt_embeds"] = torch.empty(size, 77, 1024, dtype=torch.float16)
    else:
        batch["pixel_values"] = torch.empty(size, 3, resolution, resolution)
        batch["input_ids"] = torch.zeros(size, 77, dtype=torch.long)
    return batch


def training_steps(
    models: Models, preset: Preset, autocast: CudaAutocast, optimizer, resolution: int
) -> Tracker:
    """Two optimizer steps' worth of micro-steps (the first creates the optimizer states); the tracker
    reports the peak over all of them, so it is the steady state's."""
    controlnet, params = models.controlnet, list(models.controlnet.parameters())

    @torch.no_grad()
    def encode(batch: dict[str, torch.Tensor]):
        if "latent_mean" in batch:
            return batch["latent_mean"], batch["latent_std"], batch["prompt_embeds"]
        dist = models.vae.encode(batch["pixel_values"].to(torch.float16)).latent_dist
        return dist.mean, dist.std, models.text_encoder(batch["input_ids"], return_dict=False)[0]

    def accelerated_controlnet(*args: Any, **kwargs: Any):
        """accelerate's prepared model under fp16: autocast around forward, outputs converted to fp32."""
        with autocast.region():
            down, mid = controlnet(*args, **kwargs)
        return [r.float() for r in down], mid.float()

    empty = torch.empty(77, 1024, dtype=torch.float16)
    generator = torch.Generator().manual_seed(0)
    tracker = Tracker()
    external = [models.unet, controlnet, optimizer] + (
        [] if preset.encoders_parked else [models.vae, models.text_encoder]
    )
    tracker.track_external(*external)
    with tracker:
        for step in range(2):
            for micro in range(preset.accumulation if step else 1):  # step 0 makes Adam's states
                tracker.reset_mod_stats()  # MemTracker refuses a second forward of a root module otherwise
                loss = training_loss(
                    _batch(preset, resolution),
                    encode=encode,
                    controlnet=accelerated_controlnet,
                    unet=models.unet,
                    noise_scheduler=models.scheduler,
                    generator=generator,
                    weight_dtype=torch.float16,
                    empty_prompt_embeds=empty,
                    proportion_empty_prompts=0.0,
                    scaling_factor=0.18215,
                )
                (loss / preset.accumulation * LOSS_SCALE).backward()  # GradScaler.scale(loss).backward()
                del loss
                tracker.lap("forward+backward")
                if step == 0 or micro == preset.accumulation - 1:
                    grads = [p.grad for p in params if p.grad is not None]
                    torch._foreach_mul_(grads, 1.0 / LOSS_SCALE)  # GradScaler.unscale_ works in place
                    del grads
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=preset.set_grads_to_none)
                    tracker.lap("optimizer step")
    return tracker


def validation_step(
    models: Models, preset: Preset, autocast: CudaAutocast, optimizer, resolution: int
) -> Tracker:
    """One denoising step of the validation pipeline (each of its 20 steps needs the same) and the VAE decode,
    under autocast and no_grad, beside what training keeps: parameters, optimizer states, zeroed gradients
    unless set to None; the VAE and text encoder are back on the GPU."""
    controlnet, unet, latent = models.controlnet, models.unet, resolution // 8
    tracker = Tracker()
    tracker.track_external(unet, controlnet, optimizer, models.vae, models.text_encoder)
    controlnet.eval()
    try:
        with tracker, torch.no_grad(), autocast.region():
            ids = torch.zeros(2, 77, dtype=torch.long)  # prompt and the guidance's empty prompt
            embeds = models.text_encoder(ids, return_dict=False)[0]
            image = torch.empty(2, 3, resolution, resolution)  # prepare_image: the ControlNet's dtype, fp32
            latents = torch.empty(1, 4, latent, latent, dtype=embeds.dtype)
            model_input = torch.cat([latents] * 2)
            t = torch.tensor(999)
            down, mid = controlnet(
                model_input, t, encoder_hidden_states=embeds, controlnet_cond=image, return_dict=False
            )
            noise = unet(
                model_input, t, encoder_hidden_states=embeds,
                down_block_additional_residuals=down, mid_block_additional_residual=mid, return_dict=False,
            )[0]  # fmt: skip
            del down, mid, model_input
            uncond, text = noise.chunk(2)
            latents = latents + (uncond + 7.5 * (text - uncond))
            del noise, uncond, text
            tracker.lap("text encoder + denoising step")
            decoded = models.vae.decode(latents / 0.18215, return_dict=False)[0]
            del decoded
            tracker.lap("VAE decode")
    finally:
        controlnet.train()
    return tracker


def estimate(vram: int, resolution: int) -> dict[str, Any]:
    """Build the models for one preset, run its training and validation steps on fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    preset = Preset.of(vram)
    started = time.perf_counter()
    autocast = CudaAutocast()
    with FakeTensorMode(allow_non_fake_inputs=True), autocast:
        models = build_models(autocast, preset)
        if preset.use_8bit_adam:
            optimizer = AdamW8bitStates(models.controlnet.parameters())
        else:  # speed.optimizer_options: fused AdamW on CUDA (no foreach temporaries)
            optimizer = torch.optim.AdamW(models.controlnet.parameters(), lr=1e-5, fused=True)
        train = training_steps(models, preset, autocast, optimizer, resolution).phase_peak()
        validation = validation_step(models, preset, autocast, optimizer, resolution).phase_peak()
    dominant = "training" if train["total"] >= validation["total"] else "validation"
    peak = max(train["total"], validation["total"])
    need = peak + CONTEXT_GIB
    return {
        "preset": asdict(preset),
        "params_m": models.counts,
        "training": train,
        "validation": validation,
        "peak_gib": peak,
        "dominant": dominant,
        "need_gib": need,
        "fits": {str(card): need <= card - CARD_RESERVE_GIB for card in CARDS},
        "attention": asdict(autocast.attention),
        "seconds": time.perf_counter() - started,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'preset':>7} {'phase':>10} {'params':>7} {'grads':>6} {'optim':>6} {'activ':>6} {'peak':>6} "
        f"{'+ctx':>6}  fits (card - {CARD_RESERVE_GIB} GiB)  (part that peaks)"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        for phase in ("training", "validation"):
            p = row[phase]
            mark = "*" if row["dominant"] == phase else " "
            fits = " ".join(
                f"{card}:{'yes' if p['total'] + CONTEXT_GIB <= card - CARD_RESERVE_GIB else 'no'}"
                for card in CARDS
            )
            name = f"--vram {row['preset']['vram']}" if phase == "training" else ""
            lines.append(
                f"{name:>7} {phase + mark:>10} "
                f"{p['params']:7.2f} {p['grads']:6.2f} {p['optimizer']:6.2f} {p['activations']:6.2f} "
                f"{p['total']:6.2f} {p['total'] + CONTEXT_GIB:6.2f}  {fits}  ({p['set_by']})"
            )
    lines.append(
        "GiB; activ = activations + temporaries + inputs at the peak moment; * = the phase that sets the peak"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--only", type=int, nargs="*", choices=sorted(VRAM_PRESETS), default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for vram in args.only or sorted(VRAM_PRESETS):
        row = estimate(vram, args.resolution)
        rows.append(row)
        print(f"--vram {vram}: {row['seconds']:.0f} s", file=sys.stderr)
    print(_table(rows))
    if args.json:
        import diffusers
        import transformers

        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "resolution": args.resolution,
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "context_gib": CONTEXT_GIB,
            "card_reserve_gib": CARD_RESERVE_GIB,
            "method": METHOD,
            "caveats": CAVEATS,
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


METHOD = [
    "SD 2.1-base's configs (controlkit.models.sd21_shapes), ControlNetModel.from_unet, built as fake "
    "tensors (FakeTensorMode): shapes and dtypes only, no memory, no arithmetic.",
    "torch.distributed._tools.mem_tracker.MemTracker follows every tensor's storage, by category, "
    "with the CUDA caching allocator's 512-byte rounding; the peak is that of allocated memory "
    "(max_memory_allocated).",
    "Frozen UNet, VAE and text encoder fp16 in eval mode; ControlNet fp32; training_loss from the "
    "trainer; accelerate's fp16 handling emulated: autocast around the ControlNet's forward, its "
    "outputs cast to fp32, loss scaled, gradients unscaled in place, clip_grad_norm_.",
    "This CPU build has no CUDA device guard, so autograd cannot run on fake 'cuda' tensors: they are"
    " fake CPU tensors and a TorchFunctionMode applies CUDA autocast's fp16/fp32 op lists (CPU "
    "autocast's differ: it leaves group_norm, layer_norm, softmax and upsampling in fp16), caching "
    "each parameter's fp16 copy per autocast region; checkpointed blocks recompute under the autocast"
    " state of their forward.",
    "SDPA is replaced by the fake implementations of aten._scaled_dot_product_flash_attention (fp16, "
    "head dim <= 256, no mask) or _scaled_dot_product_efficient_attention: no attention matrix is "
    "kept, as on a GPU. The largest score matrix the math path would have materialised is reported "
    "per row (attention).",
    "8-bit AdamW: bitsandbytes is not installed; AdamW8bitStates allocates bnb's states (two uint8 "
    "tensors per parameter, fp32 below 4096 values, fp32 absmax per 256-value block) and updates in "
    "place. AdamW (--vram 24) is torch's fused AdamW, as the trainer uses on CUDA (fp32 exp_avg and "
    "exp_avg_sq).",
    "Training: a first step creates the optimizer states, then one optimizer step of `accumulation` "
    "micro-steps (grads present from the second micro-step, or kept as zeros without "
    "set_grads_to_none); peak over all.",
    "Without the latent cache (12/16/24: the worst case, cache_latents only turns on for multi-epoch "
    "runs) the VAE encodes and the text encoder runs on the GPU every step; under --vram 8 both are "
    "off the GPU.",
    "Validation: text encoder on 2 x 77 tokens, ControlNet + UNet at batch 2 (classifier-free "
    "guidance), VAE decode of one latent, all under autocast and no_grad, beside the training's "
    "parameters, optimizer states and (without set_grads_to_none) zeroed gradients; under --vram 8 "
    "the VAE and text encoder are back.",
]

CAVEATS = [
    "Allocated memory only: the caching allocator's reserved memory (fragmentation, blocks rounded to"
    " 2 MiB segments) is typically 5-20% more; gpu_presets.py measures max_memory_reserved on a real "
    "card.",
    "The CUDA context (0.5 GiB assumed here) is 0.3-0.6 GiB depending on the card, driver and loaded "
    "kernels.",
    "cuDNN convolution and cuBLAS workspaces are not modelled (tens to a few hundred MiB at 512 px, "
    "depending on the algorithms cuDNN picks); flash-attention backward scratch is not either.",
    "Attention: if a card's SDPA falls back to the math kernel (old GPU, unusual head dim) the score "
    "matrices are kept: see attention.largest_scores_bytes per row (one of them, per layer, per "
    "image).",
    "8-bit AdamW states are bnb's layout as of 0.4x (blockwise, 256); paged or other bnb variants differ.",
    "Peaks are of the step itself: the model load (fp32 weights before the fp16 cast, on the CPU in "
    "the trainer), the latent cache's encoding pass and checkpoint saving are not measured.",
    "Validation's UniPC state (a few latents) and the VAE's fp16 output image are included only "
    "approximately.",
]


if __name__ == "__main__":
    raise SystemExit(main())
