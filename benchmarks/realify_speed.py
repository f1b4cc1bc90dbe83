"""How fast `controlkit data realify` repaints, and how many rows each strength loses to the landmark check.

Data: a quickstart-like dataset (synthetic faces at 64 px with their exact landmarks, `data build
--landmarks ground-truth`). Model: the demo base that ships with controlkit (64 px), plain img2img.
After one untimed warm-up run of a batch, for each strength one whole `data realify` run (pipeline
load, repainting, re-reading every picture with the face-landmarks condition, shards, the final
dataset with its card and preview) gives: rows/s end to end; the median landmark error
(``landmark_nme``: mean point distance over the outer-eye-corner distance, read by the small-face
regressor, as `face-landmarks` does under 128 px); the share of rows rejected (worse than
``--threshold``, or no face found again). The runs keep rejected rows as their originals, so a
strength that rejects every row still gives a dataset and a preview. The first row, strength 0, is
the error of the untouched pictures: the floor the regressor itself sets.

The stage before it is measured too: `data build --source facesynthetics:DIR --landmarks ground-truth`
(template captions) over a folder in FaceSynthetics' layout at its 512 px (faces drawn by the synthetic
face generator, written as {id}.png, {id}_ldmks.txt, {id}_seg.png), with 1 and 2 worker processes.

    .venv/bin/python benchmarks/realify_speed.py --rows 48 --json benchmarks/results/realify_speed-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch

from controlkit import conditions
from controlkit.data.build import BuildConfig, build_dataset
from controlkit.data.realify import realify_dataset
from controlkit.data.realify_config import RealifyConfig
from controlkit.quickstart.config import DEMO_BASE


def write_facesynthetics(folder: Path, n: int) -> None:
    """``n`` samples in FaceSynthetics' layout at 512 px (the 70 points: 68 iBUG + two pupil centres)."""
    from PIL import Image

    from controlkit.data.synthetic_faces import face_seed, render_synthetic_face

    folder.mkdir(parents=True)
    for i in range(n):
        face = render_synthetic_face(face_seed(0, i), size=512)
        face.image.convert("RGB").save(folder / f"{i:06d}.png")
        points = np.concatenate(
            [face.landmarks, [face.landmarks[36:42].mean(0), face.landmarks[42:48].mean(0)]]
        )
        (folder / f"{i:06d}_ldmks.txt").write_text("".join(f"{x:.6f} {y:.6f}\n" for x, y in points))
        Image.new("L", (512, 512)).save(folder / f"{i:06d}_seg.png")


def facesynthetics_build(work: Path, n: int) -> list[dict]:
    """Rows/s of `data build --source facesynthetics:DIR --landmarks ground-truth`, 1 and 2 workers."""
    folder = work / "facesynthetics"
    write_facesynthetics(folder, n)
    rows = []
    for workers in (1, 2):
        config = BuildConfig(
            source=f"facesynthetics:{folder}",
            landmarks="ground-truth",
            num_workers=workers,
            out=str(work / f"facesynthetics-ds-{workers}"),
            progress=False,
        )
        started = time.perf_counter()
        report = build_dataset(config)
        wall = time.perf_counter() - started
        rows.append(
            {
                "workers": workers,
                "rows": report.rows,
                "wall_s": round(wall, 2),
                "rows_per_s": round(report.rows / wall, 1),
            }
        )
    return rows


def untouched(dataset: Path) -> dict:
    """The landmark error of the original pictures against their own ground truth (strength 0)."""
    condition = conditions.get("face-landmarks")
    scores = [
        condition.score(row["image"], np.asarray(row["annotation"], np.float32))["landmark_nme"]
        for row in datasets.load_from_disk(str(dataset))
    ]
    return {"strength": 0.0, "median_nme": round(statistics.median(scores), 4)}


def run(
    dataset: Path, out: Path, strength: float, args: argparse.Namespace, limit: int | None = None
) -> dict:
    config = RealifyConfig(
        limit=limit,
        dataset=str(dataset),
        base=str(DEMO_BASE),
        out=str(out),
        strength=strength,
        steps=args.steps,
        guidance_scale=args.guidance,
        threshold=args.threshold,
        keep_rejected_original=True,
        batch_size=args.batch_size,
        progress=False,
    )
    started = time.perf_counter()
    report = realify_dataset(config)
    wall = time.perf_counter() - started
    scores = [r["score"] for r in report.records if r["score"] is not None]
    nothing = sum(1 for r in report.records if r["score"] is None)
    return {
        "strength": strength,
        "img2img_steps": int(args.steps * strength),
        "rows": report.rows,
        "wall_s": round(wall, 2),
        "rows_per_s": round(report.rows / wall, 2),
        "median_nme": round(statistics.median(scores), 4) if scores else None,
        "no_face_found": nothing,
        "rejected": len(report.rejected),
        "rejection_rate": round(len(report.rejected) / report.rows, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=48, help="synthetic faces in the dataset")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.25, 0.45, 0.65, 0.85])
    parser.add_argument("--steps", type=int, default=20, help="--steps (img2img runs strength x steps)")
    parser.add_argument("--guidance", type=float, default=3.0, help="--guidance-scale")
    parser.add_argument("--threshold", type=float, default=0.08, help="--threshold on landmark_nme")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: steady on shared cores)"
    )
    parser.add_argument(
        "--out", default=None, help="keep the repainted datasets here (default: a temp folder)"
    )
    parser.add_argument(
        "--facesynthetics-rows",
        type=int,
        default=256,
        help="512 px samples for the build figure (0: skip it)",
    )
    parser.add_argument("--json", default="realify_speed.json", help="where to write the figures")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    work = Path(args.out or tempfile.mkdtemp(prefix="realify-speed-"))
    builds = facesynthetics_build(work, args.facesynthetics_rows) if args.facesynthetics_rows else []
    for build in builds:
        print(
            f"data build, FaceSynthetics 512 px, {build['workers']} worker(s): {build['rows_per_s']} rows/s"
        )
    dataset = work / "synth-ds"
    build_dataset(
        BuildConfig(
            source="synthetic-faces",
            landmarks="ground-truth",
            limit=args.rows,
            resolution=64,
            out=str(dataset),
            progress=False,
        )
    )
    run(dataset, work / "warm-up", args.strengths[0], args, limit=args.batch_size)  # imports, first calls
    rows = [untouched(dataset)]
    rows += [run(dataset, work / f"real-ds-{s}", s, args) for s in args.strengths]
    print("| strength | img2img steps | rows/s | median landmark_nme | no face found | rejected |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        if row["strength"] == 0:
            print(f"| 0 (untouched) | - | - | {row['median_nme']} | - | - |")
            continue
        print(
            f"| {row['strength']} | {row['img2img_steps']} | {row['rows_per_s']} | {row['median_nme']} "
            f"| {row['no_face_found']} | {row['rejected']}/{row['rows']} ({row['rejection_rate']:.0%}) |"
        )
    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} torch thread(s)",
        "load_average_before": load,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "json")},
        "rows": rows,
        "facesynthetics_build": builds,
    }
    Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"rejected: landmark_nme > {args.threshold} or no face found; wrote {args.json}")
    print(f"previews: {work}/real-ds-*/preview.png")


if __name__ == "__main__":
    main()
