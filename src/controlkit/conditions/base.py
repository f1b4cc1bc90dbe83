"""What a condition is: the whole interface every stage uses, with the defaults a new condition inherits.

A condition turns a photo into a structured annotation (``annotate``), draws the annotation as the image
the ControlNet sees (``render``) and tells how well a generated image follows an annotation (``score``).
The rest lets the data builder, the trainer, generate and the app treat every condition alike: store an
annotation in a ``datasets`` column (``to_record``, ``from_record``, ``record_feature``), move it with its
image (``flip``, ``resize_center_crop``), describe where it came from (``describe``), and the words the
stages show for it. Stages never test a condition's name: what differs per condition lives here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from controlkit.errors import UserError

Annotation = np.ndarray
"""Plain, serialisable data: (faces, 68, 2) float32 landmarks in pixels, an (H, W) uint8 edge map, ..."""


class Condition:
    """Subclass it, set ``name``, implement ``annotate`` and ``render``; override the rest as needed.

    Attributes: ``name`` (the registry key); ``annotation_format`` (what an annotation is, e.g. "ibug-68",
    so a source's ground truth of the same format can stand in for ``annotate``); ``default_caption``
    (the template captioner's sentence); ``nothing_found`` (the one-line message when a user's photo has
    nothing to annotate); ``found_label`` and ``photo_hint`` (the app's words for the drawing and the photo);
    ``score_labels`` (short names of ``score``'s keys, for captions under pictures);
    ``adherence_score`` (the ``score`` key that says how closely an image follows an annotation, which
    `data realify` thresholds; None when ``score`` has none) and ``adherence_higher_is_better`` (which way).
    """

    name: str = ""
    annotation_format: str | None = None
    score_labels: dict[str, str] = {}
    adherence_score: str | None = None
    adherence_higher_is_better: bool = False
    default_caption: str = "a photo"
    found_label: str = "What the condition finds"
    photo_hint: str = (
        "Upload a photo or take one with the webcam; what the condition finds in it is drawn, and the "
        "images follow it."
    )

    @property
    def nothing_found(self) -> str:
        return f"the {self.name} condition finds nothing in the photo; try another photo"

    def annotate(self, image: Image.Image) -> Annotation | None:
        """Photo -> annotation; None when nothing is found (no face, say)."""
        raise NotImplementedError

    def render(self, annotation: Annotation, size: tuple[int, int]) -> Image.Image:
        """Annotation -> the RGB conditioning image the ControlNet sees; size is (width, height)."""
        raise NotImplementedError

    def score(self, generated: Image.Image, annotation: Annotation) -> dict[str, float]:
        """Adherence: annotate the generated image again and compare it with ``annotation``.

        The default has no score ({}): the grids still show the images, but no figure is logged.
        """
        return {}

    def for_resolution(self, resolution: int) -> Condition:
        """This condition as it should score pictures generated at ``resolution`` px, even once they are
        enlarged for scoring (generate scores a 64 px output at the photo's working size); itself by
        default."""
        return self

    def is_empty(self, annotation: Annotation | None) -> bool:
        """Whether an annotation holds nothing (a photo kept with ``--keep-empty`` gets a black image)."""
        return annotation is None or len(annotation) == 0

    def flip(self, annotation: Annotation, width: int) -> Annotation:
        """The annotation of the horizontally flipped image, keeping its meaning (left/right swapped)."""
        raise NotImplementedError(f"the {self.name} condition cannot flip its annotations")

    def resize_center_crop(
        self, annotation: Annotation, from_size: tuple[int, int], to_size: tuple[int, int]
    ) -> Annotation:
        """The annotation of the image resized (aspect kept, covering) and centre-cropped to ``to_size``."""
        raise NotImplementedError(f"the {self.name} condition cannot move its annotations with a crop")

    def to_record(self, annotation: Annotation) -> Any:
        """Annotation -> a value a ``datasets`` column can store (nested lists by default)."""
        return np.asarray(annotation).tolist()

    def from_record(self, record: Any) -> Annotation:
        """The inverse of ``to_record``."""
        return np.asarray(record, dtype=np.float32)

    def record_feature(self) -> Any:
        """The ``datasets`` feature of ``to_record``'s value, so shards (even empty ones) share a schema;
        None lets ``datasets`` infer it from the values."""
        return None

    def describe(self) -> dict[str, str]:
        """Provenance for dataset cards: which detector made the annotations, which version."""
        return {"detector": type(self).__name__, "detector_version": "unknown"}

    def warm_up(self) -> None:
        """Load what ``annotate`` loads lazily (detector weights), so forked workers share it.

        A broken set-up (a missing extra, weights not found) is a UserError here, before any input is
        processed; a condition that cannot annotate a blank picture fails later, per input.
        """
        try:
            self.annotate(Image.new("RGB", (64, 64)))
        except UserError:
            raise
        except Exception:  # any other failure belongs to an input, not to the set-up
            pass


_CONTRACT = (
    "annotate", "render", "score", "for_resolution", "is_empty", "flip", "resize_center_crop", "to_record",
    "from_record", "record_feature", "describe", "warm_up",
)  # fmt: skip


class AdoptedCondition(Condition):
    """A plug-in object that follows the interface without subclassing ``Condition``: its own methods,
    and the base class's defaults for what it leaves out."""

    def __init__(self, inner: Any, name: str) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", name)
        for attribute in (
            "annotation_format", "score_labels", "adherence_score", "adherence_higher_is_better",
            "default_caption", "found_label", "photo_hint",
        ):  # fmt: skip
            if hasattr(inner, attribute):
                setattr(self, attribute, getattr(inner, attribute))
        for method in _CONTRACT:
            if method not in ("for_resolution", "describe") and callable(getattr(inner, method, None)):
                setattr(self, method, getattr(inner, method))

    @property
    def nothing_found(self) -> str:
        return getattr(self.inner, "nothing_found", None) or super().nothing_found

    def for_resolution(self, resolution: int) -> Condition:
        chosen = getattr(self.inner, "for_resolution", None)
        return as_condition(chosen(resolution), self.name) if callable(chosen) else self

    def describe(self) -> dict[str, str]:
        chosen = getattr(self.inner, "describe", None)
        if callable(chosen):
            return chosen()
        return {"detector": type(self.inner).__name__, "detector_version": "unknown"}

    def __getattr__(self, attribute: str) -> Any:
        try:
            inner = self.__dict__["inner"]
        except KeyError:  # while copy or pickle rebuilds the object
            raise AttributeError(attribute) from None
        return getattr(inner, attribute)


def as_condition(made: Any, name: str) -> Condition:
    """``made`` as a ``Condition``: itself when it subclasses one, else adopted when it can annotate and
    render; anything else is a one-line error naming the condition."""
    if isinstance(made, Condition):
        return made
    if callable(getattr(made, "annotate", None)) and callable(getattr(made, "render", None)):
        return AdoptedCondition(made, name)
    raise UserError(f"condition {name!r} made a {type(made).__name__}, which has no annotate() and render()")
