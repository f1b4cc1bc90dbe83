"""The ``canny`` condition: OpenCV Canny edges, drawn white on black, scored by edge F1.

Annotation: ``(H, W)`` uint8 edge map with values {0, 255}. Records are PNG bytes (a 512 px edge map
is a few kB instead of 262k list entries).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from PIL import Image

from controlkit.conditions import register
from controlkit.conditions.base import Condition
from controlkit.conditions.geometry import resize_center_crop_geometry


def resize_edges(edges: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an edge map to (w, h), keeping thin edges: an edge anywhere in a shrunk cell survives."""
    h, w = edges.shape
    if (w, h) == tuple(size):
        return edges
    shrinking = size[0] * size[1] < w * h
    resized = cv2.resize(edges, tuple(size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_NEAREST)
    return np.where(resized > 0, 255, 0).astype(np.uint8)


def edge_scores(found: np.ndarray, reference: np.ndarray, tolerance: int) -> dict[str, float]:
    """Precision, recall and F1 of edge pixels, each edge matching within ``tolerance`` px (square window).

    Two empty maps agree perfectly (F1 = 1); one empty map against edges scores 0.
    """
    found, reference = found > 0, reference > 0
    kernel = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    near_ref = cv2.dilate(reference.astype(np.uint8), kernel) > 0
    near_found = cv2.dilate(found.astype(np.uint8), kernel) > 0
    n_found, n_ref = int(found.sum()), int(reference.sum())
    if n_found == 0 and n_ref == 0:
        return {"edge_f1": 1.0, "edge_precision": 1.0, "edge_recall": 1.0}
    precision = float((found & near_ref).sum()) / n_found if n_found else 0.0
    recall = float((reference & near_found).sum()) / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"edge_f1": f1, "edge_precision": precision, "edge_recall": recall}


@register("canny")
class Canny(Condition):
    """Canny edges of the grayscale photo; ``tolerance`` is the pixel slack the F1 score allows.

    Options: ``low_threshold`` (100), ``high_threshold`` (200), ``tolerance`` (2 px, for the score).
    """

    name = "canny"
    annotation_format = "edge-map"
    score_labels = {"edge_f1": "f1", "edge_precision": "precision", "edge_recall": "recall"}
    adherence_score = "edge_f1"
    adherence_higher_is_better = True
    found_label = "Detected edges"
    photo_hint = "Upload a photo or take one with the webcam; its edges are drawn, and the images keep them."

    def __init__(self, low_threshold: int = 100, high_threshold: int = 200, tolerance: int = 2) -> None:
        self.low_threshold = int(low_threshold)
        self.high_threshold = int(high_threshold)
        self.tolerance = int(tolerance)

    def describe(self) -> dict[str, str]:
        """Provenance for dataset cards."""
        return {
            "detector": f"cv2.Canny({self.low_threshold}, {self.high_threshold})",
            "detector_version": f"opencv {cv2.__version__}",
        }

    def annotate(self, image: Image.Image) -> np.ndarray:
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return cv2.Canny(gray, self.low_threshold, self.high_threshold)

    def render(self, annotation: np.ndarray, size: tuple[int, int]) -> Image.Image:
        return Image.fromarray(resize_edges(np.asarray(annotation, np.uint8), size)).convert("RGB")

    def score(self, generated: Image.Image, annotation: np.ndarray) -> dict[str, float]:
        """Edge F1 between the generated image's edges (at the annotation's size) and the input edges."""
        h, w = annotation.shape
        if generated.size != (w, h):
            generated = generated.resize((w, h), Image.Resampling.BICUBIC)
        return edge_scores(self.annotate(generated), annotation, self.tolerance)

    def flip(self, annotation: np.ndarray, width: int) -> np.ndarray:
        return np.ascontiguousarray(np.fliplr(annotation))

    def resize_center_crop(
        self, annotation: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]
    ) -> np.ndarray:
        """The edge map of an image resized-and-centre-cropped from ``from_size`` to ``to_size`` (w, h)."""
        geometry = resize_center_crop_geometry(from_size, to_size)
        resized = resize_edges(np.asarray(annotation, np.uint8), geometry.resized)
        return resized[geometry.top : geometry.top + to_size[1], geometry.left : geometry.left + to_size[0]]

    def to_record(self, annotation: np.ndarray) -> bytes:
        ok, png = cv2.imencode(".png", np.asarray(annotation, np.uint8))
        if not ok:
            raise ValueError("could not encode the edge map as PNG")
        return png.tobytes()

    def from_record(self, record: Any) -> np.ndarray:
        """PNG bytes (or a ``{"bytes": ...}`` dict, or nested lists) -> (H, W) uint8 {0, 255}."""
        if isinstance(record, dict):
            record = record["bytes"]
        if isinstance(record, bytes | bytearray | memoryview):
            edges = cv2.imdecode(np.frombuffer(record, np.uint8), cv2.IMREAD_GRAYSCALE)
        else:
            edges = np.asarray(record, np.uint8)
        return np.where(edges > 127, 255, 0).astype(np.uint8)

    def record_feature(self) -> Any:
        """The ``datasets`` feature of ``to_record``'s value."""
        import datasets

        return datasets.Value("binary")
