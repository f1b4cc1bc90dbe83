"""The ``synthetic-faces`` source: procedural faces drawn from their seeds, with exact iBUG-68 landmarks.

Each input is a seed; a worker draws its face at the build's resolution, so nothing is stored before the
build and the same seed gives the same pixels. A face brings its own ground truth (the landmarks it was
drawn from, for ``--landmarks ground-truth``) and its own caption (its attributes in words, which the
template captioner keeps).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from controlkit.data.inputs import InputItem, Loaded, Source

NAME = "synthetic-faces"
DEFAULT_SIZE = 256
"""The size the faces are drawn at when the build gives no ``--resolution``."""


@dataclass
class SyntheticFaceItem(InputItem):
    """One synthetic face: ``seed`` decides everything drawn."""

    seed: int

    def load(self, resolution: int | None) -> Loaded:
        from controlkit.data.synthetic_faces import describe, render_synthetic_face

        face = render_synthetic_face(self.seed, size=resolution or DEFAULT_SIZE)
        return Loaded(
            face.image.convert("RGB"), ground_truth=face.landmarks[None], caption=describe(face.attributes)
        )


class SyntheticSource(Source):
    """The first ``n`` procedural faces of the stream ``synthetic_faces(n, seed)`` draws."""

    annotation_format = "ibug-68"

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self.description = f"{NAME} (stream seed {seed}, {n} faces)"

    def __len__(self) -> int:
        return self.n

    def items(self, skip: set[str] = frozenset(), limit: int | None = None) -> Iterator[InputItem]:
        from controlkit.data.synthetic_faces import face_seed

        for index in range(min(self.n, limit or self.n)):
            key = f"face:{index}"
            if key not in skip:
                seed = face_seed(self.seed, index)
                yield SyntheticFaceItem(key=key, source=f"{NAME}:{self.seed}:{index}", seed=seed)
