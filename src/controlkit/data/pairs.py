"""The per-image function every engine runs: load -> (resize and crop) -> annotate -> render -> record.

The engines (``data.engines``) build it once per worker process, so the condition and its detector load
once; it never raises on a bad input: it returns a result whose ``reason`` says why the input was skipped.
A broken set-up (a ``UserError``: a missing extra, detector weights not found) is not the input's fault,
so it stops the build instead of skipping, and recording as done, every input.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from controlkit.conditions.geometry import resize_center_crop_image
from controlkit.data.inputs import InputError, InputItem, Loaded
from controlkit.errors import UserError

NOTHING_FOUND = "nothing found by the condition"


@dataclass(frozen=True)
class PairSettings:
    """What the per-image function needs; small and picklable so each worker can rebuild the condition."""

    condition: str
    condition_options: dict[str, Any] = field(default_factory=dict)
    resolution: int | None = None
    landmarks: str = "detector"
    keep_empty: bool = False


@dataclass
class PairResult:
    """One processed input: the row's fields when ``reason`` is None, else why it was skipped.

    ``caption`` is the input's own caption (None when it has none) and ``columns`` its source's other
    columns: the captioner, in the main process, reads them.
    """

    key: str
    source: str
    reason: str | None = None
    image: bytes | None = None
    conditioning_image: bytes | None = None
    annotation: Any = None
    empty: bool = False
    caption: str | None = None
    columns: dict[str, Any] = field(default_factory=dict)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _encode_like(image: Image.Image, original_format: str | None) -> bytes:
    """Re-encode a resized photo: JPEG stays JPEG (quality 95), everything else becomes lossless PNG."""
    if original_format == "JPEG":
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()
    return _png(image)


class PairMaker:
    """Callable ``InputItem -> PairResult``; build one per process."""

    def __init__(self, settings: PairSettings):
        from controlkit import conditions

        self.settings = settings
        self.condition = conditions.get(settings.condition, **settings.condition_options)

    def warm_up(self) -> None:
        """Load what the condition loads lazily (detector weights), so forked workers share it."""
        if self.settings.landmarks != "ground-truth":  # with ground truth the detector is never called
            self.condition.warm_up()

    def run(self, items: list[InputItem]) -> list[PairResult]:
        """The per-image function over a few inputs (an engine's unit of work)."""
        return [self(item) for item in items]

    def __call__(self, item: InputItem) -> PairResult:
        try:
            return self._make(item)
        except UserError:
            raise
        except InputError as exc:
            return PairResult(item.key, item.source, reason=str(exc))
        except Exception as exc:  # one bad input must never stop the build
            return PairResult(item.key, item.source, reason=f"{type(exc).__name__}: {exc}".splitlines()[0])

    def _make(self, item: InputItem) -> PairResult:
        settings, condition = self.settings, self.condition
        loaded = item.load(settings.resolution)
        image, data = self._fit(loaded)
        if settings.landmarks == "ground-truth":
            annotation = loaded.ground_truth
            if annotation is not None and image.size != loaded.image.size:
                annotation = condition.resize_center_crop(annotation, loaded.image.size, image.size)
        else:
            annotation = condition.annotate(image)
        empty = condition.is_empty(annotation)
        if empty and not settings.keep_empty:
            return PairResult(item.key, item.source, reason=NOTHING_FOUND)
        size = image.size
        conditioning = Image.new("RGB", size) if empty else condition.render(annotation, size=size)
        return PairResult(
            key=item.key,
            source=item.source,
            image=data if data is not None else _png(image),
            conditioning_image=_png(conditioning),
            annotation=None if empty else condition.to_record(annotation),
            empty=empty,
            caption=loaded.caption,
            columns=loaded.columns,
        )

    def _fit(self, loaded: Loaded) -> tuple[Image.Image, bytes | None]:
        """The picture at the build's resolution, and its bytes: the original ones unless it was resized."""
        resolution = self.settings.resolution
        if not resolution or loaded.image.size == (resolution, resolution):
            return loaded.image, loaded.data
        image = resize_center_crop_image(loaded.image, (resolution, resolution))
        return image, _encode_like(image, loaded.image_format)
