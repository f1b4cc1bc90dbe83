"""The GPU suite: the reference trainer, `controlkit train` and its speed and memory options, on one card.

    python benchmarks/gpu_suite.py [--tiny] [--out DIR] [--budget 480] [--only GROUP ...] [--workdir DIR]

``benchmarks/gpu_suite.sh`` is the one command for a lent GPU machine (it installs the carried wheels first).
Every row is its own child process, timed from start to exit, so its start-up and its peaks are its own:

- ``reference``: the diffusers example trainer (``.reference/train_controlnet.py``) with the walkthrough's
  flags: SD 2.1-base shapes (random weights), 512 px, batch 4, ``--mixed_precision fp16``, learning rate
  1e-5, 3 epochs over 64 rows, checkpoints and validation every 5000 steps (so none), xformers if it imports;
- ``controlkit``: `controlkit train` with exactly those flags; ``controlkit-fast``: ``--fast`` in place of
  ``--mixed_precision fp16`` (so it runs the preset's bf16); ``controlkit-fast-compile``: plus
  ``--compile``. These four start cold (their own cache folders), so data preparation, latent caching and
  compiling are in the wall time, as a user's first run has them;
- ``best-batch-N``: controlkit-fast at batch 8, 16, 32, 48 (stopping at the first that fails, e.g. out of
  memory) for a fixed number of steps: steady images/s, and with the model FLOPs of a training image the
  share of the card's dense bf16 peak;
- ``profile``: controlkit-fast under torch.profiler for a few steps: the 15 CUDA kernels that took the
  most time, and a chrome trace;
- ``vram8`` ... ``vram24``: the ``--vram`` presets (``gpu_presets.plan_runs``), each capped with
  torch.cuda.set_per_process_memory_fraction at its size minus the CUDA context, with one validation
  inside the measured steps: peak allocated, reserved, memory outside torch, and whether it fits.

Steady images/s comes from the step bar's timestamps after the warm-up steps (the same clock for both
trainers; for the vram rows up to the validation step, stamped before it runs); the trainer's own figure
(median ``images_per_s`` of metrics.jsonl) is kept beside it. Each row
has a timeout and the suite a time budget: a row that would start too late is recorded as "skipped (time
budget)", and the JSON (card, driver, CUDA, versions, every row with its flags, status, figures and, on
failure, its log's tail) is rewritten after every row, so a cut-off run still returns what it measured.
``--out`` receives at most four files: gpu_suite.json, gpu_suite.txt (the printed tables),
gpu_suite-trace.json.gz (when small enough) and logs.tar.gz.

``--tiny`` runs the same rows on a CPU with controlkit.models.small at 64 px, a few rows and steps and two
threads: it proves the plumbing (every row runs, the tables and the JSON are written); the memory caps,
fits and CUDA kernels need CUDA and say so.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).parent))
from gpu_presets import (  # noqa: E402
    Run,
    bitsandbytes_error,
    datasets_location_error,
    gpu_info,
    import_error,
    package_version,
    plan_runs,
    run_child,
    summarise,
    write_model,
)
from torchvision_shim import write_shim  # noqa: E402
from train_job import walkthrough_flags  # noqa: E402
from train_profile import flop_split  # noqa: E402
from train_speed import write_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / ".reference" / "train_controlnet.py"
GROUPS = (
    "reference",
    "controlkit",
    "controlkit-fast",
    "controlkit-fast-compile",
    "best-batch",
    "profile",
    "vram",
)
TRACE_LIMIT_MB = 12
"""A gzipped trace larger than this stays behind (the GPU machine returns files of at most 16 MiB)."""

RUNNER = r"""
import json, os, resource, runpy, sys
out, kind, target, shim, profile = sys.argv[1:6]
sys.argv = [target, *sys.argv[6:]]
import torch
limit = os.environ.get("GPU_PRESETS_LIMIT_GIB")
if limit and torch.cuda.is_available():
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, float(limit) * 2**30 / total))
if shim:
    # transformers and diffusers look for torchvision once and remember the answer: let them find none
    # (as is the case), then make the stand-in importable for the reference's own import.
    from transformers.utils import import_utils
    import diffusers.utils.import_utils
    import_utils.is_torchvision_available()
    sys.path.insert(0, shim)
record, profiler = {}, None
if profile:
    from torch.autograd import DeviceType
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from torch.profiler import ProfilerActivity, schedule
    skip, active = (int(n) for n in profile.split(","))
    cuda = torch.cuda.is_available()
    kind_seen = DeviceType.CUDA if cuda else DeviceType.CPU
    key = "self_device_time_total" if cuda else "self_cpu_time_total"

    def ready(prof):
        events = [e for e in prof.key_averages() if e.device_type == kind_seen and not e.is_user_annotation]
        total = sum(getattr(e, key) for e in events) or 1
        top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:15]
        trace = out.removesuffix("-peak.json") + "-trace.json"
        prof.export_chrome_trace(trace)
        record["profile"] = {
            "what": "CUDA kernels" if cuda else "CPU operators (no CUDA)",
            "steps": active,
            "total_ms": total / 1000,
            "top": [
                {"name": e.key, "ms": t / 1000, "share": t / total, "calls": e.count}
                for e, t in ((e, getattr(e, key)) for e in top)
            ],
            "trace": trace,
        }

    profiler = torch.profiler.profile(
        activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []),
        schedule=schedule(skip_first=skip, wait=0, warmup=1, active=active, repeat=1),
        on_trace_ready=ready,
    )
    profiler.start()
    register_optimizer_step_post_hook(lambda *args: profiler.step())
try:
    if kind == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
finally:
    if profiler is not None:
        profiler.stop()
    record["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        free, total = torch.cuda.mem_get_info()
        record.update(
            allocated_mb=torch.cuda.max_memory_allocated() / 2**20,
            reserved_mb=torch.cuda.max_memory_reserved() / 2**20,
            outside_allocator_mb=(total - free - torch.cuda.memory_reserved()) / 2**20,
            device=torch.cuda.get_device_name(),
        )
    with open(out, "w") as f:
        json.dump(record, f)
"""
"""Runs a trainer in a child: optional memory cap, torchvision stand-in and profiler; writes its peaks at exit
(``gpu_presets.summarise`` reads the same keys)."""


@dataclass(frozen=True)
class Plan:
    """Sizes and limits of one suite: the GPU one, or the CPU stand-in that proves its plumbing."""

    model: str
    resolution: int
    rows: int  # the walkthrough rows' dataset: 3 epochs of batch 4
    warmup: int  # steps left out of the steady images/s
    batch_rows: int  # best-batch's dataset (a multiple of every batch size)
    batch_sizes: tuple[int, ...]
    batch_steps: int
    profile_skip: int  # optimizer steps before the profiler records (then 1 warm-up, ``profile_active``)
    profile_active: int
    profile_steps: int
    vram_steps: int
    vram_warmup: int
    validation_step: int  # one validation inside the measured steps of each vram row
    min_start_s: float  # a row starts only with this much budget left, and half its timeout
    validation_inference_steps: int | None = None  # None: the trainer's default (20)
    timeouts: dict[str, float] = field(default_factory=dict)
    threads: int | None = None


GPU_PLAN = Plan(
    model="SD-2.1-base shapes, random weights",
    resolution=512,
    rows=64,
    warmup=10,  # the rate runs from step 10 to the last: controlkit reads the loss back every 10 steps on a
    # GPU, and its bar is stamped just before each read, so both ends trail the GPU alike
    batch_rows=192,
    batch_sizes=(8, 16, 32, 48),
    batch_steps=20,
    profile_skip=8,
    profile_active=3,
    profile_steps=20,  # fp16's loss scaler may skip the first optimizer steps: room for them
    vram_steps=12,
    vram_warmup=5,
    validation_step=10,
    min_start_s=45,
    timeouts={"walkthrough": 150, "compile": 200, "best-batch": 90, "profile": 90, "vram": 100},
)
TINY_PLAN = Plan(
    model="controlkit.models.small (64 px), on a CPU",
    resolution=64,
    rows=16,
    warmup=3,
    batch_rows=32,
    batch_sizes=(8, 16),
    batch_steps=8,
    profile_skip=3,
    profile_active=2,
    profile_steps=8,
    vram_steps=6,
    vram_warmup=2,
    validation_step=4,
    min_start_s=10,
    validation_inference_steps=4,
    timeouts={"walkthrough": 240, "compile": 300, "best-batch": 180, "profile": 180, "vram": 180},
    threads=2,
)

PEAK_NOTE = "NVIDIA datasheet, dense bf16 tensor-core peak (fp16 is the same on Hopper)"


def bf16_dense_peak_tflops(card: str) -> float | None:
    """The card's dense bf16 peak, from its name: H100 SXM and H200 989, H100 PCIe 756; None otherwise."""
    if "NVL" in card:
        return None
    if "H100" in card and "PCIe" in card:
        return 756.0
    if "H100" in card or "H200" in card:
        return 989.0
    return None


@dataclass
class Row:
    """One child process of the suite: its trainer, command line, limits and how to read its figures."""

    name: str
    group: str
    args: list[str]
    shown: str  # the options as the table shows them
    timeout: float
    warmup: int
    batch: int = 4  # images per optimizer step
    reference: bool = False
    cache: str = "cold"  # "cold": its own cache folders; else a shared folder under the work folder
    profile: str = ""  # "SKIP,ACTIVE" for the profiled row
    preset: Run | None = None  # the vram rows' preset (its target size is the cap)


class Suite:
    """The work folder, the report and the budget; runs rows and keeps the JSON current."""

    def __init__(self, opts: argparse.Namespace, plan: Plan, cuda: bool, report: dict) -> None:
        self.opts, self.plan, self.cuda, self.report = opts, plan, cuda, report
        self.started = time.perf_counter()
        self.runs = opts.workdir / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)
        opts.out.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.env.update(TQDM_MININTERVAL="0", TQDM_MINITERS="1")
        self.env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        for var in ("HF_HOME", "HF_DATASETS_CACHE"):
            self.env.pop(var, None)
        if plan.threads:
            self.env.update(OMP_NUM_THREADS=str(plan.threads), MKL_NUM_THREADS=str(plan.threads))

    def left(self) -> float:
        return self.opts.budget - (time.perf_counter() - self.started)

    def save(self) -> None:
        """The JSON (with the figures derived so far) and the logs: a cut-off call returns its figures."""
        self.report["total_s"] = round(time.perf_counter() - self.started, 1)
        derive(self.report)
        (self.opts.out / "gpu_suite.json").write_text(json.dumps(self.report, indent=2) + "\n")
        with tarfile.open(self.opts.out / "logs.tar.gz", "w:gz") as tar:
            for log in sorted(self.runs.glob("*.log")):
                tar.add(log, arcname=f"logs/{log.name}")

    def skip(self, row: Row, status: str) -> dict:
        result = {"name": row.name, "group": row.group, "options_text": row.shown, "status": status}
        self.report["rows"].append(result)
        self.save()
        return result

    def run(self, row: Row) -> dict:
        """One row: a child process to its end or its timeout, then its figures (gpu_presets.summarise)."""
        if self.left() < max(self.plan.min_start_s, row.timeout / 2):
            return self.skip(row, "skipped (time budget)")
        if row.reference and not REFERENCE.is_file():
            return self.skip(row, f"skipped ({REFERENCE.relative_to(ROOT)} is missing)")
        out, peak, log = (
            self.runs / row.name,
            self.runs / f"{row.name}-peak.json",
            self.runs / f"{row.name}.log",
        )
        cache = self.runs / f"{row.name}-cache" if row.cache == "cold" else self.opts.workdir / row.cache
        shutil.rmtree(out, ignore_errors=True)
        if row.cache == "cold":
            shutil.rmtree(cache, ignore_errors=True)
        peak.unlink(missing_ok=True)
        env = {**self.env, "XDG_CACHE_HOME": str(cache), "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor")}
        env["TRITON_CACHE_DIR"] = str(cache / "triton")
        capped = row.preset is not None and self.cuda
        if capped:
            env["GPU_PRESETS_LIMIT_GIB"] = str(row.preset.target_gib - self.opts.context_gib)
        kind, target = ("path", str(REFERENCE)) if row.reference else ("module", "controlkit")
        shim = str(self.opts.workdir / "shim") if row.reference and self.report["torchvision_error"] else ""
        flags = [*row.args, f"--output_dir={out}"]
        command = [sys.executable, "-c", RUNNER, str(peak), kind, target, shim, row.profile]
        command += flags if row.reference else ["train", *flags]
        print(f"{row.name}: {row.shown} ...", file=sys.stderr, flush=True)
        stamps: dict[int, float] = {}
        started = time.perf_counter()
        code, wall = run_child(command, env, log, min(row.timeout, self.left()), stamps)
        figures = SimpleNamespace(
            warmup=row.warmup, flags=[], enforce_limit=capped, context_gib=self.opts.context_gib
        )
        result = {
            "group": row.group,
            **summarise(row.preset or Run(row.name, None), code, wall, out, log, figures),
        }
        result.update(options_text=row.shown, flags=flags, batch=row.batch)
        result["trainer_images_per_s"] = result.pop("images_per_s")
        del result["steps_done"]  # the step bar's count (below) is the one both trainers have
        last = self.plan.validation_step if row.preset is not None else None  # stamped before validating
        result.update(step_bar_figures(stamps, started, started + wall, row.warmup, row.batch, last))
        record = json.loads(peak.read_text()) if peak.is_file() else {}
        if "peak_allocated_gib" not in result and "rss_mb" in record:
            result["peak_rss_gib"] = record["rss_mb"] / 1024
        if row.preset is not None and not self.cuda:
            result["fits"] = "skipped: no CUDA"
        if "profile" in record:
            result["profile"] = keep_trace(record["profile"], self.opts.out)
        self.report["rows"].append(result)
        print(f"{row.name}: {result['status']}, {wall:.0f} s", file=sys.stderr, flush=True)
        self.save()
        return result


def step_bar_figures(
    stamps: dict[int, float], start: float, end: float, warmup: int, batch: int, last: int | None = None
) -> dict:
    """From the step bar's timestamps: time to the first step, steps seen, the end, and steady images/s
    from step ``warmup`` to ``last`` (default: the last step; the same clock for every trainer)."""
    steps = sorted(s for s in stamps if s > 0)
    if not steps:
        return {"steps": 0, "images_per_s": None}
    steady = [s for s in steps if s >= warmup and (last is None or s <= last)]
    rate = None
    if len(steady) >= 2 and stamps[steady[-1]] > stamps[steady[0]]:
        rate = batch * (steady[-1] - steady[0]) / (stamps[steady[-1]] - stamps[steady[0]])
    return {
        "to_first_step_s": round(stamps[steps[0]] - start, 1),
        "steps": steps[-1],
        "after_last_step_s": round(end - stamps[steps[-1]], 1),
        "images_per_s": rate,
    }


def keep_trace(profile: dict, out: Path) -> dict:
    """Gzip the profiled run's chrome trace into ``out`` when it is small enough to come back."""
    trace, kept = Path(profile.pop("trace")), out / "gpu_suite-trace.json.gz"
    with trace.open("rb") as source, gzip.open(kept, "wb") as target:
        shutil.copyfileobj(source, target)
    size_mb = kept.stat().st_size / 2**20
    if size_mb > TRACE_LIMIT_MB:
        kept.unlink()
        profile["trace"] = f"not kept: {size_mb:.0f} MB gzipped (over {TRACE_LIMIT_MB} MB), left at {trace}"
    else:
        profile["trace"] = f"{kept.name} ({size_mb:.1f} MB; chrome://tracing or ui.perfetto.dev)"
    return profile


CONTROLKIT_GROUPS = ("controlkit", "controlkit-fast", "controlkit-fast-compile", "best-batch")


def derive(report: dict) -> None:
    """Speed-ups over the reference, FLOP rates and utilisation, the best batch: from the rows so far."""
    rows = [row for row in report["rows"] if row["status"] == "ok"]
    if "card" not in report and any(row.get("device", "cpu") != "cpu" for row in rows):
        report["card"] = next(row["device"] for row in rows if row.get("device", "cpu") != "cpu")
    peak = bf16_dense_peak_tflops(report.get("card", ""))
    report["peak_bf16_dense_tflops"] = peak if peak else "unknown peak"
    flops = report.get("flops_per_image")
    reference = next((row for row in rows if row["name"] == "reference"), None)
    for row in rows:
        if row["group"] in CONTROLKIT_GROUPS and reference is not None:
            if row["group"] != "best-batch":
                row["speedup_wall"] = reference["wall_s"] / row["wall_s"]
            if row.get("images_per_s") and reference.get("images_per_s"):
                row["speedup_images_per_s"] = row["images_per_s"] / reference["images_per_s"]
        if flops and row.get("images_per_s") and row["group"] in ("reference", *CONTROLKIT_GROUPS):
            # the reference encodes every image with the VAE each step; controlkit's 3-epoch jobs and
            # --fast cache the latents, so their steps do all the work but the VAE encode
            gflops = flops["total_gflops"] if row["name"] == "reference" else flops["step_gflops"]
            row["achieved_tflops"] = row["images_per_s"] * gflops / 1000
            if peak:
                row["utilisation"] = row["achieved_tflops"] / peak
    batches = [
        row for row in rows if row["group"] in ("best-batch", "controlkit-fast") and row.get("images_per_s")
    ]
    if batches:
        best = max(batches, key=lambda row: row["images_per_s"])
        report["best_batch"] = {
            "row": best["name"],
            "batch": best["batch"],
            "images_per_s": best["images_per_s"],
            "gflops_per_image": flops["step_gflops"] if flops else None,
            "achieved_tflops": best.get("achieved_tflops"),
            "peak_bf16_dense_tflops": report["peak_bf16_dense_tflops"],
            "utilisation": best.get("utilisation", "unknown peak"),
            "speedup_images_per_s_over_reference": best.get("speedup_images_per_s"),
        }


def model_flops(model: Path, resolution: int) -> dict:
    """Model FLOPs of one training image, counted (train_profile.flop_split: FlopCounterMode, meta device)."""
    parts = flop_split(str(model), resolution)
    total = sum(parts.values())
    return {
        "method": "counted: torch.utils.flop_counter.FlopCounterMode on the meta device, one training "
        "step of batch 1: VAE encode, text encoder, ControlNet forward and backward (weight gradients), "
        "UNet forward and backward to the ControlNet's residuals (frozen: no weight gradients); "
        "optimizer excluded",
        "parts_gflops": parts,
        "total_gflops": total,
        "step_gflops": total - parts["vae encode"],
        "step_note": "step_gflops leaves out the VAE encode: controlkit's latent cache does it once",
    }


def prepare(suite: Suite) -> dict:
    """Model (built once per work folder), the two datasets, a validation pair, the torchvision stand-in."""
    plan, workdir, tiny = suite.plan, suite.opts.workdir, suite.opts.tiny
    model = workdir / ("model-tiny" if tiny else "model-sd21-base-shapes")
    print(f"model: {model} ...", file=sys.stderr, flush=True)
    build_s = write_model(model, tiny, "cuda" if suite.cuda else "cpu", suite.left())
    suite.report["model_build_s"] = round(build_s, 1)
    data = workdir / f"data-{plan.rows}x{plan.resolution}"
    batch_data = workdir / f"data-{plan.batch_rows}x{plan.resolution}"
    for folder, rows in ((data, plan.rows), (batch_data, plan.batch_rows)):
        if not folder.is_dir():
            write_dataset(folder, rows, plan.resolution)
    import pyarrow.parquet as pq

    first = pq.read_table(next(data.glob("*.parquet")), columns=["conditioning_image", "text"]).to_pylist()[0]
    image = workdir / "validation-conditioning.png"
    image.write_bytes(first["conditioning_image"]["bytes"])
    write_shim(workdir / "shim")
    return {"model": model, "data": data, "batch_data": batch_data, "image": image, "prompt": first["text"]}


def walkthrough(suite: Suite, paths: dict, data: Path | None = None, fast: bool = False) -> list[str]:
    """The walkthrough's command line (train_job's), with xformers where it imports, and with fp16 on CUDA
    (the walkthrough's accelerate config) or, with ``fast``, ``--fast`` (its bf16: a precision flag given
    beside it would win over the preset)."""
    extra = ["--fast"] if fast else ["--mixed_precision=fp16"] if suite.cuda else []
    if suite.report["xformers_error"] is None:
        extra.append("--enable_xformers_memory_efficient_attention")
    job = SimpleNamespace(resolution=suite.plan.resolution, batch_size=4, epochs=3, flags=extra)
    flags = walkthrough_flags(str(paths["model"]), data or paths["data"], Path("OUT"), job)
    return [flag for flag in flags if not flag.startswith("--output_dir=")]


def walkthrough_rows(suite: Suite, paths: dict) -> list[Row]:
    """reference, controlkit, controlkit-fast, controlkit-fast-compile: the walkthrough's job, four ways."""
    flags, plan = walkthrough(suite, paths), suite.plan
    timeout = plan.timeouts["walkthrough"]
    rows = [Row("reference", "reference", flags, "diffusers example", timeout, plan.warmup, reference=True)]
    rows.append(Row("controlkit", "controlkit", flags, "walkthrough flags", timeout, plan.warmup))
    fast = walkthrough(suite, paths, fast=True)
    rows.append(Row("controlkit-fast", "controlkit-fast", fast, "--fast", timeout, plan.warmup))
    compile_flags = ["--fast", "--compile"]
    timeout = plan.timeouts["compile"]
    rows.append(
        Row(
            "controlkit-fast-compile",
            "controlkit-fast-compile",
            [*fast, "--compile"],
            " ".join(compile_flags),
            timeout,
            plan.warmup,
        )
    )
    return rows


def best_batch_row(suite: Suite, paths: dict, size: int) -> Row:
    """controlkit-fast at a larger batch for a fixed number of steps (one latent cache for every size)."""
    plan = suite.plan
    args = [*walkthrough(suite, paths, paths["batch_data"], fast=True), f"--train_batch_size={size}"]
    args.append(f"--max_train_steps={plan.batch_steps}")
    shown = f"--fast --train_batch_size={size}"
    return Row(
        f"best-batch-{size}",
        "best-batch",
        args,
        shown,
        plan.timeouts["best-batch"],
        plan.warmup,
        size,
        cache="cache-best-batch",
    )


def profile_row(suite: Suite, paths: dict) -> Row:
    """controlkit-fast with torch.profiler recording a few steps after the warm-up."""
    plan = suite.plan
    args = [*walkthrough(suite, paths, fast=True), f"--max_train_steps={plan.profile_steps}"]
    shown = f"--fast, torch.profiler over {plan.profile_active} steps"
    return Row(
        "profile",
        "profile",
        args,
        shown,
        plan.timeouts["profile"],
        plan.warmup,
        profile=f"{plan.profile_skip},{plan.profile_active}",
    )


def vram_rows(suite: Suite, paths: dict) -> list[Row]:
    """The --vram presets as gpu_presets plans them (8-bit Adam only where bitsandbytes imports), each
    with one validation inside its steps; the cap itself is set in Suite.run."""
    plan = suite.plan
    presets = {run.name: run for run in plan_runs(suite.cuda, suite.report["bitsandbytes_error"])}
    rows = []
    for name in ("vram8", "vram12", "vram16", "vram24"):
        preset = presets[name]
        args = [
            f"--pretrained_model_name_or_path={paths['model']}",
            f"--dataset_name={paths['data']}",
            f"--resolution={plan.resolution}",
            f"--max_train_steps={plan.vram_steps}",
            f"--checkpointing_steps={plan.vram_steps + 1}",
            "--learning_rate=1e-5",
            "--seed=0",
            "--report_to=none",
            f"--validation_steps={plan.validation_step}",
            f"--validation_image={paths['image']}",
            f"--validation_prompt={paths['prompt']}",
            *preset.flags,
        ]
        if plan.validation_inference_steps:
            args.append(f"--validation_inference_steps={plan.validation_inference_steps}")
        batch = preset.options.get("train_batch_size", 4) * preset.options.get(
            "gradient_accumulation_steps", 1
        )
        cap = f"cap {preset.target_gib - suite.opts.context_gib:g} GiB" if suite.cuda else "no cap (no CUDA)"
        shown = f"{' '.join(preset.flags)}, {cap}, validation at step {plan.validation_step}"
        rows.append(
            Row(name, "vram", args, shown, plan.timeouts["vram"], plan.vram_warmup, batch, preset=preset)
        )
    return rows


def _cell(value, spec: str = ".1f", suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:{spec}}{suffix}" if isinstance(value, float) else f"{value}{suffix}"


def print_tables(report: dict, out: Path) -> None:
    """The rows as one table, the best batch and the profile's top kernels; also into gpu_suite.txt."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=220, record=True)
    title = (
        f"{report.get('card', 'no GPU (CPU)')}: {report['model']}, {report['resolution']} px; "
        f"torch {report['versions']['torch']}, CUDA {report['cuda']}, driver {report.get('driver', '-')}"
    )
    table = Table(title=title)
    columns = ("run", "options", "status", "wall s", "to 1st step s", "steps", "img/s", "x wall", "x img/s")
    columns += ("TFLOP/s", "util", "peak GiB", "need GiB", "fits")
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("run", "options", "status", "fits") else "right"
        )
    for row in report["rows"]:
        target = row.get("target_gib")
        fits = row.get("fits")
        table.add_row(
            row["name"],
            row["options_text"],
            row["status"],
            _cell(row.get("wall_s")),
            _cell(row.get("to_first_step_s")),
            _cell(row.get("steps")),
            _cell(row.get("images_per_s") or row.get("trainer_images_per_s"), ".2f"),
            _cell(row.get("speedup_wall"), ".2f", "x"),
            _cell(row.get("speedup_images_per_s"), ".2f", "x"),
            _cell(row.get("achieved_tflops"), ".3g"),
            _cell(100 * row["utilisation"] if "utilisation" in row else None, ".0f", "%"),
            _cell(row.get("peak_allocated_gib", row.get("peak_rss_gib")), ".2f"),
            _cell(row.get("need_gib"), ".2f"),
            f"{fits} ({target} GB)" if fits and target else "-",
        )
    console.print(table)
    console.print(
        "img/s: steady, from the step bar after the warm-up (vram rows: up to their validation); "
        "x: over the reference (whole-job wall time; steady img/s); peak GiB: torch's max allocated on CUDA, "
        "peak RSS on a CPU; need: max reserved + memory outside torch (CUDA context)"
    )
    best = report.get("best_batch")
    flops = report.get("flops_per_image")
    if best and flops:
        peak = report["peak_bf16_dense_tflops"]
        share = "unknown peak"
        if isinstance(peak, float):
            share = f"{100 * best['utilisation']:.0f}% of the card's dense bf16 peak ({peak:g} TFLOP/s)"
        console.print(
            f"best: {best['row']} (batch {best['batch']}), {best['images_per_s']:.2f} img/s x "
            f"{flops['step_gflops']:.4g} GFLOPs/image (latents cached; {flops['total_gflops']:.4g} with "
            f"the VAE encode) = {best['achieved_tflops']:.3g} TFLOP/s: {share}"
        )
    for row in report["rows"]:
        for note in row.get("notes", []) + ([row["attention"]] if row.get("attention") else []):
            console.print(f"  {row['name']}: {note}")
        for line in row.get("log_tail", []):
            console.print(f"  {row['name']} log: {line[:200]}", markup=False)
    profile = next((row["profile"] for row in report["rows"] if "profile" in row), None)
    if profile:
        kernels = Table(title=f"profile: the top {profile['what']} over {profile['steps']} steps")
        for column in ("name", "ms", "share", "calls"):
            kernels.add_column(column, justify="left" if column == "name" else "right")
        for op in profile["top"]:
            kernels.add_row(
                op["name"][:120], f"{op['ms']:.1f}", f"{100 * op['share']:.1f}%", str(op["calls"])
            )
        console.print(kernels)
        console.print(f"trace: {profile['trace']}")
    (out / "gpu_suite.txt").write_text(console.export_text())


def start_report(opts: argparse.Namespace, plan: Plan) -> dict:
    """The JSON's header: the card, the versions, what imports, the plan; rows are appended as they end."""
    import dataclasses

    import torch

    names = ("torch", "torchvision", "diffusers", "transformers", "accelerate", "datasets", "bitsandbytes")
    names += ("xformers",)
    return {
        "suite": "gpu_suite",
        "tiny": opts.tiny,
        **gpu_info(),
        "cuda": torch.version.cuda,
        "versions": {name: package_version(name) for name in names},
        "python": platform.python_version(),
        "bitsandbytes_error": bitsandbytes_error(),
        "xformers_error": import_error("xformers.ops"),
        "torchvision_error": import_error("torchvision.transforms"),
        "peak_source": PEAK_NOTE,
        "model": plan.model,
        "resolution": plan.resolution,
        "budget_s": opts.budget,
        "plan": dataclasses.asdict(plan),
        "rows": [],
    }


def parse_options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="small model at 64 px on a CPU: proves the plumbing"
    )
    parser.add_argument("--out", type=Path, help="where the results go (default: $OUT, else WORKDIR/out)")
    parser.add_argument(
        "--workdir", type=Path, help="model, data and runs (default: /tmp/controlkit-gpu-suite)"
    )
    parser.add_argument("--budget", type=float, default=480, help="seconds for the whole suite")
    parser.add_argument(
        "--only", nargs="+", choices=GROUPS, metavar="GROUP", help=f"run only these: {GROUPS}"
    )
    parser.add_argument(
        "--context-gib", type=float, default=0.75, help="left out of each vram cap for the context"
    )
    opts = parser.parse_args(argv)
    opts.workdir = opts.workdir or Path("/tmp/controlkit-gpu-suite" + ("-tiny" if opts.tiny else ""))
    opts.out = opts.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else opts.workdir / "out")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(sys.argv[1:] if argv is None else argv)
    plan = TINY_PLAN if opts.tiny else GPU_PLAN
    # controlkit runs from src/ (no install needed): here and in every child.
    src = str(ROOT / "src")
    sys.path.append(src)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), src) if p)
    if error := datasets_location_error():
        sys.exit(error)
    import torch

    cuda = torch.cuda.is_available()  # no CUDA context here: every figure is a child's own
    if not cuda and not opts.tiny:
        sys.exit("no CUDA here: the suite needs a GPU (--tiny runs its CPU stand-in)")
    opts.workdir.mkdir(parents=True, exist_ok=True)
    suite = Suite(opts, plan, cuda, start_report(opts, plan))
    suite.save()
    paths = prepare(suite)
    suite.report["flops_per_image"] = model_flops(paths["model"], plan.resolution)
    suite.report["walkthrough_flags"] = walkthrough(suite, paths)
    suite.save()
    wanted = set(opts.only or GROUPS)
    for row in walkthrough_rows(suite, paths):
        if row.group in wanted:
            suite.run(row)
    if "best-batch" in wanted:
        ended = None
        for size in plan.batch_sizes:
            row = best_batch_row(suite, paths, size)
            if ended:
                suite.skip(row, f"skipped ({ended})")
                continue
            status = suite.run(row)["status"]
            if status != "ok" and not status.startswith("skipped"):
                ended = f"batch {size}: {status}"
    if "profile" in wanted:
        suite.run(profile_row(suite, paths))
    if "vram" in wanted:
        for row in vram_rows(suite, paths):
            suite.run(row)
    suite.save()
    print_tables(suite.report, opts.out)
    print(f"JSON: {opts.out / 'gpu_suite.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
