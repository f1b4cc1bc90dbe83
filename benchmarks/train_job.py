"""The whole training job, start to exit: `controlkit train` (plain and fast) vs the diffusers reference.

    python benchmarks/train_job.py --reference PATH/train_controlnet.py [--model sd21-small|small|PATH]
        [--resolution 256] [--images 48] [--epochs 3] [--batch-size 4] [--repeats 3] [--threads N]
        [--fast FLAGS] [--only NAME ...] [--workdir DIR] [--json OUT.json] [-- FLAG ...]

The walkthrough's job in miniature: its command line (learning rate 1e-5, batch 4, 3 epochs, checkpoints and
validation every 5000 steps, so none happen, a TensorBoard log) on a small model with SD 2.1-base's blocks
and width ratios (``sd21-small``: ``controlkit.models.sd21_shapes`` with every width divided by 4, so at
256 px the VAE / text encoder / UNet / ControlNet split of a step is SD's at 512 px) and a parquet dataset
of ``--images`` rows. Each row of the table is one trainer with one set of flags:

- ``reference``: the diffusers example trainer with the walkthrough's flags;
- ``reference-bf16``: the same plus ``--mixed_precision bf16`` (the reference given the mixed precision
  that ``--fast`` uses, so the fast row can also be compared like for like);
- ``controlkit``: `controlkit train` with the same flags;
- ``controlkit-fast``: the same plus ``--fast`` (default: the flags the README recommends for speed).

Runs alternate (the order rotates every repeat, so each pair shares the machine's load) and every run
starts cold: its own output folder and its own ``XDG_CACHE_HOME`` (so the datasets cache, controlkit's
latent cache and torch's compile cache start empty: the conversion of the parquet files, the latent
caching and any compilation are part of the time). Each run's wall time (process start to exit), its CPU
time (its own and its children's), and from its step bar the time to the first step, the steps and the
end are recorded; the table shows medians and each controlkit row's speed-up over the reference (the
median of the per-repeat ratios). The reference imports torchvision, which does not install beside
this project's CPU torch: its run gets the five transforms it uses from ``torchvision_shim.py``, written
into the work folder and importable by that run only. Flags after ``--`` go to every trainer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from torchvision_shim import write_shim  # noqa: E402
from train_speed import read_steps, write_dataset  # noqa: E402

FAST_FLAGS = "--fast"
"""What the README recommends for speed (a preset; see ``controlkit train --help``)."""

RUNNER = """
import json, resource, runpy, sys
out, kind, target, shim = sys.argv[1:5]
sys.argv = [target, *sys.argv[5:]]
if shim:
    # transformers and diffusers look for torchvision once and remember the answer: let them find none
    # (as is the case), then make the stand-in importable for the reference's own import.
    from transformers.utils import import_utils
    import diffusers.utils.import_utils
    import_utils.is_torchvision_available()
    sys.path.insert(0, shim)
try:
    if kind == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
finally:
    with open(out, "w") as f:
        json.dump({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, f)
"""
"""Runs a trainer in a child process; writes its peak memory at exit."""


def write_model(kind: str, folder: Path, resolution: int) -> str:
    """The base model folder (written once per work folder), or the path given."""
    if kind not in ("sd21-small", "small"):
        return kind
    if not (folder / "model_index.json").is_file():
        if kind == "small":
            from controlkit.models.small import SmallModelConfig, write_small_model

            write_small_model(folder, SmallModelConfig(sample_size=resolution))
        else:
            from controlkit.models.sd21_shapes import write_sd21_model

            write_sd21_model(folder, divisor=4)
    return str(folder)


def walkthrough_flags(model: str, data: Path, output_dir: Path, opts: argparse.Namespace) -> list[str]:
    """The walkthrough's command line in miniature (no Hub or wandb here; ``opts.flags`` adds the rest)."""
    return [
        f"--pretrained_model_name_or_path={model}",
        f"--dataset_name={data}",
        f"--output_dir={output_dir}",
        f"--resolution={opts.resolution}",
        "--learning_rate=1e-5",
        f"--train_batch_size={opts.batch_size}",
        f"--num_train_epochs={opts.epochs}",
        "--tracker_project_name=controlnet",
        "--checkpointing_steps=5000",
        "--validation_steps=5000",
        "--seed=0",
        *opts.flags,
    ]


def run_job(name: str, trainer: tuple, extra: list[str], model: str, data: Path, opts, rep: int) -> dict:
    """One cold run of a trainer, start to exit: wall and CPU seconds, the phases, peak memory."""
    kind, target, prefix = trainer
    folder = opts.workdir / "runs" / f"{name}-{rep}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    args = [*prefix, *walkthrough_flags(model, data, folder / "out", opts), *extra]
    env = {**os.environ, "TQDM_MININTERVAL": "0", "TQDM_MINITERS": "1", "PYTHONUNBUFFERED": "1"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cache = folder / "cache"
    env.update(XDG_CACHE_HOME=str(cache), TORCHINDUCTOR_CACHE_DIR=str(cache / "inductor"))
    for var in ("HF_HOME", "HF_DATASETS_CACHE"):
        env.pop(var, None)
    if opts.threads:
        env.update({var: str(opts.threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    shim = str(opts.workdir / "shim") if name.startswith("reference") else ""
    command = [sys.executable, "-c", RUNNER, str(folder / "peak.json"), kind, target, shim, *args]
    stamps: dict[int, float] = {}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with (folder / "log.txt").open("wb") as log:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        reader = threading.Thread(target=read_steps, args=(child, log, stamps))
        reader.start()
        code = child.wait()
        reader.join()
    end = time.perf_counter()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        tail = (folder / "log.txt").read_text(errors="replace").splitlines()[-15:]
        sys.exit(f"{name} failed (exit {code}); the end of {folder / 'log.txt'}:\n" + "\n".join(tail))
    steps = sorted(s for s in stamps if s > 0)
    first, last = (stamps[steps[0]], stamps[steps[-1]]) if steps else (end, end)
    return {
        "wall_s": end - start,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "to_first_step_s": first - start,
        "steps_s": last - first,
        "after_last_step_s": end - last,
        "steps": steps[-1] if steps else 0,
        "peak_rss_mb": json.loads((folder / "peak.json").read_text())["rss_mb"],
    }


def summarize(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if isinstance(runs[0][k], float)]
    summary = {k: statistics.median(r[k] for r in runs) for k in keys}
    summary["steps"] = runs[0]["steps"]
    summary["wall_s_all"] = [r["wall_s"] for r in runs]
    return summary


def speedups(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Each controlkit row over each reference row: the median of the per-repeat wall-time ratios."""
    out: dict[str, dict] = {}
    baselines = [name for name in runs if name.startswith("reference")]
    for name, found in runs.items():
        if name in baselines:
            continue
        for baseline in baselines:
            pairs = list(zip(runs[baseline], found, strict=False))
            per_repeat = [ref["wall_s"] / run["wall_s"] for ref, run in pairs]
            cpu = [ref["cpu_s"] / run["cpu_s"] for ref, run in pairs]
            out.setdefault(name, {})[baseline] = {
                "wall": statistics.median(per_repeat),
                "wall_per_repeat": per_repeat,
                "cpu": statistics.median(cpu),
            }
    return out


def print_table(results: dict[str, dict], ratios: dict[str, dict], flags: dict[str, list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Whole training job, process start to exit (medians)")
    columns = ("run", "flags", "wall s", "CPU s", "to 1st step s", "steps s", "end s", "peak RSS MB")
    baselines = [name for name in results if name.startswith("reference")]
    columns += tuple(f"x {baseline}" for baseline in baselines)
    for column in columns:
        table.add_column(column, justify="left" if column in ("run", "flags") else "right")
    for name, r in results.items():
        ratio = ratios.get(name, {})
        table.add_row(
            name,
            " ".join(flags[name]) or "(walkthrough)",
            f"{r['wall_s']:.1f}",
            f"{r['cpu_s']:.1f}",
            f"{r['to_first_step_s']:.1f}",
            f"{r['steps_s']:.1f}",
            f"{r['after_last_step_s']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
            *("-" if b not in ratio else f"{ratio[b]['wall']:.2f}x" for b in baselines),
        )
    Console(width=170).print(table)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="the diffusers example train_controlnet.py")
    parser.add_argument("--model", default="sd21-small", help="sd21-small (default), small, or a folder")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--images", type=int, default=48, help="rows in the dataset")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each row; medians are reported")
    parser.add_argument("--threads", type=int, help="CPU threads per trainer (default: torch's, every core)")
    parser.add_argument("--fast", default=FAST_FLAGS, help=f"the fast row's flags (default: {FAST_FLAGS})")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("reference", "reference-bf16", "controlkit", "controlkit-fast"),
        help="rows to run",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/controlkit-train-job"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    opts = parser.parse_args(argv)
    opts.flags = flags
    opts.workdir.mkdir(parents=True, exist_ok=True)
    model = write_model(opts.model, opts.workdir / f"model-{opts.model}", opts.resolution)
    data = opts.workdir / f"data-{opts.images}-{opts.resolution}"
    if not data.is_dir():
        write_dataset(data, opts.images, opts.resolution)
    write_shim(opts.workdir / "shim")

    ck = ("module", "controlkit", ["train"])
    rows = {"controlkit": (ck, []), "controlkit-fast": (ck, shlex.split(opts.fast))}
    if opts.reference is not None:
        if not opts.reference.is_file():
            parser.error(f"--reference {opts.reference} is not a file")
        reference = ("path", str(opts.reference.resolve()), [])
        rows = {
            "reference": (reference, []),
            "reference-bf16": (reference, ["--mixed_precision=bf16"]),
            **rows,
        }
    rows = {name: row for name, row in rows.items() if not opts.only or name in opts.only}
    names = list(rows)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    load_before = os.getloadavg()
    for rep in range(opts.repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            print(f"[{rep + 1}/{opts.repeats}] {name} ...", file=sys.stderr, flush=True)
            trainer, extra = rows[name]
            runs[name].append(run_job(name, trainer, extra, model, data, opts, rep))
            print(f"    {runs[name][-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    results = {name: summarize(found) for name, found in runs.items()}
    ratios = speedups(runs)
    print_table(results, ratios, {name: rows[name][1] for name in names})
    report = {
        "job": {
            "model": opts.model,
            "resolution": opts.resolution,
            "images": opts.images,
            "epochs": opts.epochs,
            "batch_size": opts.batch_size,
            "repeats": opts.repeats,
            "threads": opts.threads,
            "walkthrough_flags": walkthrough_flags("MODEL", Path("DATA"), Path("OUT"), opts),
            "rows": {name: rows[name][1] for name in names},
        },
        "host": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
        },
        "results": results,
        "speedup_over_reference": ratios,
        "runs": runs,
    }
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
