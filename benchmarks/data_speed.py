"""How fast `controlkit data build` annotates real photos, and how it scales from 1 to 2 worker processes.

Photos: the faces scikit-image (astronaut) and matplotlib (grace_hopper) ship, as 512 px variants
(mirrored, shifted, scaled, rotated, brightness-jittered JPEGs) written to a temporary folder.

1. The per-image function alone (decode -> dlib detection + 68 landmarks -> render -> PNG), in this
   process, for each dlib ``upsample`` (``default``: the condition's own choice): faces/s by wall
   clock and per core (images / CPU seconds, which stays meaningful when other jobs share the machine).
2. Whole builds (shards, captions, consolidation) with ``--num-workers`` 1 and 2: wall time and
   speed-up, and the CPU seconds of the main and worker processes, from which the speed-up on two free
   cores is estimated (wall-clock speed-up is only meaningful when no other job shares the cores).

    .venv/bin/python benchmarks/data_speed.py --n 200 --json data_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from matplotlib import cbook
from PIL import Image, ImageEnhance, ImageOps
from skimage import data as skdata

from controlkit.data.build import BuildConfig, build_dataset
from controlkit.data.pairs import PairMaker, PairSettings
from controlkit.data.sources import FolderSource


def base_photos() -> list[Image.Image]:
    astronaut = Image.fromarray(skdata.astronaut())
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as hopper:
        hopper = ImageOps.fit(hopper.convert("RGB"), (512, 512))
    return [astronaut, hopper]


def write_variants(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` 512 px JPEG variants of the two photos, each a little different."""
    rng = np.random.default_rng(seed)
    bases = base_photos()
    for i in range(n):
        image = bases[i % 2]
        if (i // 2) % 2:
            image = ImageOps.mirror(image)
        scale = rng.uniform(0.9, 1.1)
        image = image.rotate(
            rng.uniform(-8, 8),
            resample=Image.Resampling.BICUBIC,
            translate=tuple(rng.integers(-16, 17, 2).tolist()),
        )
        size = round(512 * scale)
        image = ImageOps.fit(image.resize((size, size), Image.Resampling.BICUBIC), (512, 512))
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
        image.save(folder / f"{i:04d}.jpg", quality=92)


def _options(upsample: str) -> dict:
    """``default`` -> the condition's own choice (dlib at 1x, 2x only when no face is found)."""
    return {} if upsample == "default" else {"upsample": int(upsample)}


def per_image(folder: Path, upsample: str) -> dict:
    maker = PairMaker(PairSettings("face-landmarks", _options(upsample)))
    items = list(FolderSource(folder).items())
    maker(items[0])  # load the dlib models outside the timing
    wall, cpu = time.perf_counter(), time.process_time()
    results = [maker(item) for item in items]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    found = sum(r.reason is None for r in results)
    return {
        "upsample": upsample,
        "images": len(items),
        "faces_found": found,
        "wall_s": round(wall, 3),
        "faces_per_s_wall": round(found / wall, 2),
        "faces_per_s_per_core": round(found / cpu, 2),
        "ms_per_image_cpu": round(1000 * cpu / len(items), 1),
    }


def whole_build(folder: Path, workers: int, upsample: str, out: Path) -> dict:
    """One build; CPU seconds of this process and of the (reaped) worker processes are measured too."""
    config = BuildConfig(
        source=str(folder),
        out=str(out),
        condition_options=_options(upsample),
        num_workers=workers,
        progress=False,
    )
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, cpu = time.perf_counter(), time.process_time()
    report = build_dataset(config)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    time.sleep(0.5)  # let the pool's workers exit and be reaped, so their CPU time is counted
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    return {
        "workers": workers,
        "upsample": upsample,
        "inputs": report.inputs,
        "rows": report.rows,
        "wall_s": round(wall, 2),
        "inputs_per_s": round(report.inputs / wall, 2),
        "cpu_main_s": round(cpu, 2),
        "cpu_workers_s": round(worker_cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of 512 px photos")
    parser.add_argument(
        "--upsample", nargs="+", default=["default", "0", "1"], help="dlib upsample settings to time"
    )
    parser.add_argument("--build-upsample", default="default", help="dlib upsample for the whole builds")
    parser.add_argument("--repeats", type=int, default=2, help="builds per worker count (best wall time)")
    parser.add_argument("--json", default="data_speed.json", help="where to write the figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos = work / "photos"
        photos.mkdir()
        write_variants(photos, args.n)
        figures: dict = {"cpus": os.cpu_count(), "load_average_before": os.getloadavg()[0]}
        figures["per_image"] = [per_image(photos, upsample) for upsample in args.upsample]
        # the dlib models are cached in this process now: builds time the pipeline, not the model load
        builds = [
            whole_build(photos, workers, args.build_upsample, work / f"ds-{i}-{workers}")
            for i in range(args.repeats)
            for workers in (1, 2)
        ]
        best = {w: min(b["wall_s"] for b in builds if b["workers"] == w) for w in (1, 2)}
        figures["builds"] = builds
        figures["speedup_1_to_2_workers"] = round(best[1] / best[2], 2)
        # on 2 free cores: the 1-worker CPU time over the 2-worker run's CPU time (workers and main
        # process) spread over two cores; the least of the repeats, as contention inflates CPU time
        cpu_one = min(b["cpu_main_s"] for b in builds if b["workers"] == 1)
        cpu_two = min((b["cpu_workers_s"] + b["cpu_main_s"]) / 2 for b in builds if b["workers"] == 2)
        figures["cpu_bound_speedup_estimate"] = round(cpu_one / cpu_two, 2)
        figures["load_average_after"] = os.getloadavg()[0]
    for row in figures["per_image"]:
        print(
            f"per-image, dlib upsample {row['upsample']}: {row['faces_found']}/{row['images']} faces, "
            f"{row['faces_per_s_wall']} faces/s wall, {row['faces_per_s_per_core']} faces/s per core "
            f"({row['ms_per_image_cpu']} ms CPU/image)"
        )
    for row in figures["builds"]:
        print(f"build, {row['workers']} worker(s): {row['wall_s']} s, {row['inputs_per_s']} photos/s")
    print(
        f"speed-up 1 -> 2 workers: {figures['speedup_1_to_2_workers']}x by wall clock "
        f"(best of {args.repeats}), "
        f"{figures['cpu_bound_speedup_estimate']}x from CPU time "
        f"(load average {figures['load_average_before']:.1f} -> {figures['load_average_after']:.1f} "
        f"on {figures['cpus']} CPUs)"
    )
    Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
