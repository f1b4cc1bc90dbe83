"""The per-image function every engine runs: decode -> (resize and crop) -> annotate -> render -> record.

It is a picklable callable built once per worker process (the condition and its detector load once),
and it never raises on a bad input: it returns a result whose ``reason`` says why the input was skipped.
A broken set-up (a ``UserError``: a missing extra, detector weights not found) is not the input's fault,
so it stops the build instead of skipping, and recording as done, every input.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from controlkit.conditions.geometry import resize_center_crop_image
from controlkit.data.sources import InputItem
from controlkit.errors import UserError

NO_FACE = "nothing found by the condition"
DEFAULT_SYNTHETIC_SIZE = 256


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
    """One processed input: the row's fields when ``reason`` is None, else why it was skipped."""

    key: str
    source: str
    reason: str | None = None
    image: bytes | None = None
    conditioning_image: bytes | None = None
    annotation: Any = None
    empty: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


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


def decode(data: bytes) -> tuple[Image.Image, str | None]:
    """Bytes -> RGB image upright as ``datasets`` shows it (EXIF orientation applied), and its format."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        image_format = opened.format
        image = ImageOps.exif_transpose(opened).convert("RGB")
    return image, image_format


class PairMaker:
    """Callable ``InputItem -> PairResult``; build one per process."""

    def __init__(self, settings: PairSettings):
        from controlkit import conditions

        self.settings = settings
        self.condition = conditions.get(settings.condition, **settings.condition_options)

    def warm_up(self) -> None:
        """Load what the condition loads lazily (detector weights), so forked workers share it."""
        if self.settings.landmarks == "ground-truth":
            return  # the detector is never called
        try:
            self.condition.annotate(Image.new("RGB", (64, 64)))
        except UserError:
            raise
        except Exception:  # a condition that cannot annotate a blank picture fails later, per input
            pass

    def __call__(self, item: InputItem) -> PairResult:
        try:
            return self._make(item)
        except UserError:
            raise
        except Exception as exc:  # one bad input must never stop the build
            return PairResult(item.key, item.source, reason=f"{type(exc).__name__}: {exc}".splitlines()[0])

    def _make(self, item: InputItem) -> PairResult:
        settings = self.settings
        extra = dict(item.extra)
        if item.seed is not None:
            from controlkit.data.synthetic_faces import render_synthetic_face

            face = render_synthetic_face(item.seed, size=settings.resolution or DEFAULT_SYNTHETIC_SIZE)
            image, data = face.image.convert("RGB"), None
            extra["attributes"] = face.attributes
            ground_truth = face.landmarks[None]
        else:
            data = item.data if item.data is not None else Path(item.path).read_bytes()
            try:
                image, image_format = decode(data)
            except UnidentifiedImageError:
                return PairResult(
                    item.key, item.source, reason="cannot decode image: unknown or corrupt format"
                )
            except Exception as exc:
                return PairResult(item.key, item.source, reason=f"cannot decode image: {exc}".splitlines()[0])
            if settings.resolution and image.size != (settings.resolution,) * 2:
                image = resize_center_crop_image(image, (settings.resolution, settings.resolution))
                data = _encode_like(image, image_format)
            ground_truth = None
        annotation = ground_truth if settings.landmarks == "ground-truth" else self.condition.annotate(image)
        empty = annotation is None or len(annotation) == 0
        if empty and not settings.keep_empty:
            return PairResult(item.key, item.source, reason=NO_FACE)
        conditioning = (
            Image.new("RGB", image.size) if empty else self.condition.render(annotation, size=image.size)
        )
        return PairResult(
            key=item.key,
            source=item.source,
            image=data if data is not None else _png(image),
            conditioning_image=_png(conditioning),
            annotation=None if empty else self.condition.to_record(annotation),
            empty=empty,
            extra=extra,
        )


_worker_maker: PairMaker | None = None


def init_worker(settings: PairSettings, maker: PairMaker | None = None) -> None:
    """Pool initializer: one OpenCV thread per process, and the condition built once.

    A forked worker receives the parent's warmed-up ``maker`` (no pickling under fork), so the
    detector's weights are loaded once and shared copy-on-write; otherwise each worker builds its own.
    torch's thread count is left alone: in a child forked after the parent ran an OpenMP region, any
    OpenMP call (``torch.set_num_threads`` included) hangs for ever.
    """
    global _worker_maker
    import cv2

    cv2.setNumThreads(1)
    _worker_maker = maker if maker is not None else PairMaker(settings)


def work(item: InputItem) -> PairResult:
    """Pool task: the per-image function with this worker's condition."""
    assert _worker_maker is not None, "init_worker was not called in this process"
    return _worker_maker(item)


def work_chunk(items: list[InputItem]) -> list[PairResult]:
    """Pool task: the per-image function over a few inputs."""
    return [work(item) for item in items]
