"""The ``facesynthetics:DIR`` source: Microsoft's FaceSynthetics as it ships, read in place.

The dataset (github.com/microsoft/FaceSynthetics) is a folder of ``{id}.png`` (a 512 x 512 rendered
face), ``{id}_seg.png`` (per-pixel classes, not used here) and ``{id}_ldmks.txt``: 70 lines of ``x y``
in the image's pixels, the 68 iBUG points then the two pupil centres. The 68 points are the input's
ground truth in the ``ibug-68`` format of the face-landmarks condition (``--landmarks ground-truth``);
the pupils are dropped, because the iBUG-68 annotation, its drawing and its score have no place for
them. The files state no sub-pixel convention; the points are taken as they are, pixel centres at
integers as controlkit's own (at most half a pixel off, 0.1% of a 512 px face).

A sample whose landmark file is missing or malformed is skipped with its reason, like any bad input.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controlkit.data.inputs import FileItem, InputError, InputItem, Loaded, Source

PREFIX = "facesynthetics:"
LANDMARK_SUFFIX = "_ldmks.txt"
SEGMENTATION_SUFFIX = "_seg"
POINTS_IN_FILE = 70
IBUG_POINTS = 68


def read_landmarks(path: Path) -> np.ndarray:
    """A ``{id}_ldmks.txt`` file -> the 68 iBUG points as float32 (1, 68, 2); InputError with the reason
    when it is missing or is not 70 lines of two finite numbers."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise InputError(f"no landmark file {path.name}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read landmark file {path.name}: {exc}".splitlines()[0]) from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != POINTS_IN_FILE:
        raise InputError(
            f"landmark file {path.name} has {len(lines)} lines, not {POINTS_IN_FILE} lines of 'x y'"
        )
    points = []
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        try:
            point = [float(part) for part in parts]
        except ValueError:
            point = []
        if len(point) != 2 or not all(math.isfinite(value) for value in point):
            raise InputError(f"landmark file {path.name} line {number} is not 'x y': {line.strip()[:40]!r}")
        points.append(point)
    return np.asarray(points[:IBUG_POINTS], np.float32)[None]


@dataclass
class FaceSyntheticsItem(FileItem):
    """One sample: its picture's file and its landmark file."""

    landmarks: str = ""

    def load(self, resolution: int | None) -> Loaded:
        ground_truth = read_landmarks(Path(self.landmarks))
        loaded = super().load(resolution)
        loaded.ground_truth = ground_truth
        return loaded


class FaceSyntheticsSource(Source):
    """Every ``{id}.png`` under a FaceSynthetics folder (recursively, sorted), with its landmark file."""

    annotation_format = "ibug-68"

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.files = sorted(
            p
            for p in self.root.rglob("*.png")
            if not p.stem.endswith(SEGMENTATION_SUFFIX)
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(self.root).parts)
        )
        self.description = f"FaceSynthetics {self.root.name}/ ({len(self.files)} images)"

    def __len__(self) -> int:
        return len(self.files)

    def items(self, skip: set[str] = frozenset(), limit: int | None = None) -> Iterator[InputItem]:
        for path in self.files[:limit]:
            key = path.relative_to(self.root).as_posix()
            if key not in skip:
                landmarks = path.with_name(path.stem + LANDMARK_SUFFIX)
                yield FaceSyntheticsItem(key=key, source=key, path=str(path), landmarks=str(landmarks))
