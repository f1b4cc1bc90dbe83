"""How fast `controlkit data build` annotates real photos, and how it scales from 1 to 2 worker processes.

Photos: the faces scikit-image (astronaut) and matplotlib (grace_hopper) ship, as 512 px variants
(mirrored, shifted, scaled, rotated, brightness-jittered JPEGs) written to a temporary folder.

1. The per-image function alone (decode -> dlib detection + 68 landmarks -> render -> PNG), in this
   process, for each dlib ``upsample`` (``default``: the condition's own choice): faces/s by wall
   clock and per core (images / CPU seconds, which stays meaningful when other jobs share the machine).
2. Whole builds (shards, captions, consolidation) with ``--num-workers`` 1 and 2: wall time and speed-up.

    .venv/bin/python benchmarks/data_speed.py --n 64 --json data_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
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


def whole_build(folder: Path, workers: int, upsample: str, work: Path) -> dict:
    out = work / f"ds-{workers}-{upsample}"
    config = BuildConfig(
        source=str(folder),
        out=str(out),
        condition_options=_options(upsample),
        num_workers=workers,
        progress=False,
    )
    started = time.perf_counter()
    report = build_dataset(config)
    wall = time.perf_counter() - started
    return {
        "workers": workers,
        "upsample": upsample,
        "inputs": report.inputs,
        "rows": report.rows,
        "wall_s": round(wall, 2),
        "inputs_per_s": round(report.inputs / wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="number of 512 px photos")
    parser.add_argument(
        "--upsample", nargs="+", default=["default", "0", "1"], help="dlib upsample settings to time"
    )
    parser.add_argument("--build-upsample", default="default", help="dlib upsample for the whole builds")
    parser.add_argument("--json", default="data_speed.json", help="where to write the figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos = work / "photos"
        photos.mkdir()
        write_variants(photos, args.n)
        figures: dict = {"cpus": os.cpu_count(), "load_average_before": os.getloadavg()[0]}
        figures["per_image"] = [per_image(photos, upsample) for upsample in args.upsample]
        builds = [whole_build(photos, workers, args.build_upsample, work) for workers in (1, 2)]
        figures["builds"] = builds
        figures["speedup_1_to_2_workers"] = round(builds[0]["wall_s"] / builds[1]["wall_s"], 2)
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
        f"speed-up 1 -> 2 workers: {figures['speedup_1_to_2_workers']}x "
        f"(load average {figures['load_average_before']:.1f} -> {figures['load_average_after']:.1f} "
        f"on {figures['cpus']} CPUs)"
    )
    Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
