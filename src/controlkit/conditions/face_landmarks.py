"""The ``face-landmarks`` condition: 68 iBUG landmarks per face, drawn as the walkthrough's coloured mask.

Annotation: ``np.float32`` array ``(faces, 68, 2)`` of pixel (x, y) in the image's own frame, pixel
centres at integers (see ``geometry``). A detector is any callable ``PIL image -> (faces, 68, 2) | None``;
dlib (offline, the default), SPIGA (the walkthrough's model) and the small-face landmark regressor (for
faces of about 64 px, which dlib cannot see) are built in, and any other callable can be passed instead.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from controlkit.conditions import register
from controlkit.conditions.base import Condition
from controlkit.conditions.geometry import resize_center_crop_geometry
from controlkit.conditions.landmarks68 import GROUPS, LEFT_EYE_OUTER, MIRROR, NUM_POINTS, RIGHT_EYE_OUTER
from controlkit.errors import UserError

Detector = Callable[[Image.Image], "np.ndarray | None"]

LINE_WIDTH = 4
_SUPERSAMPLE = 4
_MAX_SUPERSAMPLED_PIXELS = 16_000_000  # a face filling a 4000 px photo is drawn 2x, not 4x (48 MB, not 768)
_MATCH_RADIUS = 0.5
"""A found face matches an input face when their centroids are closer than this fraction of the input
face's box size (max of width and height); farther, it is someone else and does not count."""


def as_faces(annotation: Any) -> np.ndarray:
    """Landmarks of one face (68, 2) or many (n, 68, 2), array or lists, as (n, 68, 2) float32."""
    faces = np.asarray(annotation, dtype=np.float32)
    if faces.size == 0:
        return np.zeros((0, NUM_POINTS, 2), np.float32)
    if faces.shape[-2:] != (NUM_POINTS, 2):
        raise ValueError(f"face landmarks must have shape (faces, {NUM_POINTS}, 2), got {faces.shape}")
    return faces.reshape(-1, NUM_POINTS, 2)


def draw_landmarks(faces: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The walkthrough's drawing: each group a 4 px antialiased stroke on black, eyes and lips filled.

    Strokes are drawn supersampled (4x, less for faces over ~1000 px) with PIL and box-filtered down:
    exact widths, coverage antialiasing; only the faces' bounding box is drawn, so a 512 px canvas
    takes a few milliseconds.
    """
    width, height = size
    out = Image.new("RGB", (width, height))
    faces = as_faces(faces)
    faces = faces[np.isfinite(faces).all(axis=(1, 2))]
    if len(faces) == 0:
        return out
    points = faces.reshape(-1, 2)
    margin = LINE_WIDTH
    lo = np.floor(points.min(0) - margin).astype(int).clip(0, (width, height))
    hi = np.ceil(points.max(0) + margin + 1).astype(int).clip(0, (width, height))
    if (hi <= lo).any():
        return out
    area = float(np.prod(hi - lo))
    scale = int(max(1, min(_SUPERSAMPLE, math.sqrt(_MAX_SUPERSAMPLED_PIXELS / area))))
    canvas = Image.new("RGB", tuple((hi - lo) * scale))
    draw = ImageDraw.Draw(canvas)
    for face in (faces - lo + 0.5) * scale - 0.5:  # pixel centres stay at integers
        for group in GROUPS:
            stroke = [tuple(p) for p in face[group.start : group.stop].tolist()]
            if group.closed:
                draw.polygon(stroke, fill=group.color)
                stroke.append(stroke[0])
            draw.line(stroke, fill=group.color, width=LINE_WIDTH * scale, joint="curve")
    out.paste(canvas.resize(tuple(hi - lo), Image.Resampling.BOX), tuple(lo))
    return out


def flip_landmarks(faces: np.ndarray, width: int) -> np.ndarray:
    """Mirror (x -> width - 1 - x: pixel centres at integers) and swap left/right points to keep meanings."""
    flipped = as_faces(faces).copy()
    flipped[..., 0] = (width - 1) - flipped[..., 0]
    return flipped[:, MIRROR]


def inter_ocular(face: np.ndarray) -> float:
    """Distance between the outer eye corners (points 36 and 45), the 300-W normaliser."""
    return float(np.linalg.norm(face[LEFT_EYE_OUTER] - face[RIGHT_EYE_OUTER]))


def match_faces(found: np.ndarray, reference: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (found index, reference index), nearest centroids first, one-to-one, within the match radius."""
    if len(found) == 0 or len(reference) == 0:
        return []
    dist = np.linalg.norm(found.mean(1)[:, None] - reference.mean(1)[None], axis=-1)
    radius = _MATCH_RADIUS * (reference.max(1) - reference.min(1)).max(-1)
    pairs, used_found, used_ref = [], set(), set()
    for flat in np.argsort(dist, axis=None):
        i, j = np.unravel_index(flat, dist.shape)
        if i in used_found or j in used_ref or dist[i, j] > radius[j]:
            continue
        pairs.append((int(i), int(j)))
        used_found.add(i)
        used_ref.add(j)
    return pairs


def landmark_scores(found: np.ndarray | None, reference: np.ndarray) -> dict[str, float]:
    """``landmark_nme`` (mean point error / inter-ocular distance over matched faces; NaN when none) and
    ``detection_rate`` (matched faces / input faces; NaN when the input has no face)."""
    reference = as_faces(reference)
    found = as_faces(found if found is not None else [])
    pairs = match_faces(found, reference)
    errors = [
        float(np.linalg.norm(found[i] - reference[j], axis=-1).mean()) / max(inter_ocular(reference[j]), 1e-6)
        for i, j in pairs
    ]
    return {
        "landmark_nme": float(np.mean(errors)) if errors else math.nan,
        "detection_rate": len(pairs) / len(reference) if len(reference) else math.nan,
    }


DETECTORS = ("dlib", "spiga", "regressor")
SMALL_PICTURE = 128
"""Below this many pixels (short side), ``score`` finds landmarks with the small-face regressor by default."""


def make_detector(
    detector: str | Detector,
    upsample: int | None = None,
    spiga_weights: str | None = None,
    spiga_model: str | None = None,
) -> Detector:
    """A detector by name (see ``DETECTORS``), or the callable given."""
    if callable(detector):
        return detector
    if detector == "dlib":
        from controlkit.conditions.detectors.dlib_detector import DlibLandmarks

        return DlibLandmarks(upsample=upsample)
    if detector == "spiga":
        from controlkit.conditions.detectors.spiga_detector import SpigaLandmarks

        return SpigaLandmarks(weights=spiga_weights, upsample=upsample, model=spiga_model)
    if detector == "regressor":
        from controlkit.conditions.detectors.regressor import RegressorDetector

        return RegressorDetector()
    raise UserError(f"unknown face-landmarks detector {detector!r}; choose {', '.join(DETECTORS)}")


@register("face-landmarks")
class FaceLandmarks(Condition):
    """68 facial landmarks per face; see the module docstring for the annotation format.

    Options: ``detector`` ("dlib" | "spiga" | "regressor" | a callable), ``upsample`` (dlib's, for the face
    boxes), ``spiga_weights`` (a path), ``spiga_model`` (300wpublic, wflw, ...; else read from the file name),
    ``scorer``: what finds the landmarks of a generated image in ``score`` — "auto" (the default: the
    detector, except that dlib gives way to the regressor on pictures under ``SMALL_PICTURE`` px, where its
    HOG misses about half the faces), or a detector as for ``detector``.
    """

    name = "face-landmarks"
    annotation_format = "ibug-68"
    score_labels = {"landmark_nme": "nme", "detection_rate": "det"}
    adherence_score = "landmark_nme"
    default_caption = "a photo of a face"
    nothing_found = "no face found in the photo; try a clearer, front-facing photo"
    found_label = "Detected landmarks"
    photo_hint = (
        "Upload a face photo or take one with the webcam; its landmarks are drawn, and the images keep "
        "that pose."
    )

    def __init__(
        self,
        detector: str | Detector = "dlib",
        upsample: int | None = None,
        spiga_weights: str | None = None,
        spiga_model: str | None = None,
        scorer: str | Detector = "auto",
    ) -> None:
        options = {"upsample": upsample, "spiga_weights": spiga_weights, "spiga_model": spiga_model}
        self.detector = make_detector(detector, **options)
        if scorer != "auto" and not callable(scorer) and scorer not in DETECTORS:
            raise UserError(f"unknown face-landmarks scorer {scorer!r}; choose auto, {', '.join(DETECTORS)}")
        if (scorer == "auto" and detector != "dlib") or scorer == detector:
            scorer = self.detector
        self._scorer, self._scorer_options = scorer, options
        self._scorers: dict[str, Detector] = {}

    def for_resolution(self, resolution: int) -> FaceLandmarks:
        """Faces generated under ``SMALL_PICTURE`` px are read by the regressor even once enlarged (dlib
        sees nothing in an enlarged 64 px face); only the "auto" scorer is replaced."""
        if self._scorer != "auto" or resolution >= SMALL_PICTURE:
            return self
        small = copy.copy(self)
        small._scorer = "regressor"
        return small

    def scorer_for(self, image: Image.Image) -> Detector:
        """The detector that finds a generated picture's landmarks for ``score`` (see ``scorer``)."""
        choice = self._scorer
        if choice == "auto":
            choice = "regressor" if min(image.size) < SMALL_PICTURE else self.detector
        if isinstance(choice, str):
            if choice not in self._scorers:
                self._scorers[choice] = make_detector(choice, **self._scorer_options)
            choice = self._scorers[choice]
        return choice

    def describe(self) -> dict[str, str]:
        """Provenance for dataset cards: which detector, which version (a plain callable may not say)."""
        version = getattr(self.detector, "version", None)
        return {
            "detector": str(getattr(self.detector, "name", getattr(self.detector, "__name__", "custom"))),
            "detector_version": version() if callable(version) else "unknown",
        }

    def annotate(self, image: Image.Image) -> np.ndarray | None:
        faces = self.detector(image.convert("RGB"))
        if faces is None or len(faces) == 0:
            return None
        return as_faces(faces)

    def render(self, annotation: np.ndarray, size: tuple[int, int]) -> Image.Image:
        """Draw ``annotation`` (in the canvas' pixel frame; see ``resize_center_crop``) on a (w, h) canvas."""
        return draw_landmarks(annotation, size)

    def score(self, generated: Image.Image, annotation: np.ndarray) -> dict[str, float]:
        found = self.scorer_for(generated)(generated.convert("RGB"))
        return landmark_scores(None if found is None or len(found) == 0 else as_faces(found), annotation)

    def flip(self, annotation: np.ndarray, width: int) -> np.ndarray:
        return flip_landmarks(annotation, width)

    def resize_center_crop(
        self, annotation: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]
    ) -> np.ndarray:
        """Move landmarks with an image resized-and-centre-cropped from ``from_size`` to ``to_size``."""
        return resize_center_crop_geometry(from_size, to_size).points(as_faces(annotation))

    def to_record(self, annotation: np.ndarray) -> list[list[list[float]]]:
        return as_faces(annotation).tolist()

    def from_record(self, record: Any) -> np.ndarray:
        return as_faces(record)

    def record_feature(self) -> Any:
        """The ``datasets`` feature of ``to_record``'s value, so shards (even empty ones) share a schema."""
        import datasets

        return datasets.List(datasets.List(datasets.List(datasets.Value("float32"))))
