"""How fast the synthetic faces draw on ONE core, and how often dlib's HOG detector finds them.

    python benchmarks/synthetic_faces_speed.py [--n 500] [--size 256] [--detect 200] [--out FILE.json]
                                               [--sheet FILE.png]

The target is at least 200 images/s at 256 px on one core. The process pins itself to one CPU and keeps
OpenCV and the BLAS libraries single-threaded, so the figure is per core. The detection rate (dlib's
``get_frontal_face_detector``, no upsampling) decides whether the quickstart can score adherence with the
face-landmarks condition's own detector. No torch is imported.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from controlkit.data.synthetic_faces import synthetic_faces  # noqa: E402


def measure_speed(n: int, size: int, seed: int) -> dict:
    """Images per second, wall clock and CPU time, over ``n`` faces after a short warm-up."""
    list(synthetic_faces(10, seed=seed + 1, size=size))
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in synthetic_faces(n, seed=seed, size=size):
        pass
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"images": n, "size": size, "images_per_s": n / wall, "images_per_cpu_s": n / cpu}


def measure_detection(n: int, size: int, seed: int) -> dict:
    """How often dlib's HOG detector (no upsampling) finds the face, overall and by head yaw; the same on
    faces drawn at 64 px and enlarged to ``size`` (what the CPU quickstart generates); and the face-landmarks
    condition's own score (dlib landmarks against the ground truth, NME by inter-ocular distance)."""
    import dlib
    from PIL import Image

    from controlkit import conditions

    detector = dlib.get_frontal_face_detector()
    condition = conditions.get("face-landmarks")
    found, small_found, yaws, nme = [], [], [], []
    for face in synthetic_faces(n, seed=seed, size=size):
        found.append(len(detector(np.asarray(face.image), 0)) > 0)
        yaws.append(abs(face.attributes["yaw"]))
        nme.append(condition.score(face.image, face.landmarks[None])["landmark_nme"])
    for face in synthetic_faces(n, seed=seed, size=64):
        enlarged = np.asarray(face.image.resize((size, size), Image.BICUBIC))
        small_found.append(len(detector(enlarged, 0)) > 0)
    found, yaws, nme = np.array(found), np.array(yaws), np.array(nme)
    bins = {"yaw<15": yaws < 15, "15<=yaw<30": (yaws >= 15) & (yaws < 30), "yaw>=30": yaws >= 30}
    return {
        "faces": n,
        "size": size,
        "detection_rate": float(found.mean()),
        "by_abs_yaw": {
            k: {"faces": int(m.sum()), "rate": float(found[m].mean())} for k, m in bins.items() if m.any()
        },
        "detection_rate_64px_enlarged": float(np.mean(small_found)),
        "condition_landmark_nme_median": float(np.nanmedian(nme)),
        "condition_landmark_nme_mean": float(np.nanmean(nme)),
        "condition_detection_rate": float(np.mean(~np.isnan(nme))),
    }


def contact_sheet(path: Path, seed: int, size: int, columns: int = 6, rows: int = 4) -> None:
    """The first faces of the stream, side by side, to look at."""
    from PIL import Image

    sheet = Image.new("RGB", (columns * size, rows * size))
    for i, face in enumerate(synthetic_faces(columns * rows, seed=seed, size=size)):
        sheet.paste(face.image, ((i % columns) * size, (i // columns) * size))
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=500, help="faces to time")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detect", type=int, default=200, help="faces to run dlib on (0: skip)")
    parser.add_argument("--out", type=Path, default=Path("synthetic_faces_speed.json"), help="JSON results")
    parser.add_argument("--sheet", type=Path, help="also write a contact sheet of 24 faces (PNG)")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    result = {
        "machine": platform.processor() or platform.machine(),
        "cores_used": 1,
        "load_average_1min": os.getloadavg()[0],  # other work on the machine slows the wall-clock figure
        "opencv": cv2.__version__,
        "speed": measure_speed(args.n, args.size, args.seed),
    }
    speed = result["speed"]
    rates = f"{speed['images_per_s']:.1f} images/s wall, {speed['images_per_cpu_s']:.1f} images/CPU-s"
    print(f"{rates} at {args.size} px")
    if args.detect:
        try:
            result["dlib"] = measure_detection(args.detect, args.size, args.seed)
            d = result["dlib"]
            print(
                f"dlib HOG detection rate: {d['detection_rate']:.3f} on {args.detect} faces at {args.size} px"
            )
            print(f"  drawn at 64 px and enlarged: {d['detection_rate_64px_enlarged']:.3f}")
            print(f"  face-landmarks condition: NME median {d['condition_landmark_nme_median']:.4f}")
        except ImportError:
            print("dlib is not installed (pip install 'controlkit[faces]'); detection rate skipped")
    if args.sheet:
        contact_sheet(args.sheet, args.seed, min(args.size, 192))
        print(f"wrote {args.sheet}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
