"""GPU memory presets: images/s and peak GPU memory of `controlkit train` for each --vram preset.

    python benchmarks/gpu_presets.py [--tiny] [--json PATH] [--workdir DIR] [--steps 30] [--warmup 5]
        [--rows 64] [--timeout 170] [--budget 480] [--only NAME ...] [--enforce-limit] [-- FLAG ...]

Runs `controlkit train` once per row of the table, each in its own process so peak memory is that run's:
the --vram 24/16/12/8 presets (src/controlkit/train/memory.py), a plain fp32 baseline, and --vram 8
again without --cache_latents. The model is SD-2.1-base-shaped with random weights
(controlkit.models.sd21_shapes: built once on the GPU, written to the work folder, reused), trained at
512 px, batch 4 (the preset's own batch for --vram 8), on a synthetic dataset it writes (synthetic faces
when OpenCV is importable, drawn ellipses otherwise: shapes and sizes are what count). images/s is the
median of the trainer's own per-step figure in metrics.jsonl after ``--warmup`` steps; peak memory is
read in the child at exit (torch's max allocated and max reserved, and what the process holds outside
torch's allocator: CUDA context, library workspaces). A card fits when reserved + outside <= its size,
"tight" when only allocated + outside does. ``--enforce-limit`` caps each preset run at its size (minus
``--context-gib``) with torch.cuda.set_per_process_memory_fraction, so "fits" becomes a real test.
Where bitsandbytes is missing the presets run with torch's AdamW and the row says so; a missing xformers
falls back to SDPA in the trainer itself. Each run has a timeout, the whole script a time budget: runs
that no longer fit are recorded as skipped. Results go to the table and to JSON, written after every run.

``--tiny`` swaps in controlkit.models.small at 64 px and a few steps, so the plumbing runs on a CPU in
minutes; on a CPU fp16 becomes fp32 and 8-bit Adam is dropped (both need CUDA), each child uses one
thread (OMP_NUM_THREADS=1: a shared CPU is faster so), and peaks are RSS.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from train_speed import read_steps  # noqa: E402

RUNNER = """
import json, os, runpy, sys
out = sys.argv[1]
sys.argv = ["controlkit", *sys.argv[2:]]
import torch
limit = os.environ.get("GPU_PRESETS_LIMIT_GIB")
if limit and torch.cuda.is_available():
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, float(limit) * 2**30 / total))
try:
    runpy.run_module("controlkit", run_name="__main__", alter_sys=True)
finally:
    peak = {}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        free, total = torch.cuda.mem_get_info()
        peak = {
            "allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
            "reserved_mb": torch.cuda.max_memory_reserved() / 2**20,
            "outside_allocator_mb": (total - free - torch.cuda.memory_reserved()) / 2**20,
            "device": torch.cuda.get_device_name(),
        }
    with open(out, "w") as f:
        json.dump(peak, f)
"""
"""Runs `controlkit train` in a child and writes its CUDA peaks at exit, however it exits (but SIGKILL)."""

BUILD_MODEL = """
import sys
path, tiny, device = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
if tiny:
    from controlkit.models.small import SmallModelConfig, write_small_model
    write_small_model(path, SmallModelConfig(sample_size=64))
else:
    from controlkit.models.sd21_shapes import write_sd21_model
    write_sd21_model(path, device=device)
"""

ROW_NAMES = ("vram24", "vram16", "vram12", "vram8", "fp32", "vram8-no-cache")
CARD_SIZES_GIB = (8, 12, 16, 24, 32, 40, 48, 80, 94, 141)
OPTION_NAMES = {
    "mixed_precision": "{}",
    "gradient_checkpointing": "grad-ckpt",
    "use_8bit_adam": "8bit-adam",
    "enable_xformers_memory_efficient_attention": "xformers",
    "set_grads_to_none": "grads-none",
    "cache_latents": "cache-latents",
}


@dataclass
class Run:
    name: str
    target_gib: int | None
    options: dict = field(default_factory=dict)  # TrainConfig values this run sets (preset + changes)
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_runs(cuda: bool, bnb_error: str | None) -> list[Run]:
    """The presets, the fp32 baseline, then --vram 8 without the latent cache (skipped first if late)."""
    from controlkit.train.memory import VRAM_PRESETS

    runs = [Run(f"vram{gb}", gb, dict(VRAM_PRESETS[gb]), [f"--vram={gb}"]) for gb in (24, 16, 12, 8)]
    runs.append(Run("fp32", None, {"mixed_precision": "no"}, ["--mixed_precision=no"]))
    no_cache = {**VRAM_PRESETS[8], "cache_latents": False}
    runs.append(Run("vram8-no-cache", 8, no_cache, ["--vram=8", "--no-cache_latents"]))
    for run in runs:
        if not cuda and run.options.get("mixed_precision") == "fp16":
            run.options["mixed_precision"] = "no"
            run.flags.append("--mixed_precision=no")
            run.notes.append("no CUDA: fp32 instead of fp16")
        if run.options.get("use_8bit_adam") and (not cuda or bnb_error):
            run.options["use_8bit_adam"] = False
            run.flags.append("--no-use_8bit_adam")
            run.notes.append("AdamW instead of 8-bit Adam: " + ("no CUDA" if not cuda else bnb_error))
    return runs


def describe_options(options: dict) -> str:
    words = [OPTION_NAMES[k].format(v) for k, v in options.items() if k in OPTION_NAMES and v]
    words = ["fp32" if word == "no" else word for word in words]
    batch, accumulation = options.get("train_batch_size", 4), options.get("gradient_accumulation_steps", 1)
    return " ".join([*words, f"bs{batch}x{accumulation}"])


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def import_error(module: str) -> str | None:
    """None when ``module`` imports (in a child, so this process never touches CUDA); else why not."""
    package = module.split(".")[0]
    if importlib.util.find_spec(package) is None:
        return f"{package} is not installed"
    probe = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120
    )
    if probe.returncode == 0:
        return None
    lines = [line for line in probe.stderr.splitlines() if line.strip()]
    return f"{package} does not import: " + (lines[-1] if lines else f"exit {probe.returncode}")


def bitsandbytes_error() -> str | None:
    return import_error("bitsandbytes.optim")


def datasets_location_error() -> str | None:
    """dill (datasets' hasher) pickles by value, and fails on, any module neither under sys.prefix nor in
    a path with site-packages in it: where the wheels went elsewhere, say how to install them."""
    datasets_file = importlib.util.find_spec("datasets").origin
    if "site-packages" not in datasets_file and not datasets_file.startswith(sys.prefix):
        return f"datasets is at {datasets_file}; install the wheels with --target /tmp/site-packages"
    return None


def gpu_info() -> dict:
    """Card name, memory and driver from nvidia-smi (no CUDA context in this process)."""
    if shutil.which("nvidia-smi") is None:
        return {}
    query = "name,memory.total,driver_version"
    smi = subprocess.run(
        ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
    )
    if smi.returncode != 0 or not smi.stdout.strip():
        return {}
    name, memory, driver = (part.strip() for part in smi.stdout.splitlines()[0].split(","))
    return {"card": name, "memory_gib": round(float(memory) / 1024, 1), "driver": driver}


def write_model(path: Path, tiny: bool, device: str, timeout: float) -> float:
    """Build the model once (a child, so its GPU memory is freed) unless the folder is already there."""
    if (path / "model_index.json").is_file():
        return 0.0
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", BUILD_MODEL, str(partial), "1" if tiny else "0", device],
        check=True,
        timeout=timeout,
    )
    partial.rename(path)
    return time.perf_counter() - start


def write_dataset(folder: Path, rows: int, size: int) -> str:
    """A `datasets` folder (image, conditioning_image, text); synthetic faces if OpenCV is there."""
    import datasets

    if (folder / "dataset_info.json").is_file():
        return json.loads((folder / "kind.json").read_text())["kind"]
    try:
        import cv2  # noqa: F401  (synthetic faces draw with OpenCV)

        kind, columns = "synthetic-faces", _face_rows(rows, size)
    except ImportError:
        kind, columns = "ellipses (no OpenCV for synthetic faces)", _ellipse_rows(rows, size)
    features = datasets.Features(
        {"image": datasets.Image(), "conditioning_image": datasets.Image(), "text": datasets.Value("string")}
    )
    datasets.Dataset.from_dict(columns, features=features).save_to_disk(str(folder))
    (folder / "kind.json").write_text(json.dumps({"kind": kind}))
    return kind


def _face_rows(rows: int, size: int) -> dict[str, list]:
    """Synthetic faces, conditioned on their landmarks drawn as the face-landmarks condition draws them."""
    from controlkit.conditions.face_landmarks import draw_landmarks
    from controlkit.data.synthetic_faces import describe, synthetic_faces

    columns: dict[str, list] = {"image": [], "conditioning_image": [], "text": []}
    for face in synthetic_faces(rows, seed=0, size=size):
        columns["image"].append(face.image)
        columns["conditioning_image"].append(draw_landmarks(face.landmarks[None], (size, size)))
        columns["text"].append(describe(face.attributes))
    return columns


def _ellipse_rows(rows: int, size: int) -> dict[str, list]:
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    columns: dict[str, list] = {"image": [], "conditioning_image": [], "text": []}
    for _ in range(rows):
        x0, x1 = sorted(rng.integers(0, size, 2).tolist())
        y0, y1 = sorted(rng.integers(0, size, 2).tolist())
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
        ImageDraw.Draw(image).ellipse([x0, y0, x1 + 1, y1 + 1], fill=colour)
        condition = Image.new("RGB", (size, size))
        ImageDraw.Draw(condition).ellipse([x0, y0, x1 + 1, y1 + 1], outline="white", width=2)
        columns["image"].append(image)
        columns["conditioning_image"].append(condition)
        columns["text"].append(f"an ellipse of colour {colour}")
    return columns


def run_child(
    command: list[str], env: dict, log_path: Path, timeout: float, stamps: dict[int, float] | None = None
) -> tuple[int | None, float]:
    """Run to the end or to the timeout (then Ctrl-C, so the child still writes its peaks; then kill).
    With ``stamps``, also note when each step of the child's step bar first shows (train_speed.read_steps)."""
    start = time.perf_counter()
    with log_path.open("wb") as log:
        child = subprocess.Popen(
            command,
            stdout=log if stamps is None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        reader = None
        if stamps is not None:
            reader = threading.Thread(target=read_steps, args=(child, log, stamps))
            reader.start()
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGINT)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            code = None
        wall = time.perf_counter() - start
        if reader is not None:
            reader.join()
        return code, wall


def summarise(run: Run, code: int | None, wall: float, out: Path, log_path: Path, opts) -> dict:
    """One row: status, steady images/s, peaks, and whether the target card fits."""
    records = []
    if (out / "metrics.jsonl").is_file():
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    steps = [r for r in records if "images_per_s" in r]
    steady = [r["images_per_s"] for r in steps if r["step"] > opts.warmup and r["images_per_s"]]
    peak_path = out.parent / f"{run.name}-peak.json"
    peak = json.loads(peak_path.read_text()) if peak_path.is_file() else {}
    log = log_path.read_text(errors="replace")
    if code == 0:
        status = "ok"
    elif "OutOfMemoryError" in log or "out of memory" in log:
        status = "out of memory"
    elif code is None:
        status = f"timeout after {wall:.0f} s"
    else:
        status = f"failed (exit {code})"
    row = {
        "name": run.name,
        "target_gib": run.target_gib,
        "options": run.options,
        "options_text": describe_options(run.options),
        "flags": run.flags + opts.flags,
        "notes": list(run.notes),
        "status": status,
        "steps_done": len(steps),
        "images_per_s": statistics.median(steady) if steady else None,
        "wall_s": round(wall, 1),
        "device": peak.get("device", "cpu"),
        "attention": "sdpa (xformers missing)" if "xformers is not installed" in log else None,
    }
    if "device" in peak:
        allocated, reserved = peak["allocated_mb"] / 1024, peak["reserved_mb"] / 1024
        outside = peak["outside_allocator_mb"] / 1024
        row.update(
            peak_allocated_gib=allocated,
            peak_reserved_gib=reserved,
            outside_allocator_gib=outside,
            need_gib=reserved + outside,
            smallest_card_gib=next((s for s in CARD_SIZES_GIB if reserved + outside <= s), None),
        )
        if run.target_gib is not None:
            if reserved + outside <= run.target_gib:
                row["fits"] = "yes"
            elif allocated + outside <= run.target_gib:
                row["fits"] = "tight"
            else:
                row["fits"] = "no"
    elif steps:  # on a CPU the trainer logs the process's peak RSS
        row["peak_rss_gib"] = max(r["peak_memory_mb"] for r in steps) / 1024
    if status != "ok":
        row["log_tail"] = [line for line in log.splitlines() if line.strip()][-6:]
    if opts.enforce_limit and run.target_gib is not None and row.get("device", "cpu") != "cpu":
        row["capped_at_gib"] = run.target_gib - opts.context_gib
    return row


def _cell(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_table(rows: list[dict]) -> None:
    header = (
        "run",
        "options",
        "img/s",
        "peak GiB",
        "need GiB",
        "fits target?",
        "smallest card",
        "status",
    )
    table = [header]
    for r in rows:
        memory = r.get("peak_allocated_gib", r.get("peak_rss_gib"))
        target = f"{r['fits']} ({r['target_gib']} GB)" if r.get("fits") else "-"
        smallest = f"{r['smallest_card_gib']} GB" if r.get("smallest_card_gib") else "-"
        table.append(
            (
                r["name"],
                r["options_text"],
                _cell(r.get("images_per_s")),
                _cell(memory),
                _cell(r.get("need_gib")),
                target,
                smallest,
                r["status"],
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for n, line in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * width for width in widths))
    print("peak GiB: torch's max allocated on CUDA, peak RSS on a CPU; need: max reserved + outside torch")
    for r in rows:
        for note in r["notes"] + ([r["attention"]] if r.get("attention") else []):
            print(f"  {r['name']}: {note}")
        for line in r.get("log_tail", []):
            print(f"  {r['name']} log: {line[:200]}")


def parse_options(argv: list[str]) -> argparse.Namespace:
    """The script's options; flags after ``--`` go to every training run (``opts.flags``)."""
    flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="small model at 64 px: proves the plumbing on a CPU"
    )
    parser.add_argument("--json", type=Path, help="where the JSON goes (default: $OUT/gpu_presets.json)")
    parser.add_argument(
        "--workdir", type=Path, help="model, data and runs (default: /tmp/controlkit-gpu-presets)"
    )
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: 30; --tiny: 5)")
    parser.add_argument("--warmup", type=int, help="steps left out of images/s (default: 5; --tiny: 2)")
    parser.add_argument("--rows", type=int, help="dataset rows (default: 64; --tiny: 8)")
    parser.add_argument("--resolution", type=int, help="pixels (default: 512; --tiny: 64)")
    parser.add_argument("--timeout", type=float, default=170, help="seconds per training run")
    parser.add_argument("--budget", type=float, default=480, help="seconds for the whole script")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these rows (e.g. vram8 fp32)")
    parser.add_argument("--enforce-limit", action="store_true", help="cap each preset run at its card size")
    parser.add_argument("--context-gib", type=float, default=0.75, help="left out of the cap for the context")
    opts = parser.parse_args(argv)
    opts.flags = flags
    defaults = (5, 2, 8, 64) if opts.tiny else (30, 5, 64, 512)
    for name, default in zip(("steps", "warmup", "rows", "resolution"), defaults, strict=True):
        if getattr(opts, name) is None:
            setattr(opts, name, default)
    if opts.warmup >= opts.steps - 1:
        parser.error("--steps must exceed --warmup by at least 2")
    unknown = sorted(set(opts.only or []) - set(ROW_NAMES))
    if unknown:
        parser.error(f"unknown --only names {unknown}; choose from {list(ROW_NAMES)}")
    return opts


def start_report(opts: argparse.Namespace, cuda: bool, bnb_error: str | None) -> dict:
    """The JSON's header: the card, the versions, the settings; the runs are appended as they end."""
    import torch

    names = ("torch", "diffusers", "transformers", "accelerate", "datasets", "bitsandbytes", "xformers")
    return {
        "tiny": opts.tiny,
        **gpu_info(),
        "cuda": torch.version.cuda,
        "versions": {name: package_version(name) for name in names},
        "python": platform.python_version(),
        "bitsandbytes_error": bnb_error,
        "xformers_installed": importlib.util.find_spec("xformers") is not None,
        "model": "controlkit.models.small (64 px)" if opts.tiny else "SD-2.1-base shapes, random weights",
        "resolution": opts.resolution,
        "steps": opts.steps,
        "warmup": opts.warmup,
        "extra_flags": opts.flags,
        "runs": [],
    }


def train_once(run: Run, opts: argparse.Namespace, paths: dict[str, Path], env: dict, left: float) -> dict:
    """One row of the table: `controlkit train` in a child with this run's flags, then its figures."""
    workdir, out = paths["workdir"], paths["workdir"] / "runs" / run.name
    shutil.rmtree(out, ignore_errors=True)
    (out.parent / f"{run.name}-peak.json").unlink(missing_ok=True)
    out.mkdir(parents=True)
    args = [
        "train",
        f"--pretrained_model_name_or_path={paths['model']}",
        f"--dataset_name={paths['data']}",
        f"--output_dir={out}",
        f"--resolution={opts.resolution}",
        f"--max_train_steps={opts.steps}",
        f"--checkpointing_steps={opts.steps + 1}",
        f"--latents_cache_dir={workdir / 'cache' / run.name}",
        "--learning_rate=1e-5",
        "--seed=0",
        "--report_to=none",
        *run.flags,
        *opts.flags,
    ]
    shutil.rmtree(workdir / "cache" / run.name, ignore_errors=True)
    run_env = dict(env)
    if opts.enforce_limit and run.target_gib is not None:
        run_env["GPU_PRESETS_LIMIT_GIB"] = str(run.target_gib - opts.context_gib)
    print(f"{run.name}: {describe_options(run.options)} ...", file=sys.stderr, flush=True)
    command = [sys.executable, "-c", RUNNER, str(out.parent / f"{run.name}-peak.json"), *args]
    code, wall = run_child(command, run_env, out.parent / f"{run.name}.log", min(opts.timeout, left))
    return summarise(run, code, wall, out, out.parent / f"{run.name}.log", opts)


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    # controlkit runs from src/ (no install needed): here and in every child this script starts.
    src = str(Path(__file__).resolve().parents[1] / "src")
    sys.path.append(src)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), src) if p)
    workdir = opts.workdir or Path("/tmp/controlkit-gpu-presets")
    workdir.mkdir(parents=True, exist_ok=True)
    json_path = opts.json or (Path(os.environ["OUT"]) / "gpu_presets.json" if os.environ.get("OUT") else None)

    if error := datasets_location_error():
        sys.exit(error)
    import torch

    cuda = torch.cuda.is_available()
    bnb_error = bitsandbytes_error()
    report = start_report(opts, cuda, bnb_error)

    def save() -> None:
        report["total_s"] = round(time.perf_counter() - started, 1)
        seen = [row["device"] for row in report["runs"] if row.get("device", "cpu") != "cpu"]
        if seen and "card" not in report:  # no nvidia-smi: the name torch gave in a run
            report["card"] = seen[0]
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(report, indent=2) + "\n")

    model = workdir / ("model-tiny" if opts.tiny else "model-sd21-base-shapes")
    print(f"model: {model} ...", file=sys.stderr, flush=True)
    report["model_build_s"] = round(write_model(model, opts.tiny, "cuda" if cuda else "cpu", opts.budget), 1)
    data = workdir / f"data-{opts.rows}x{opts.resolution}"
    report["data"] = {
        "path": str(data),
        "rows": opts.rows,
        "kind": write_dataset(data, opts.rows, opts.resolution),
    }
    save()

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if not cuda:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    paths = {"workdir": workdir, "model": model, "data": data}
    for run in plan_runs(cuda, bnb_error):
        if opts.only and run.name not in opts.only:
            continue
        left = opts.budget - (time.perf_counter() - started)
        if left < 45:
            report["runs"].append(
                {
                    "name": run.name,
                    "options_text": describe_options(run.options),
                    "status": "skipped (time budget)",
                    "notes": run.notes,
                    "target_gib": run.target_gib,
                }
            )
            save()
            continue
        row = train_once(run, opts, paths, env, left)
        report["runs"].append(row)
        print(
            f"{run.name}: {row['status']}, {_cell(row.get('images_per_s'))} img/s",
            file=sys.stderr,
            flush=True,
        )
        save()

    title = "tiny stand-in (plumbing only, not GPU figures)" if opts.tiny else "SD-2.1-base shapes"
    print(
        f"\n{report.get('card', 'no GPU (CPU)')}: {title}, {opts.resolution} px, {opts.steps} steps "
        f"(images/s: median after {opts.warmup}); torch {report['versions']['torch']}, CUDA {report['cuda']}"
    )
    print_table(report["runs"])
    save()
    if json_path is not None:
        print(f"JSON: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
