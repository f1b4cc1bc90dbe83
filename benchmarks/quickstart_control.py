"""Proof that quickstart's ControlNet learns control: adherence on held-out synthetic faces, three ways.

    python benchmarks/quickstart_control.py [--out DIR] [--reuse | --overwrite] [--faces 32] [--json FILE]

Runs `controlkit quickstart` (or, with --reuse, takes the ControlNet an earlier run left in --out), then
generates from held-out faces (a seed stream the dataset never used) with the ControlNet given the right
conditioning, given another face's conditioning (shuffled), and disabled (scale 0); every case with the
same prompts and seeds. Scores: the face-landmarks condition with the landmark regressor as its
detector. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from controlkit.quickstart.adherence import (
    CASES,
    adherence_condition,
    control_panel,
    control_test,
    held_out_faces,
    load_pipeline,
)
from controlkit.quickstart.config import QuickstartConfig
from controlkit.quickstart.report import BENCHMARK_FILE, SUMMARY_FILE, write_report
from controlkit.quickstart.run import HELD_OUT_SEED_OFFSET, run_quickstart


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
    from diffusers import ControlNetModel

    started = time.monotonic()
    base = args.base
    summary = args.out / SUMMARY_FILE
    if args.reuse and not args.base and summary.is_file():
        base = json.loads(summary.read_text())["config"]["base"]  # the base that ControlNet was trained on
    config = QuickstartConfig(out=args.out, base=base, overwrite=args.overwrite)
    if not args.reuse:
        run_quickstart(config)
    torch.set_num_threads(1)
    controlnet = ControlNetModel.from_pretrained(args.out / "controlnet")
    pipe = load_pipeline(config.base, controlnet)
    # A stream apart from quickstart's own held-out faces (seed + offset) and from the dataset (seed).
    faces = held_out_faces(args.faces, args.seed * 1_000_003 + HELD_OUT_SEED_OFFSET)
    scores, images = control_test(pipe, faces, adherence_condition(), args.steps, args.guidance, args.seed)
    control_panel(faces, images, rows=8).save(args.out / "control_benchmark.png")
    result = {
        "controlnet": str(args.out / "controlnet"),
        "base": config.base,
        "faces": args.faces,
        "sampling_steps": args.steps,
        "guidance": args.guidance,
        "threads": torch.get_num_threads(),
        "seconds": round(time.monotonic() - started, 1),
        "scores": scores,
    }
    path = args.json or args.out / BENCHMARK_FILE
    path.write_text(json.dumps(result, indent=2) + "\n")
    if path == args.out / BENCHMARK_FILE:
        write_report(args.out)
    print(f"{'case':10s} {'error/IOD':>10s} {'NME found':>10s} {'detected':>9s}")
    for case in CASES:
        s = scores[case]
        print(f"{case:10s} {s['point_error']:10.3f} {s['landmark_nme']:10.3f} {s['detection_rate']:9.2f}")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
