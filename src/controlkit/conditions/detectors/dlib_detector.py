"""dlib's HOG face detector and 68-point shape predictor: the fully offline default landmark detector.

The predictor file comes from the ``face-recognition-models`` package; it is located through package
metadata rather than by importing that package (its ``__init__`` needs ``pkg_resources``).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from controlkit.errors import UserError, require

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def predictor_path() -> Path:
    """Where ``face-recognition-models`` keeps the 68-point predictor, found without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "models" / PREDICTOR_FILE
        if path.is_file():
            return path
    try:
        for file in importlib.metadata.files("face_recognition_models") or []:
            if file.name == PREDICTOR_FILE:
                return Path(file.locate())
    except importlib.metadata.PackageNotFoundError:
        pass
    raise UserError(
        f"dlib's {PREDICTOR_FILE} was not found; install it with: pip install 'controlkit[faces]'"
    )


@functools.cache
def _models() -> tuple[Any, Any]:
    """Detector and predictor, loaded once per process (the predictor file is ~100 MB)."""
    dlib = require("dlib", "faces")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path()))


def dlib_version() -> str:
    return require("dlib", "faces").__version__


def _gray_array(image: Image.Image) -> np.ndarray:
    """HOG and the predictor work on intensity; grayscale makes detection ~20% faster than RGB."""
    return np.ascontiguousarray(np.asarray(image.convert("L"), dtype=np.uint8))


class DlibLandmarks:
    """Callable detector: PIL image -> (faces, 68, 2) float32 pixel landmarks, or None when no face is found.

    ``upsample`` is how many times dlib doubles the image before looking for faces: 0 finds faces from
    ~80 px wide at ~25-50 ms per 512 px photo; 1 finds faces down to ~40 px but is 3-4x slower and
    finds more false faces (a badge on the astronaut's suit). None (the default) searches at 0 and,
    only when nothing is found there, again at 1: fast on the common case, small faces still found.
    Photos larger than ``detect_size`` are searched at that size (the boxes scaled back) and the
    landmarks placed on the full-resolution image, so a 4000 px photo costs about what a 1024 px one does.
    """

    def __init__(self, upsample: int | None = None, detect_size: int = 1024) -> None:
        self.upsample = None if upsample is None else int(upsample)
        self.detect_size = int(detect_size)
        self.name = "dlib"

    def version(self) -> str:
        return f"dlib {dlib_version()} HOG + {PREDICTOR_FILE}"

    def _boxes(self, gray: np.ndarray) -> np.ndarray:
        detector, _ = _models()
        scale = min(1.0, self.detect_size / max(gray.shape))
        if scale < 1.0:
            size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
            gray = np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BILINEAR))
        rects = detector(gray, self.upsample or 0)
        if len(rects) == 0 and self.upsample is None:
            rects = detector(gray, 1)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32)
        return boxes.reshape(-1, 4) / scale

    def boxes(self, image: Image.Image) -> np.ndarray:
        """Face boxes as an (n, 4) float32 array of (left, top, right, bottom) pixels."""
        return self._boxes(_gray_array(image))

    def __call__(self, image: Image.Image) -> np.ndarray | None:
        dlib = require("dlib", "faces")
        _, predictor = _models()
        pixels = _gray_array(image)
        boxes = self._boxes(pixels)
        if len(boxes) == 0:
            return None
        faces = []
        for left, top, right, bottom in np.round(boxes).astype(int).tolist():
            shape = predictor(pixels, dlib.rectangle(left, top, right, bottom))
            faces.append([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)])
        return np.asarray(faces, dtype=np.float32)
