"""Where a training step's time goes, in the diffusers reference and in `controlkit train`.

    python benchmarks/train_profile.py --reference PATH/train_controlnet.py [--model sd21-small|small|PATH]
        [--resolution 256] [--steps 8] [--warmup 3] [--threads N] [--rows NAME=FLAGS ...] [--ops 12]
        [--workdir DIR] [--json OUT.json]

Each trainer runs in a child process with timers wrapped around the parts every ControlNet trainer calls
(the same classes, so both trainers are measured alike): the data loader's next batch (reading, decoding,
resizing, collating), the VAE's encode, the text encoder, the ControlNet's and the UNet's forward, the
backward pass split where the gradient reaches the ControlNet's outputs (before: back through the frozen
UNet; after: through the ControlNet), and the optimizer (gradient clipping and the AdamW step). A step is
the time from the end of one optimizer step to the end of the next; "other" is what the parts leave
(noise, the loss, logging, zeroing gradients). The first ``--warmup`` steps (at least 1: the first step
has no start) are left out. ``torch.profiler`` records the operators of
the measured steps: the table lists the ``--ops`` that took the most time.

The model FLOPs of one training image per part (``torch.utils.flop_counter`` on the meta device, no
weights) are printed beside, for this model and for SD 2.1-base at 512 px: the CPU proxy's split should be
SD's. Rows: ``reference`` (the walkthrough's flags), ``controlkit`` (the same) and ``controlkit-fast``
(``--fast``); ``--rows NAME=FLAGS`` adds controlkit rows with other flags.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from torchvision_shim import write_shim  # noqa: E402
from train_job import FAST_FLAGS, write_model  # noqa: E402
from train_speed import write_dataset  # noqa: E402

PARTS = ("data", "vae encode", "text encoder", "controlnet fwd", "unet fwd", "unet bwd", "controlnet bwd")
PARTS += ("optimizer", "other")

RUNNER = r"""
import json, runpy, sys, time
import torch
out, kind, target, shim, warmup, steps, ops = sys.argv[1:8]
warmup, steps, ops = int(warmup), int(steps), int(ops)
sys.argv = [target, *sys.argv[8:]]
if shim:
    from transformers.utils import import_utils
    import diffusers.utils.import_utils
    import_utils.is_torchvision_available()
    sys.path.insert(0, shim)
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from transformers import CLIPTextModel
from torch.utils.data import dataloader

# A step runs from the end of one optimizer step to the end of the next; steps after the warm-up and up
# to warm-up + steps are measured (the parts of a step are kept only once the step is complete).
totals, pending = {}, {}
state = {"done": 0, "last": None, "profiler": None, "cn_grad": None}


def measuring():
    return warmup <= state["done"] < warmup + steps


def add(part, seconds):
    if measuring():
        pending[part] = pending.get(part, 0.0) + seconds


def timed(owner, name, part):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            add(part, time.perf_counter() - start)

    setattr(owner, name, wrapper)


optimizer_step = torch.optim.AdamW.step


def step(self, *args, **kwargs):
    start = time.perf_counter()
    result = optimizer_step(self, *args, **kwargs)
    now = time.perf_counter()
    add("optimizer", now - start)
    if measuring():
        for part, seconds in pending.items():
            totals[part] = totals.get(part, 0.0) + seconds
        totals["step"] = totals.get("step", 0.0) + now - state["last"]
    pending.clear()
    state["done"] += 1
    state["last"] = time.perf_counter()
    if state["done"] == warmup:
        state["profiler"] = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        state["profiler"].__enter__()
    if state["done"] == warmup + steps and state["profiler"] is not None:
        state["profiler"].__exit__(None, None, None)
    return result


torch.optim.AdamW.step = step
timed(dataloader._BaseDataLoaderIter, "__next__", "data")
timed(AutoencoderKL, "encode", "vae encode")
timed(CLIPTextModel, "forward", "text encoder")
timed(UNet2DConditionModel, "forward", "unet fwd")
timed(torch.nn.utils, "clip_grad_norm_", "optimizer")
cn_forward = ControlNetModel.forward


def controlnet_forward(self, *args, **kwargs):
    start = time.perf_counter()
    result = cn_forward(self, *args, **kwargs)
    add("controlnet fwd", time.perf_counter() - start)
    if isinstance(result, tuple):
        down, mid = result
    else:
        down, mid = result.down_block_res_samples, result.mid_block_res_sample

    def first_grad(grad):  # the engine runs the UNet's nodes (created later) before the ControlNet's
        if state["cn_grad"] is None:
            state["cn_grad"] = time.perf_counter()
        return grad

    for tensor in [*down, mid]:
        if tensor.requires_grad:
            tensor.register_hook(first_grad)
    return result


ControlNetModel.forward = controlnet_forward
autograd_backward = torch.autograd.backward


def backward(*args, **kwargs):
    state["cn_grad"], start = None, time.perf_counter()
    result = autograd_backward(*args, **kwargs)
    end = time.perf_counter()
    split = state["cn_grad"] or end
    add("unet bwd", split - start)
    add("controlnet bwd", end - split)
    return result


torch.autograd.backward = backward
try:
    if kind == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
finally:
    record = {"totals": totals, "steps": min(max(state["done"] - warmup, 0), steps), "ops": []}
    if state["profiler"] is not None:
        averages = sorted(state["profiler"].key_averages(), key=lambda e: -e.self_cpu_time_total)
        record["ops"] = [
            {"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "calls": e.count} for e in averages[:ops]
        ]
    with open(out, "w") as f:
        json.dump(record, f)
"""
"""Runs a trainer with timers around each part of a step; writes the totals and the top operators."""


def flop_split(model: str, resolution: int) -> dict[str, float]:
    """GFLOPs of one training image per part, on the meta device (no weights, no time)."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(model, subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(model, subfolder="vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(model, subfolder="text_encoder"))
        controlnet = ControlNetModel.from_unet(unet)
    unet.requires_grad_(False)
    latent = resolution // 2 ** (len(vae.config.block_out_channels) - 1)
    meta = {"device": "meta"}
    pixels = torch.zeros(1, 3, resolution, resolution, **meta)
    ids = torch.zeros(1, 77, dtype=torch.long, **meta)
    latents, t = torch.zeros(1, 4, latent, latent, **meta), torch.zeros(1, dtype=torch.long, **meta)
    embeds = torch.zeros(1, 77, text.config.hidden_size, **meta)
    found: dict[str, float] = {}

    def count(part: str, fn):
        with FlopCounterMode(display=False) as counter:
            result = fn()
        found[part] = counter.get_total_flops() / 1e9
        return result

    count("vae encode", lambda: vae.encode(pixels))
    count("text encoder", lambda: text(ids))
    down, mid = count(
        "controlnet fwd",
        lambda: controlnet(
            latents, t, encoder_hidden_states=embeds, controlnet_cond=pixels, return_dict=False
        ),
    )
    prediction = count(
        "unet fwd",
        lambda: unet(
            latents,
            t,
            encoder_hidden_states=embeds,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0],
    )
    residuals = [*down, mid]
    grads = count("unet bwd", lambda: torch.autograd.grad(prediction.pow(2).mean(), residuals))
    count("controlnet bwd", lambda: torch.autograd.backward(residuals, grads))
    return found


def sd21_flop_split(workdir: Path) -> dict[str, float]:
    folder = workdir / "sd21-configs"
    if not (folder / "unet" / "config.json").is_file():
        from controlkit.models.sd21_shapes import build_sd21_components

        parts = build_sd21_components(folder / "tokenizer", device="meta")
        for name in ("unet", "vae", "text_encoder"):
            (folder / name).mkdir(parents=True, exist_ok=True)
            if name == "text_encoder":
                parts[name].config.save_pretrained(folder / name)
            else:
                parts[name].save_config(folder / name)
    return flop_split(str(folder), 512)


def profile(name: str, trainer: tuple, flags: list[str], model: str, data: Path, opts) -> dict:
    kind, target, prefix = trainer
    folder = opts.workdir / "profile" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    args = [
        *prefix,
        f"--pretrained_model_name_or_path={model}",
        f"--dataset_name={data}",
        f"--output_dir={folder / 'out'}",
        f"--resolution={opts.resolution}",
        "--learning_rate=1e-5",
        "--train_batch_size=4",
        f"--max_train_steps={opts.steps + opts.warmup + 1}",
        "--checkpointing_steps=5000",
        "--validation_steps=5000",
        "--seed=0",
        *flags,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["XDG_CACHE_HOME"] = str(folder / "cache")
    if opts.threads:
        env.update({var: str(opts.threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    shim = str(opts.workdir / "shim") if name == "reference" else ""
    out = folder / "profile.json"
    command = [sys.executable, "-c", RUNNER, str(out), kind, target, shim, str(opts.warmup), str(opts.steps)]
    command += [str(opts.ops), *args]
    with (folder / "log.txt").open("wb") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        tail = (folder / "log.txt").read_text(errors="replace").splitlines()[-15:]
        sys.exit(f"{name} failed (exit {code}); the end of {folder / 'log.txt'}:\n" + "\n".join(tail))
    record = json.loads(out.read_text())
    totals, steps = record["totals"], record["steps"]
    per_step = {part: totals.get(part, 0.0) / steps for part in PARTS if part != "other"}
    step = totals["step"] / steps
    per_step["other"] = step - sum(per_step.values())
    return {"flags": flags, "steps": steps, "step_s": step, "parts_s": per_step, "ops": record["ops"]}


def print_tables(results: dict[str, dict], flops: dict[str, dict[str, float]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    table = Table(title="Where a training step's time goes (ms per step of batch 4; % of the step)")
    table.add_column("part")
    for name in results:
        table.add_column(name, justify="right")
    for name in flops:
        table.add_column(f"GFLOPs/image {name}", justify="right")
    for part in PARTS:
        cells = [
            f"{1000 * r['parts_s'][part]:.0f} ({100 * r['parts_s'][part] / r['step_s']:.0f}%)"
            for r in results.values()
        ]
        for split in flops.values():
            total = sum(split.values())
            cells.append(f"{split[part]:.1f} ({100 * split[part] / total:.0f}%)" if part in split else "-")
        table.add_row(part, *cells)
    table.add_row(
        "step",
        *[f"{1000 * r['step_s']:.0f}" for r in results.values()],
        *[f"{sum(split.values()):.1f}" for split in flops.values()],
    )
    console.print(table)
    for name, r in results.items():
        ops = Table(title=f"{name}: operators by own time over {r['steps']} steps (torch.profiler)")
        for column in ("operator", "s", "calls"):
            ops.add_column(column, justify="left" if column == "operator" else "right")
        for op in r["ops"]:
            ops.add_row(op["op"], f"{op['self_s']:.2f}", str(op["calls"]))
        console.print(ops)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="the diffusers example train_controlnet.py")
    parser.add_argument("--model", default="sd21-small", help="sd21-small (default), small, or a folder")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8, help="steps measured")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out first")
    parser.add_argument("--threads", type=int, help="CPU threads per trainer (default: torch's, every core)")
    parser.add_argument("--fast", default=FAST_FLAGS, help=f"controlkit-fast's flags (default: {FAST_FLAGS})")
    parser.add_argument("--rows", nargs="*", default=[], metavar="NAME=FLAGS", help="more controlkit rows")
    parser.add_argument("--only", nargs="+", help="rows to run, by name")
    parser.add_argument("--ops", type=int, default=12, help="operators listed per row")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/controlkit-train-job"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    opts = parser.parse_args(argv)
    if opts.warmup < 1:
        parser.error("--warmup must be at least 1: the first step has no start to time it from")
    opts.workdir.mkdir(parents=True, exist_ok=True)
    model = write_model(opts.model, opts.workdir / f"model-{opts.model}", opts.resolution)
    rows_needed = 4 * (opts.steps + opts.warmup + 1)
    data = opts.workdir / f"data-{rows_needed}-{opts.resolution}"
    if not data.is_dir():
        write_dataset(data, rows_needed, opts.resolution)
    write_shim(opts.workdir / "shim")
    ck = ("module", "controlkit", ["train"])
    rows: dict[str, tuple] = {}
    if opts.reference is not None:
        rows["reference"] = (("path", str(opts.reference.resolve()), []), [])
    rows["controlkit"] = (ck, [])
    rows["controlkit-fast"] = (ck, shlex.split(opts.fast))
    for item in opts.rows:
        name, _, flags = item.partition("=")
        rows[name] = (ck, shlex.split(flags))
    flops = {f"{opts.model} {opts.resolution}px": flop_split(model, opts.resolution)}
    flops["SD 2.1-base 512px"] = sd21_flop_split(opts.workdir)
    report = {
        "model": opts.model,
        "resolution": opts.resolution,
        "steps": opts.steps,
        "warmup": opts.warmup,
        "threads": opts.threads,
        "results": {},
        "gflops_per_image": flops,
    }
    for name, (trainer, flags) in rows.items():
        if opts.only and name not in opts.only:
            continue
        print(f"{name} ...", file=sys.stderr, flush=True)
        report["results"][name] = profile(name, trainer, flags, model, data, opts)
        if opts.json:  # after every row, so a cut-off run keeps what it measured
            opts.json.parent.mkdir(parents=True, exist_ok=True)
            opts.json.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report["results"], flops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
