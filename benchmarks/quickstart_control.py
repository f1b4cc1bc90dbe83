"""Proof that quickstart's ControlNet learns control: `controlkit eval` of its final ControlNet on more faces.

    python benchmarks/quickstart_control.py [--out DIR] [--reuse | --overwrite] [--faces 32] [--json FILE]

Runs `controlkit quickstart` (or, with --reuse, takes the ControlNet an earlier run left in --out), builds a
held-out dataset from a seed stream neither the training set nor quickstart's own held-out faces use, and
evaluates the final ControlNet on it: the right conditioning (matched), another face's (shuffled), an
off-domain prompt, and the ControlNet off; every case with the same prompts and seeds, scored by the
face-landmarks condition (its small-face regressor at 64 px). Prints the table and writes JSON (and the
evaluation's own report in OUT/control_benchmark/).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from controlkit.eval.config import EvalConfig
from controlkit.eval.report import text_table
from controlkit.eval.run import evaluate
from controlkit.quickstart.config import QuickstartConfig
from controlkit.quickstart.report import BENCHMARK_FILE, SUMMARY_FILE, write_report
from controlkit.quickstart.run import HELD_OUT_SEED_OFFSET, build_data, run_quickstart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("quickstart-out"), help="the quickstart's folder")
    parser.add_argument("--reuse", action="store_true", help="measure the ControlNet already in --out")
    parser.add_argument("--base", help="default: the base of the run in --out, else the shipped demo base")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out (no --reuse)")
    parser.add_argument("--faces", type=int, default=32, help="held-out faces per case")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps")
    parser.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance")
    parser.add_argument("--seed", type=int, default=1, help="held-out stream and sampling seeds")
    parser.add_argument(
        "--json", type=Path, help="default: OUT/control_benchmark.json (and the report shows it)"
    )
    args = parser.parse_args()

    import torch

    started = time.monotonic()
    base = args.base
    summary = args.out / SUMMARY_FILE
    if args.reuse and not args.base and summary.is_file():
        base = json.loads(summary.read_text())["config"]["base"]  # the base that ControlNet was trained on
    config = QuickstartConfig(out=args.out, base=base, overwrite=args.overwrite)
    if not args.reuse:
        run_quickstart(config)
    torch.set_num_threads(1)
    # A stream apart from quickstart's own held-out faces (seed + offset) and from the dataset (seed).
    stream = args.seed * 1_000_003 + HELD_OUT_SEED_OFFSET
    faces = build_data(config, args.out / "control_benchmark_faces", args.faces, stream)
    report = evaluate(
        EvalConfig(
            controlnet=str(args.out / "controlnet"),
            checkpoints="latest",
            dataset=str(faces),
            num=args.faces,
            steps=args.steps,
            guidance=args.guidance,
            seed=args.seed,
            base=config.base,
            out=args.out / "control_benchmark",
            device="cpu",
            overwrite=True,
        )
    )
    final = report.checkpoints[-1]
    result = {
        "controlnet": str(args.out / "controlnet"),
        "checkpoint": final["name"],
        "base": config.base,
        "faces": args.faces,
        "sampling_steps": args.steps,
        "guidance": args.guidance,
        "threads": torch.get_num_threads(),
        "seconds": round(time.monotonic() - started, 1),
        "scores": {**final["adherence"], "off": report.base["adherence"]["off"]},
        "report": "control_benchmark/report.html",
    }
    path = args.json or args.out / BENCHMARK_FILE
    path.write_text(json.dumps(result, indent=2) + "\n")
    if path == args.out / BENCHMARK_FILE and summary.is_file():
        write_report(args.out)
    print("\n".join(text_table(report.summary)))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
