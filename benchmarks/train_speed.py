"""Training speed: steady-state images/s and peak memory of `controlkit train` and the diffusers reference.

    python benchmarks/train_speed.py [--model PATH] [--resolution 64] [--batch-size 4] [--steps 20]
        [--warmup 5] [--repeats 1] [--threads N] [--reference PATH/train_controlnet.py]
        [--reference-env KEY=VALUE ...] [--json OUT.json] [--workdir DIR] [-- FLAG ...]

Without ``--model`` it writes a small SD-shaped model (controlkit.models.small); it always writes a
synthetic parquet dataset (image, conditioning_image, text) of ``batch-size x steps`` rows, which both
trainers read with ``--dataset_name``. Flags after ``--`` go to both trainers (``--mixed_precision fp16``,
``--gradient_checkpointing``, ...). Each run is a subprocess; with ``--reference`` (the diffusers example
``examples/controlnet/train_controlnet.py`` from a checkout outside this repo) the runs alternate and the
ratio controlkit / reference is reported. The reference imports torchvision; ``--reference-env
PYTHONPATH=DIR`` adds an environment variable to the reference run only.

Both trainers are timed the same way: the child's tqdm step bar is forced to print every step
(``TQDM_MININTERVAL=0``), each step is stamped with the wall clock and the child's CPU time (/proc) as
it arrives, and images/s and images per CPU-second are measured from the first step after ``--warmup``
to the last, so model loading, data preparation, the first slow steps and the final save are left out.
On a shared machine images per CPU-second is the steadier figure; ``--threads 1`` keeps BLAS/OpenMP
threads from fighting other processes (on a loaded 2-core machine that is several times faster).
Peak memory is read inside the child at exit: ``ru_maxrss`` (CPU RSS) and,
when CUDA was used, ``torch.cuda.max_memory_allocated``. With ``--repeats N`` the median is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

RUNNER = """
import json, resource, runpy, sys
out, kind, target = sys.argv[1:4]
sys.argv = [target, *sys.argv[4:]]
try:
    if kind == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
finally:
    peak = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        peak["device"] = torch.cuda.get_device_name()
    with open(out, "w") as f:
        json.dump(peak, f)
"""
"""Runs a trainer in a child process and writes its peak memory at exit, whichever way it exits."""

STEP_BAR = re.compile(r"^\s*steps:?\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\b", re.IGNORECASE)


def write_dataset(folder: Path, rows: int, resolution: int, seed: int = 0) -> Path:
    """A parquet dataset of random ellipses (image) and their outlines (conditioning image), with captions."""
    import datasets
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images, conditions, texts = [], [], []
    for _ in range(rows):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = sorted(rng.integers(0, resolution, 2).tolist()) + sorted(
            rng.integers(0, resolution, 2).tolist()
        )
        box = [box[0], box[2], box[1] + 1, box[3] + 1]
        image = Image.new("RGB", (resolution, resolution), tuple(int(c) for c in rng.integers(0, 256, 3)))
        ImageDraw.Draw(image).ellipse(box, fill=colour)
        condition = Image.new("RGB", (resolution, resolution))
        ImageDraw.Draw(condition).ellipse(box, outline="white", width=2)
        images.append(image)
        conditions.append(condition)
        texts.append(f"an ellipse of colour {colour}")
    features = datasets.Features(
        {"image": datasets.Image(), "conditioning_image": datasets.Image(), "text": datasets.Value("string")}
    )
    dataset = datasets.Dataset.from_dict(
        {"image": images, "conditioning_image": conditions, "text": texts}, features=features
    )
    folder.mkdir(parents=True, exist_ok=True)
    dataset.to_parquet(str(folder / "train-00000-of-00001.parquet"))
    return folder


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) a process has used so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_steps(
    child: subprocess.Popen, log, stamps: dict[int, object], total: int | None = None, cpu: bool = False
) -> None:
    """Copy the child's output to ``log``; stamp the first sighting of each step of its step bar (of
    ``total`` steps, when given) with the wall clock, and with ``cpu`` the child's CPU time too."""
    pending = b""
    while chunk := os.read(child.stdout.fileno(), 65536):
        now = (time.perf_counter(), cpu_seconds(child.pid)) if cpu else time.perf_counter()
        log.write(chunk)
        pending += chunk
        *segments, pending = re.split(rb"[\r\n]", pending)
        for segment in segments:
            match = STEP_BAR.match(segment.decode("utf-8", "replace"))
            if match and (total is None or int(match.group(2)) == total):
                stamps.setdefault(int(match.group(1)), now)


def run_trainer(name: str, kind: str, target: str, args: list[str], opts: argparse.Namespace) -> dict:
    """Run one trainer to the end; its step time stamps, wall time and peak memory."""
    peak_path, log_path = opts.workdir / f"{name}-peak.json", opts.workdir / f"{name}.log"
    env = {**os.environ, "TQDM_MININTERVAL": "0", "TQDM_MINITERS": "1", "PYTHONUNBUFFERED": "1"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if opts.threads:
        env.update({var: str(opts.threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    if name == "reference":
        env.update(item.split("=", 1) for item in opts.reference_env)
    command = [sys.executable, "-c", RUNNER, str(peak_path), kind, target, *args]
    stamps: dict[int, tuple] = {}
    start = time.perf_counter()
    with log_path.open("wb") as log:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        reader = threading.Thread(target=read_steps, args=(child, log, stamps, opts.steps, True))
        reader.start()
        code = child.wait()
        reader.join()
    wall = time.perf_counter() - start
    if code != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        sys.exit(f"{name} failed (exit {code}); the end of {log_path}:\n" + "\n".join(tail))
    return {"stamps": stamps, "wall_s": wall, **json.loads(peak_path.read_text())}


def steady_rates(stamps: dict[int, tuple], warmup: int, batch_size: int) -> tuple[float, float | None]:
    """Images per wall second and per CPU second, from the first step after the warm-up to the last seen.

    Per CPU second is what the trainer costs whatever else the machine runs; per wall second is what a
    user waits, and moves with the machine's load.
    """
    counted = sorted(step for step in stamps if step >= warmup)
    if len(counted) < 2:
        sys.exit(f"too few steps after the warm-up of {warmup} steps to time (saw {sorted(stamps)})")
    (first_wall, first_cpu), (last_wall, last_cpu) = stamps[counted[0]], stamps[counted[-1]]
    images = (counted[-1] - counted[0]) * batch_size
    per_cpu = images / (last_cpu - first_cpu) if first_cpu is not None and last_cpu > first_cpu else None
    return images / (last_wall - first_wall), per_cpu


def controlkit_logged_rate(output_dir: Path, warmup: int) -> float | None:
    """The median images/s controlkit itself wrote to metrics.jsonl after the warm-up (a cross-check)."""
    path = output_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line]
    rates = [r["images_per_s"] for r in records if r.get("images_per_s") and r["step"] > warmup]
    return statistics.median(rates) if rates else None


def trainer_args(model: str, data: Path, output_dir: Path, opts: argparse.Namespace) -> list[str]:
    return [
        f"--pretrained_model_name_or_path={model}",
        f"--dataset_name={data}",
        f"--output_dir={output_dir}",
        f"--resolution={opts.resolution}",
        f"--train_batch_size={opts.batch_size}",
        f"--max_train_steps={opts.steps}",
        f"--checkpointing_steps={opts.steps + 1}",
        "--learning_rate=1e-5",
        "--seed=0",
        *opts.flags,
    ]


def measure(trainer: tuple, model: str, data: Path, opts: argparse.Namespace, rep: int) -> dict:
    name, kind, target, prefix = trainer
    output_dir = opts.workdir / f"{name}-out-{rep}"
    args = [*prefix, *trainer_args(model, data, output_dir, opts)]
    run = run_trainer(name, kind, target, args, opts)
    per_wall, per_cpu = steady_rates(run["stamps"], opts.warmup, opts.batch_size)
    result = {
        "images_per_s": per_wall,
        "images_per_cpu_s": per_cpu,
        "wall_s": run["wall_s"],
        "peak_rss_mb": run["rss_mb"],
        "peak_cuda_mb": run.get("cuda_mb"),
        "device": run.get("device", "cpu"),
    }
    if name == "controlkit":
        result["logged_images_per_s"] = controlkit_logged_rate(output_dir, opts.warmup)
    return result


def median_of(runs: list[dict]) -> dict:
    summary = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float):
            values = [run[key] for run in runs if run.get(key) is not None]
            summary[key] = statistics.median(values) if values else None
    for key in ("images_per_s", "images_per_cpu_s"):
        summary[f"{key}_all"] = [run[key] for run in runs]
    return summary


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(results: dict[str, dict], ratio: dict | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ControlNet training speed (steady state, after warm-up; medians)")
    columns = ("trainer", "device", "images/s", "images/CPU-s", "peak RSS MB", "peak CUDA MB", "wall s")
    for column in columns:
        table.add_column(column, justify="left" if column in ("trainer", "device") else "right")
    for name, r in results.items():
        table.add_row(
            name,
            r["device"],
            _cell(r["images_per_s"], 2),
            _cell(r["images_per_cpu_s"], 2),
            _cell(r["peak_rss_mb"], 0),
            _cell(r["peak_cuda_mb"], 0),
            _cell(r["wall_s"], 1),
        )
    if ratio:
        table.add_row(
            "ratio ck/ref",
            "",
            _cell(ratio.get("images_per_s"), 2),
            _cell(ratio.get("images_per_cpu_s"), 2),
            _cell(ratio.get("peak_rss_mb"), 2),
            _cell(ratio.get("peak_cuda_mb"), 2),
            "",
        )
    Console(width=120).print(table)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="base model folder or Hub id (default: write a small model)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each trainer; the median is reported")
    parser.add_argument("--threads", type=int, help="CPU threads per trainer (OMP_NUM_THREADS)")
    parser.add_argument("--reference", type=Path, help="the diffusers example train_controlnet.py")
    parser.add_argument(
        "--reference-env", action="append", default=[], metavar="KEY=VALUE", help="for the reference run only"
    )
    parser.add_argument("--workdir", type=Path, help="where data, models and runs go (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    opts = parser.parse_args(argv)
    opts.flags = flags
    if opts.warmup >= opts.steps - 1:
        parser.error("--steps must exceed --warmup by at least 2")
    if opts.workdir is None:
        import tempfile

        opts.workdir = Path(tempfile.mkdtemp(prefix="controlkit-train-speed-"))
    opts.workdir.mkdir(parents=True, exist_ok=True)

    model = opts.model
    if model is None:
        from controlkit.models.small import SmallModelConfig, write_small_model

        model = str(write_small_model(opts.workdir / "model", SmallModelConfig(sample_size=opts.resolution)))
    data = write_dataset(opts.workdir / "data", opts.batch_size * opts.steps, opts.resolution)

    trainers = [("controlkit", "module", "controlkit", ["train"])]
    if opts.reference is not None:
        if not opts.reference.is_file():
            parser.error(f"--reference {opts.reference} is not a file")
        trainers.append(("reference", "path", str(opts.reference.resolve()), []))
    runs: dict[str, list[dict]] = {trainer[0]: [] for trainer in trainers}
    for rep in range(opts.repeats):
        for trainer in trainers:
            print(f"[{rep + 1}/{opts.repeats}] {trainer[0]} ...", file=sys.stderr, flush=True)
            runs[trainer[0]].append(measure(trainer, model, data, opts, rep))
    results = {name: median_of(found) for name, found in runs.items()}
    ratio = None
    if "reference" in results:
        ck, ref = results["controlkit"], results["reference"]
        # Speeds: the median of each repeat's ratio (runs alternate, so a pair shares the machine's load).
        ratio = {}
        for key in ("images_per_s", "images_per_cpu_s"):
            pairs = [(c[key], r[key]) for c, r in zip(runs["controlkit"], runs["reference"], strict=True)]
            if all(c and r for c, r in pairs):
                ratio[f"{key}_per_repeat"] = [c / r for c, r in pairs]
                ratio[key] = statistics.median(ratio[f"{key}_per_repeat"])
        ratio.update(
            {
                key: ck[key] / ref[key]
                for key in ("peak_rss_mb", "peak_cuda_mb")
                if ck.get(key) and ref.get(key)
            }
        )
    print_table(results, ratio)
    report = {
        "model": model,
        "resolution": opts.resolution,
        "batch_size": opts.batch_size,
        "steps": opts.steps,
        "warmup": opts.warmup,
        "repeats": opts.repeats,
        "flags": opts.flags,
        "threads": opts.threads,
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "results": results,
        "ratio_controlkit_over_reference": ratio,
    }
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
