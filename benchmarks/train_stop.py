"""Preemption: how long `controlkit train` takes from SIGTERM to exit, and what it leaves behind.

    python benchmarks/train_stop.py [--model small|sd21] [--resolution 64] [--batch-size 1] [--after 2]
        [--second-after S] [--threads N] [--workdir DIR] [--json OUT.json] [-- FLAG ...]

Spot and preemptible GPUs send SIGTERM and allow about 30 seconds. The script writes a model folder
(``small``: controlkit.models.small; ``sd21``: SD 2.1-base's shapes with random weights, ~5.2 GB, reused
from ``--workdir``), a synthetic dataset, starts `controlkit train` in a child process, and sends SIGTERM
once metrics.jsonl shows ``--after`` optimizer steps. It measures the time from the signal to the child's
exit (the step in hand finished, the checkpoint written with its manifest), the exit code, the step the
checkpoint holds, its size, the median step time before the signal, and how long hashing that checkpoint
for its manifest takes on its own. With ``--second-after S`` a second SIGTERM follows after S seconds:
the run should then exit at once, without its checkpoint. Flags after ``--`` go to `controlkit train`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path


def write_dataset(folder: Path, rows: int, resolution: int) -> Path:
    """A save_to_disk dataset of random pairs with captions."""
    import datasets
    import numpy as np
    from PIL import Image

    if (folder / "state.json").is_file():
        return folder
    rng = np.random.default_rng(0)

    def picture() -> Image.Image:
        return Image.fromarray(rng.integers(0, 255, (resolution, resolution, 3), dtype=np.uint8))

    features = datasets.Features(
        {"image": datasets.Image(), "conditioning_image": datasets.Image(), "text": datasets.Value("string")}
    )
    rows_ = {
        "image": [picture() for _ in range(rows)],
        "conditioning_image": [picture() for _ in range(rows)],
        "text": [f"a photo number {i}" for i in range(rows)],
    }
    datasets.Dataset.from_dict(rows_, features=features).save_to_disk(str(folder))
    return folder


def write_model(kind: str, folder: Path) -> Path:
    if (folder / "model_index.json").is_file():
        return folder
    if kind == "sd21":
        from controlkit.models.sd21_shapes import write_sd21_model

        return write_sd21_model(folder)
    from controlkit.models.small import write_small_model

    return write_small_model(folder)


def steps_seen(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in records if "loss" in r]


def run_once(opts: argparse.Namespace, model: Path, data: Path) -> dict:
    """One run: train, SIGTERM after ``--after`` steps, time the exit."""
    out = opts.workdir / "out"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    command = [sys.executable, "-m", "controlkit", "train", f"--pretrained_model_name_or_path={model}"]
    command += [f"--dataset_name={data}", f"--output_dir={out}", f"--resolution={opts.resolution}"]
    command += [f"--train_batch_size={opts.batch_size}", "--max_train_steps=100000"]
    command += ["--checkpointing_steps=100000", "--report_to=none", "--seed=0", "--lr_warmup_steps=0"]
    command += opts.flags
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if opts.threads:
        env.update(OMP_NUM_THREADS=str(opts.threads), MKL_NUM_THREADS=str(opts.threads))
    log_path = opts.workdir / "train.log"
    with log_path.open("w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        while len(steps_seen(out)) < opts.after:
            if child.poll() is not None:
                sys.exit(f"training ended (exit {child.returncode}) before step {opts.after}; see {log_path}")
            time.sleep(0.05)
        records = steps_seen(out)
        signalled = time.perf_counter()
        child.send_signal(signal.SIGTERM)
        if opts.second_after is not None:
            try:
                child.wait(timeout=opts.second_after)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGTERM)
        code = child.wait()
    exit_s = time.perf_counter() - signalled
    step_s = [opts.batch_size / r["images_per_s"] for r in records[1:]] or [float("nan")]
    result = {
        "exit_code": code,
        "signal_to_exit_s": exit_s,
        "step_s_median": statistics.median(step_s),
        "steps_before_signal": len(records),
        "last_line": log_path.read_text(errors="replace").strip().splitlines()[-1],
    }
    checkpoints = sorted(out.glob("checkpoint-*"))
    if checkpoints:
        from controlkit.train.manifest import checkpoint_size, write_manifest

        state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
        start = time.perf_counter()
        write_manifest(checkpoints[-1])
        result.update(
            checkpoint=checkpoints[-1].name,
            checkpoint_step=state["global_step"],
            checkpoint_mb=checkpoint_size(checkpoints[-1]) / 1e6,
            manifest_hash_s=time.perf_counter() - start,
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("small", "sd21"), default="small")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--after", type=int, default=2, help="SIGTERM once this many steps are logged")
    parser.add_argument("--second-after", type=float, default=None, help="a second SIGTERM after S seconds")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/controlkit-train-stop"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("flags", nargs="*", help="flags for controlkit train, after --")
    opts = parser.parse_args()
    opts.workdir.mkdir(parents=True, exist_ok=True)
    model = write_model(opts.model, opts.workdir / f"model-{opts.model}")
    data = write_dataset(opts.workdir / f"data-{opts.resolution}", 16, opts.resolution)
    result = {
        "model": opts.model,
        "resolution": opts.resolution,
        "batch_size": opts.batch_size,
        "flags": opts.flags,
        "second_after_s": opts.second_after,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        **run_once(opts, model, data),
    }
    for key, value in result.items():
        print(f"{key:>20}: {value:.2f}" if isinstance(value, float) else f"{key:>20}: {value}")
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
