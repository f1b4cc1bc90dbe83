"""Procedural faces with ground-truth 68-point landmarks: the embedded default dataset.

It plays the part FaceSynthetics plays in the walkthrough, without a download: a 3D iBUG-68 face
(``face_geometry``) gets an identity, an expression and a head pose, and the picture is drawn with OpenCV
from the very same projected points, so the landmarks are exact. Deterministic by seed; a few hundred
images per second at 256 px on one core.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

from controlkit.data import face_geometry as fg

SKIN_TONES = {
    "pale": (240, 210, 192),
    "light": (226, 186, 152),
    "medium": (200, 152, 114),
    "olive": (180, 136, 96),
    "tan": (162, 112, 76),
    "brown": (122, 82, 56),
    "dark": (86, 58, 42),
}
HAIR_COLOURS = {
    "black": (28, 24, 24),
    "dark brown": (62, 42, 30),
    "brown": (108, 72, 44),
    "auburn": (132, 62, 34),
    "blonde": (210, 176, 116),
    "grey": (165, 162, 158),
}
EYE_COLOURS = {
    "brown": (96, 58, 32),
    "dark": (50, 34, 24),
    "blue": (72, 116, 170),
    "green": (86, 126, 76),
    "grey": (116, 126, 132),
}
BACKGROUNDS = {
    "blue": (70, 110, 190),
    "green": (84, 150, 92),
    "red": (176, 58, 58),
    "yellow": (222, 200, 92),
    "purple": (128, 82, 160),
    "grey": (128, 128, 128),
    "white": (232, 232, 228),
    "orange": (226, 140, 62),
    "teal": (48, 138, 140),
    "pink": (226, 150, 182),
    "black": (26, 26, 30),
}
HAIR_STYLES = {
    "woman": {"long": 0.4, "bob": 0.2, "bun": 0.15, "curly": 0.1, "fringe": 0.1, "short": 0.05},
    "man": {"short": 0.5, "bald": 0.15, "curly": 0.15, "fringe": 0.1, "long": 0.1},
}
_HAIR_PHRASES = {
    "short": "short {c} hair",
    "long": "long {c} hair",
    "bob": "a {c} bob",
    "bun": "{c} hair in a bun",
    "curly": "curly {c} hair",
    "fringe": "a {c} fringe",
}
_HAIR_VOLUME = {"short": 1.06, "long": 1.12, "bob": 1.13, "bun": 1.05, "curly": 1.28, "fringe": 1.1}
# Brow thickness along the left and the right brow (13 curve points each): thickest at the inner end.
_BROW_TAPERS = np.stack([np.linspace(0.45, 1.0, 13), np.linspace(1.0, 0.45, 13)])[..., None]


def _ear_points() -> np.ndarray:
    """Outlines (2 x 14 points) then inner folds (2 x 6 points) of both ears, in model units."""
    t = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    rings = [
        np.stack(
            [side * (0.97 + 0.12 * (1 + np.cos(t))), 0.22 + 0.34 * np.sin(t), -0.42 + 0.2 * np.cos(t)], 1
        )
        for side in (-1.0, 1.0)
    ]
    folds = [
        ring[3:9] * [0.97, 1.0, 1.0] + [side * 0.04, 0.0, 0.0]
        for ring, side in zip(rings, (-1, 1), strict=True)
    ]
    return np.concatenate(rings + folds)


_EARS = _ear_points()
_WING_UP, _WING_OUT = np.array([0.14, 0.04, -0.01]), np.array([0.0, 0.04, 0.0])
_BUN = np.array([[0.0, -1.45, -1.0]])
_MUZZLE = np.r_[6:11, 27:36, 48:60]  # chin, nose and lips: they stick out past the cheek on a turned head
_BODY = np.array([[0.0, 3.7, -0.4], [0.62, 2.6, -0.35], [-0.62, 2.6, -0.35]])  # shoulders, neck base
_NECK_TOP = np.array([[-0.5, 0.6, -0.35], [0.5, 0.6, -0.35]])
_STRAND_T = np.linspace(0.0, 1.0, 6)[None, :, None]
_STRAND_WAVE = 0.25 * np.sin(np.pi * _STRAND_T[..., 0])  # locks bow away from a parting
_CROWN = np.array([0.0, -1.7, -0.65])  # where the locks meet, behind the top of the head
_SHADE_ELLIPSOID = (np.array([0.0, 0.0, -0.3]), np.array([1.12, 1.85, 1.35]))


@dataclass
class SyntheticFace:
    """One drawn face: the picture, its exact iBUG-68 landmarks (68, 2) in pixels, and what was drawn."""

    image: Image.Image
    landmarks: np.ndarray
    attributes: dict


def face_seed(seed: int, index: int) -> int:
    """The seed of face ``index`` in the stream started by ``seed``: a hash of both, so streams differ."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def synthetic_faces(n: int, seed: int = 0, size: int = 256) -> Iterator[SyntheticFace]:
    """``n`` faces; face ``i`` is ``render_synthetic_face(face_seed(seed, i), size)``."""
    for i in range(n):
        yield render_synthetic_face(face_seed(seed, i), size)


def render_synthetic_face(seed: int, size: int = 256) -> SyntheticFace:
    """Draw the face of ``seed`` at ``size`` x ``size`` pixels; the same seed gives the same pixels."""
    attributes = sample_attributes(np.random.default_rng(seed))
    attributes["seed"] = int(seed)
    return render_attributes(attributes, size)


def render_attributes(attributes: dict, size: int = 256) -> SyntheticFace:
    """Draw a face from explicit attributes (as ``sample_attributes`` makes them; edit them to steer a face).

    Position and scale are fractions of ``size``, so one set of attributes gives the same face at any size.
    """
    attributes = dict(attributes)  # the painter records the fitted scale and centre in its copy
    image, landmarks = _Painter(attributes, size).paint()
    return SyntheticFace(Image.fromarray(image, "RGB"), landmarks, attributes)


def describe(attributes: dict) -> str:
    """A caption from the attributes, e.g. 'a close-up photo of a smiling woman with long blonde hair and
    an open mouth, turned to the left, on a blue background'."""
    words = ["smiling"] if attributes["smile"] >= 0.5 else []
    if attributes["hair"] == "bald":
        words.append("bald")
    words.append(attributes["gender"])
    details = []
    if attributes["hair"] != "bald":
        details.append(_HAIR_PHRASES[attributes["hair"]].format(c=attributes["hair_colour"]))
    if attributes.get("beard"):
        details.append("a beard")
    if attributes["mouth_open"] >= 0.35:
        details.append("an open mouth")
    if attributes["eyes_open"] < 0.5:
        details.append("half-closed eyes")
    text = "a close-up photo of a " + " ".join(words)
    if details:
        text += " with " + (
            ", ".join(details[:-1]) + " and " + details[-1] if len(details) > 1 else details[0]
        )
    yaw, pitch = attributes["yaw"], attributes["pitch"]
    if abs(yaw) >= 15:
        text += ", turned to the " + ("right" if yaw > 0 else "left")
    elif abs(pitch) >= 12:
        text += ", looking " + ("up" if pitch > 0 else "down")
    else:
        text += ", facing the camera"
    background = attributes["background"]
    return text + f", on {'an' if background[0] in 'aeiou' else 'a'} {background} background"


def caption_words() -> list[str]:
    """Every word ``describe`` can write, for building a small tokenizer's vocabulary."""
    fixed = "a close-up photo of smiling bald woman man with and beard an open mouth half-closed eyes"
    fixed += " turned to the right left looking up down facing camera on background hair in bun bob fringe"
    fixed += " long short curly"
    names = [w for group in (HAIR_COLOURS, BACKGROUNDS) for name in group for w in name.split()]
    return sorted(set(fixed.split()) | set(names))


class _Draws:
    """Random numbers drawn in two batches up front: sampling a face costs two generator calls, not fifty."""

    def __init__(self, rng: np.random.Generator):
        self.u = iter(rng.random(64).tolist())
        self.z = iter(rng.standard_normal(24).tolist())

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * next(self.u)

    def chance(self, p: float) -> bool:
        return next(self.u) < p

    def normal(self, sd: float, limit: float) -> float:
        return min(limit, max(-limit, sd * next(self.z)))

    def choice(self, options: dict) -> str:
        """A key of ``options``: uniformly, or weighted by the values when they are numbers."""
        names, values = list(options), list(options.values())
        if not isinstance(values[0], float):
            return names[min(int(next(self.u) * len(names)), len(names) - 1)]
        x, total = next(self.u) * sum(values), 0.0
        for name, weight in zip(names, values, strict=True):
            total += weight
            if x < total:
                return name
        return names[-1]

    def jitter(self, colour: tuple[int, ...], amount: float) -> list[int]:
        return [int(min(255.0, max(0.0, c + amount * next(self.z)))) for c in colour]


def sample_attributes(rng: np.random.Generator) -> dict:
    """Every random choice of a face, as plain values (they go into dataset rows and captions)."""
    d = _Draws(rng)
    gender = "woman" if d.chance(0.5) else "man"
    man = gender == "man"
    skin, hair_colour = d.choice(SKIN_TONES), d.choice(HAIR_COLOURS)
    background, eye_colour = d.choice(BACKGROUNDS), d.choice(EYE_COLOURS)
    skin_rgb = d.jitter(SKIN_TONES[skin], 6)
    lipstick = (not man) and d.chance(0.3)
    lip_target = (150, 40, 60) if lipstick else (172, 72, 80)
    lip_mix = 0.55 if lipstick else 0.36 + 0.08 * (not man)
    lip_rgb = [int(c * (1 - lip_mix) * 0.92 + t * lip_mix) for c, t in zip(skin_rgb, lip_target, strict=True)]
    elevation, azimuth = np.radians(d.uniform(10, 50)), np.radians(d.uniform(-60, 60))
    scale = d.uniform(0.17, 0.26)
    return {
        "gender": gender,
        "yaw": d.normal(18, 40),
        "pitch": d.normal(8, 20),
        "roll": d.normal(8, 20),
        "scale": scale,  # pixels per model unit, as a fraction of the image size
        "centre": [0.5 + d.normal(0.04, 0.1), 0.5 + 0.3 * scale + d.normal(0.03, 0.08)],
        "mouth_open": 0.0 if d.chance(0.5) else d.uniform(0.15, 1.0),
        "smile": 0.0 if d.chance(0.4) else d.uniform(0.2, 1.0),
        "eyes_open": d.uniform(0.8, 1.0) if d.chance(0.8) else d.uniform(0.25, 0.6),
        "brow_raise": d.uniform(-0.6, 1.0),
        "identity": {
            "face_width": d.uniform(0.92, 1.05) + 0.03 * man,
            "jaw_width": d.uniform(0.98, 1.12) if man else d.uniform(0.86, 1.0),
            "face_length": d.uniform(0.92, 1.08),
            "eye_spacing": d.uniform(0.93, 1.07),
            "eye_size": d.uniform(0.88, 1.12) + 0.05 * (not man),
            "nose_length": d.uniform(0.88, 1.12),
            "nose_width": d.uniform(0.85, 1.2),
            "mouth_width": d.uniform(0.88, 1.12),
            "lip_thickness": d.uniform(0.75, 1.1) if man else d.uniform(0.95, 1.35),
            "brow_height": d.uniform(-0.04, 0.05),
        },
        "skin": skin,
        "skin_rgb": skin_rgb,
        "lip_rgb": lip_rgb,
        "hair": d.choice(HAIR_STYLES[gender]),
        "hair_colour": hair_colour,
        "hair_rgb": d.jitter(HAIR_COLOURS[hair_colour], 8),
        "eye_colour": eye_colour,
        "eye_rgb": d.jitter(EYE_COLOURS[eye_colour], 8),
        "beard": man and d.chance(0.2),
        "background": background,
        "background_rgb": d.jitter(BACKGROUNDS[background], 10),
        "background_gradient": [d.uniform(0.65, 1.15) for _ in range(4)],  # brightness at the corners
        "clothes_rgb": [int(d.uniform(20, 230)) for _ in range(3)],
        "light": [
            float(np.sin(azimuth) * np.cos(elevation)),
            float(-np.sin(elevation)),
            float(np.cos(azimuth) * np.cos(elevation)),
        ],
        "ambient": d.uniform(0.4, 0.55),
        "hairline": d.uniform(-0.92, -0.82),
        "grain_offset": [d.uniform(0, 1), d.uniform(0, 1)],
    }


@lru_cache(maxsize=4)
def _grain(size: int) -> np.ndarray:
    """Fixed multiplicative noise (uint8, 128 = 1), twice the image size, cropped at random offsets."""
    noise = np.random.default_rng(12345).normal(128.0, 3.0, (2 * size, 2 * size))
    return np.clip(np.round(noise), 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _arc_steps(n: int) -> np.ndarray:
    """Fractions of the way along one side of the skull's silhouette, for an n-point-a-side arc."""
    return np.linspace(0.0, 1.0, n)


@lru_cache(maxsize=8)
def _arc_sides(n: int) -> np.ndarray:
    """Which side each point of an n-point-a-side skull arc is on: right (+1) going up, then left (-1)."""
    return np.repeat([1.0, -1.0], n)


@lru_cache(maxsize=8)
def _catmull_basis(per_segment: int) -> np.ndarray:
    """(per_segment, 4) weights of the four control points of a Catmull-Rom segment."""
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    return 0.5 * np.concatenate(
        [-t + 2 * t**2 - t**3, 2 - 5 * t**2 + 3 * t**3, t + 4 * t**2 - 3 * t**3, -(t**2) + t**3], axis=1
    )


@lru_cache(maxsize=64)
def _catmull_windows(count: int, closed: bool) -> np.ndarray:
    """(segments, 4) indices of the control points around each segment of a curve through ``count`` points."""
    segments = count if closed else count - 1
    idx = np.arange(segments)[:, None] + np.arange(-1, 3)[None, :]
    return idx % count if closed else np.clip(idx, 0, count - 1)


def _catmull_rom(points: np.ndarray, per_segment: int, closed: bool) -> np.ndarray:
    """Smooth curves through ``points`` (..., k, 2): one per leading index."""
    windows = points[..., _catmull_windows(points.shape[-2], closed), :]  # (..., segments, 4, 2)
    curve = (_catmull_basis(per_segment) @ windows).reshape(*points.shape[:-2], -1, 2)
    return curve if closed else np.concatenate([curve, points[..., -1:, :]], axis=-2)


def _fx(xy: np.ndarray) -> np.ndarray:
    """Pixel coordinates (k, 2) -> OpenCV fixed point (shift=4) for sub-pixel drawing."""
    return (xy * 16.0 + 0.5).astype(np.int32)


def _fill_mask(mask: np.ndarray, xy: np.ndarray) -> None:
    cv2.fillPoly(mask, [_fx(xy)], 255, cv2.LINE_AA, 4)


def _fill(img: np.ndarray, xy: np.ndarray, colour) -> None:
    cv2.fillPoly(img, [_fx(xy)], colour, cv2.LINE_AA, 4)


def _line(img: np.ndarray, xy: np.ndarray, colour, thickness: float, closed: bool = False) -> None:
    cv2.polylines(img, [_fx(xy)], closed, colour, max(1, int(thickness)), cv2.LINE_AA, 4)


def _ellipse(img: np.ndarray, centre, axes, angle: float, colour, thickness: int = -1) -> None:
    centre_fx = (int(centre[0] * 16.0 + 0.5), int(centre[1] * 16.0 + 0.5))
    axes_fx = (int(axes[0] * 16.0), int(axes[1] * 16.0))
    cv2.ellipse(img, centre_fx, axes_fx, angle, 0, 360, colour, thickness, cv2.LINE_AA, 4)


def _shade(colour, factor: float) -> tuple[int, int, int]:
    r, g, b = colour
    return int(min(255, r * factor)), int(min(255, g * factor)), int(min(255, b * factor))


class _Painter:
    """Draws one face back to front; every shape comes from the same projected 3D model as the landmarks."""

    def __init__(self, a: dict, size: int):
        self.a, self.size = a, size
        self.identity = fg.Identity(**a["identity"])
        self.expression = fg.Expression(a["mouth_open"], a["smile"], a["eyes_open"], a["brow_raise"])
        centre = (a["centre"][0] * size, a["centre"][1] * size)
        self.pose = fg.Pose(a["yaw"], a["pitch"], a["roll"], a["scale"] * size, centre)
        self.model = fg.landmarks_3d(self.identity, self.expression, self.pose.yaw)
        self.r = fg.rotation(self.pose.yaw, self.pose.pitch, self.pose.roll)
        self._fit()
        up = self.r @ np.array([0.0, -1.0, 0.0])
        self.up = up[:2] / np.linalg.norm(up[:2])
        self.right = np.array([-self.up[1], self.up[0]])
        self.angle = float(np.degrees(np.arctan2(self.right[1], self.right[0])))  # of the eye line, on screen
        self.s = self.pose.scale

    def _fit(self) -> None:
        """Shrink and shift the head until every landmark is inside the image with a margin."""
        margin = 0.04 * self.size
        for _ in range(3):
            lm = self.px(self.model)
            lo, hi = lm.min(axis=0), lm.max(axis=0)
            room = self.size - 2 * margin
            shrink = min(1.0, room / max(hi[0] - lo[0], 1e-6), room / max(hi[1] - lo[1], 1e-6))
            if shrink < 1.0:
                self.pose.scale *= shrink * 0.98
                continue
            shift = np.maximum(margin - lo, 0) - np.maximum(hi - (self.size - margin), 0)
            if not shift.any():
                break
            self.pose.centre = (self.pose.centre[0] + shift[0], self.pose.centre[1] + shift[1])
        else:
            lm = self.px(self.model)
        self.lm = lm
        self.a["scale"] = float(self.pose.scale / self.size)
        self.a["centre"] = [float(c / self.size) for c in self.pose.centre]

    def px(self, model_points: np.ndarray, pose: fg.Pose | None = None) -> np.ndarray:
        """Model points -> pixels, with the head's pose (or another, e.g. the body's)."""
        if pose is None:
            return fg.project(fg.transform(model_points, self.r), self.pose)
        return fg.project(fg.transform(model_points, fg.rotation(pose.yaw, pose.pitch, pose.roll)), pose)

    # -- 3D outlines -------------------------------------------------------------------------------------
    def _cranium_arc(
        self, y_left: float, y_right: float, inflate: float, n: int = 9, curly: bool = False
    ) -> np.ndarray:
        """Silhouette of the skull from height y_right on the right side, over the top, down to y_left.

        With ``inflate`` > 1 it is a head of hair: fuller towards the crown, and bumpy when ``curly``."""
        top = fg.CRANIUM_CENTRE[1] - fg.CRANIUM_AXES[1] * inflate + 1e-3
        step = _arc_steps(n)
        ys = np.concatenate([y_right + (top - y_right) * step, top + (y_left - top) * step])
        a, c = fg.cranium_section(ys, inflate)
        xz = fg.silhouette(a, c, fg.CRANIUM_CENTRE[2], _arc_sides(n), self.pose.yaw)
        arc = np.stack([xz[:, 0], ys, xz[:, 1]], axis=1)
        if inflate > 1.0:
            rel = arc - fg.CRANIUM_CENTRE
            height = np.clip(-rel[:, 1] / fg.CRANIUM_AXES[1], 0.0, 1.0)
            grow = 1.0 + (inflate - 1.0) * (0.4 + 0.6 * height)
            if curly:
                grow = grow + 0.035 * np.sin(np.linspace(0, 9 * np.pi, len(arc)))
            arc = fg.CRANIUM_CENTRE + rel * grow[:, None]
        return arc

    def _hairline(self, height: float, inflate: float = 1.02, n: int = 15) -> np.ndarray:
        """Where skin meets hair, across the forehead and down to the temples, left to right."""
        psi = np.linspace(-1.0, 1.0, n) * np.radians(100)
        ys = height + (0.0 - height) * np.abs(psi / psi[-1]) ** 2.5
        a, c = fg.cranium_section(ys, inflate)
        t = np.radians(self.pose.yaw)
        lo = np.arctan2(-a * np.cos(t), -c * np.sin(t))
        hi = np.arctan2(a * np.cos(t), c * np.sin(t))
        psi = np.clip(psi, lo + 0.05, hi - 0.05)
        return np.stack([a * np.sin(psi), ys, fg.CRANIUM_CENTRE[2] + c * np.cos(psi)], axis=1)

    # -- painting -------------------------------------------------------------------------------------------
    def _outlines(self, hair: str, volume: float) -> dict[str, np.ndarray]:
        """The 3D outlines that turn with the head (skull, hairline, hair, locks, ears), projected at once."""
        parts = {"skull": self._cranium_arc(self.model[0, 1], self.model[16, 1], 1.0), "ears": _EARS}
        if hair != "bald":
            line = self._hairline(-0.5 if hair == "fringe" else self.a["hairline"])
            parts["hairline"] = line
            parts["cap"] = self._cranium_arc(line[0, 1], line[-1, 1], volume, n=14, curly=hair == "curly")
            locks, self.lock_visible = self._locks(line, volume)
            parts["locks"] = locks.reshape(-1, 3)
        if hair in ("long", "bob"):
            long = hair == "long"
            bottom, width = (2.9, 1.35) if long else (1.45, 1.2)
            curtain = [[-width, bottom, -0.4], [width, bottom, -0.4], [-1.15, 0.4, -0.4], [1.15, 0.4, -0.4]]
            parts["back"] = np.concatenate([self._cranium_arc(0.3, 0.3, volume), curtain])
        elif hair == "bun":
            parts["back"] = _BUN
        names = list(parts)
        projected = self.px(np.concatenate([parts[n] for n in names]))
        ends = np.cumsum([len(parts[n]) for n in names])[:-1]
        return dict(zip(names, np.split(projected, ends), strict=True))

    def paint(self) -> tuple[np.ndarray, np.ndarray]:
        """The RGB picture (uint8) and the landmarks (68, 2) it was drawn from."""
        a, size = self.a, self.size
        img = self._background()
        self.mask = np.zeros((size, size), np.uint8)  # where the head is: lambert shading applies
        self.dark = np.zeros((size // 2, size // 2), np.uint8)  # soft shadows at half size, blurred
        lm = self.lm
        skin, hair = tuple(a["skin_rgb"]), a["hair"]
        volume = _HAIR_VOLUME.get(hair, 1.0)
        out = self._outlines(hair, volume)
        hair_back = _shade(a["hair_rgb"], 0.8)
        if hair in ("long", "bob"):
            _fill(img, cv2.convexHull(out["back"].astype(np.float32)).reshape(-1, 2), hair_back)
        elif hair == "bun":
            _ellipse(img, out["back"][0], (0.5 * self.s, 0.5 * self.s), 0.0, hair_back)
        self._body(img, skin)
        if hair not in ("long", "bob"):
            self._ears(img, skin, out["ears"])
        jaw = _catmull_rom(lm[:17], 3, closed=False)  # the drawn outline passes through every jaw point
        if hair == "bald":
            head = np.concatenate([jaw, out["skull"]])
            _fill(img, head, skin)
            _fill_mask(self.mask, head)
        else:
            # Hair, reaching a little under the hairline so that the face drawn over it leaves no seam.
            line = out["hairline"]
            cap = _catmull_rom(np.concatenate([line - self.up * (0.03 * self.s), out["cap"]]), 2, closed=True)
            _fill(img, cap, tuple(a["hair_rgb"]))
            _fill_mask(self.mask, cap)
            self._draw_locks(img, out["locks"].reshape(-1, 6, 2))
            face = np.concatenate([jaw, line[::-1]])
            _fill(img, face, skin)
            _fill_mask(self.mask, face)
        if abs(self.pose.yaw) > 20:  # then the nose and lips stick out past the cheek's outline
            muzzle = cv2.convexHull(lm[_MUZZLE].astype(np.float32)).reshape(-1, 2)
            _fill(img, muzzle, skin)
            _fill_mask(self.mask, muzzle)
        if a["beard"]:
            self._beard()
        self._brows(img)
        self._eyes(img, skin)
        self._nose(img, skin)
        self._mouth(img)
        return self._finish(img), lm.astype(np.float32)

    def _shadow_poly(self, xy: np.ndarray, value: int) -> None:
        _fill(self.dark, xy * 0.5, value)

    def _shadow_line(self, xy: np.ndarray, value: int, thickness: float) -> None:
        _line(self.dark, xy * 0.5, value, thickness * 0.5)

    def _shadow_ellipse(self, centre: np.ndarray, axes: tuple[float, float], value: int) -> None:
        _ellipse(self.dark, centre * 0.5, (axes[0] * 0.5, axes[1] * 0.5), self.angle, value)

    def _background(self) -> np.ndarray:
        base = np.asarray(self.a["background_rgb"], np.float32)
        gain = np.asarray(self.a["background_gradient"], np.float32).reshape(2, 2, 1)
        corners = np.clip(base * gain, 0, 255).astype(np.uint8)
        return cv2.resize(corners, (self.size, self.size), interpolation=cv2.INTER_LINEAR)

    def _locks(self, line: np.ndarray, volume: float) -> tuple[np.ndarray, np.ndarray]:
        """Locks of hair from the hairline to the crown on the hair's surface (13 x 6 points, model units),
        and which of their points face the camera."""
        starts = line[1:-1, None, :]
        path = starts * (1.0 - _STRAND_T) + _CROWN * _STRAND_T
        path[..., 0] += _STRAND_WAVE * np.sign(starts[..., 0] - 0.3)
        axes = fg.CRANIUM_AXES * (volume * 0.99)
        rel = (path - fg.CRANIUM_CENTRE) / axes
        rel /= np.sqrt((rel * rel).sum(axis=-1, keepdims=True))
        return fg.CRANIUM_CENTRE + rel * axes, (rel @ self.r[2]) > 0.1

    def _draw_locks(self, img: np.ndarray, locks: np.ndarray) -> None:
        """Alternate lighter and darker locks, drawn where they face the camera."""
        curves, visible = _fx(locks), self.lock_visible
        thickness = max(1, int(self.s * 0.03))
        for parity, tone in ((0, 0.85), (1, 1.15)):
            kept = [c[v] for c, v in zip(curves[parity::2], visible[parity::2], strict=True) if v.sum() > 1]
            cv2.polylines(img, kept, False, _shade(self.a["hair_rgb"], tone), thickness, cv2.LINE_AA, 4)

    def _body(self, img: np.ndarray, skin) -> None:
        """Shoulders and neck, turned and tilted less than the head."""
        body_pose = fg.Pose(
            self.pose.yaw * 0.25, 0.0, self.pose.roll * 0.3, self.pose.scale, self.pose.centre
        )
        shoulders, *neck_base = self.px(_BODY, body_pose)
        _ellipse(img, shoulders, (2.9 * self.s, 1.5 * self.s), body_pose.roll, tuple(self.a["clothes_rgb"]))
        _fill(img, np.concatenate([self.px(_NECK_TOP), neck_base]), _shade(skin, 0.68))

    def _ears(self, img: np.ndarray, skin, ears: np.ndarray) -> None:
        outline, inner = np.split(ears, [28])
        hulls = [_fx(cv2.convexHull(outline[k : k + 14].astype(np.float32))) for k in (0, 14)]
        cv2.fillPoly(img, hulls, _shade(skin, 0.9), cv2.LINE_AA, 4)
        cv2.fillPoly(self.mask, hulls, 255, cv2.LINE_AA, 4)
        folds = [_fx(inner[:6]), _fx(inner[6:])]
        cv2.polylines(img, folds, False, _shade(skin, 0.7), max(1, int(self.s * 0.04)), cv2.LINE_AA, 4)

    def _beard(self) -> None:
        lm = self.lm
        lower = np.concatenate([lm[3:14], lm[[54]] + self.right * 0.06 * self.s, lm[[35, 33, 31]]])
        lower = np.concatenate([lower, lm[[48]] - self.right * 0.06 * self.s])
        self._shadow_poly(lower, 150)

    def _brows(self, img: np.ndarray) -> None:
        colour = tuple(
            int(v * 0.55 + d * 0.45) for v, d in zip(self.a["hair_rgb"], (40, 30, 24), strict=True)
        )
        half = (0.5 * (0.085 if self.a["gender"] == "man" else 0.065) * self.s) * _BROW_TAPERS
        curves = _catmull_rom(self.lm[17:27].reshape(2, 5, 2), 3, closed=False)
        shapes = np.concatenate(
            [curves + self.up * (half * 0.8), (curves - self.up * (half * 1.2))[:, ::-1]], 1
        )
        cv2.fillPoly(img, list(_fx(shapes)), colour, cv2.LINE_AA, 4)

    def _clipped(self, img: np.ndarray, outlines: list[np.ndarray], paint) -> None:
        """Run ``paint(canvas, origin)`` on a copy of the pixels around ``outlines``; keep what falls inside
        them (eyeballs inside the lids, teeth inside the lips). Lid or lip lines then cover their edges."""
        everything = np.concatenate(outlines)
        x0, y0 = np.maximum(everything.min(axis=0).astype(int) - 1, 0)
        x1, y1 = np.minimum(everything.max(axis=0).astype(int) + 2, self.size)
        if x1 <= x0 or y1 <= y0:
            return
        roi = img[y0:y1, x0:x1]
        canvas = roi.copy()
        origin = np.array([x0, y0], dtype=np.float64)
        paint(canvas, origin)
        inside = np.zeros(roi.shape[:2], np.uint8)
        cv2.fillPoly(inside, [_fx(outline - origin) for outline in outlines], 1, cv2.LINE_8, 4)
        np.copyto(roi, canvas, where=inside[..., None].astype(bool))

    def _eyes(self, img: np.ndarray, skin) -> None:
        lash, iris_rgb, s = (38, 26, 22), tuple(self.a["eye_rgb"]), self.s
        foreshorten = abs(math.cos(math.radians(self.pose.yaw)))
        eyes = self.lm[36:48].reshape(2, 6, 2)
        centres = eyes.mean(axis=1)
        widths = np.sqrt(((eyes[:, 3] - eyes[:, 0]) ** 2).sum(axis=1))
        outlines = _catmull_rom(eyes, 4, closed=True)
        radii = 0.24 * widths / max(foreshorten, 0.5)
        for centre, width in zip(centres, widths, strict=True):
            self._shadow_ellipse(centre + self.up * 0.1 * s, (width * 0.75, width * 0.45), 70)  # socket

        def eyeballs(canvas: np.ndarray, origin: np.ndarray) -> None:
            for outline, centre, r in zip(outlines, centres - origin, radii, strict=True):
                _fill(canvas, outline - origin, (226, 220, 212))
                _ellipse(canvas, centre, (r * foreshorten, r), self.angle, iris_rgb)
                _ellipse(canvas, centre, (r * foreshorten, r), self.angle, _shade(iris_rgb, 0.6), 1)
                _ellipse(canvas, centre, (0.45 * r * foreshorten, 0.45 * r), self.angle, (14, 12, 12))
                glint = centre + (self.up - self.right * foreshorten) * 0.45 * r
                _ellipse(canvas, glint, (0.15 * r, 0.15 * r), 0.0, (250, 250, 250))

        self._clipped(img, list(outlines), eyeballs)
        # Lids: the lash line, the crease above it, the lower lid.
        uppers = outlines[:, :13]
        creases = uppers + self.up * 0.07 * s
        cv2.polylines(img, list(_fx(uppers)), False, lash, max(1, int(s * 0.045)), cv2.LINE_AA, 4)
        cv2.polylines(
            img, list(_fx(creases)), False, _shade(skin, 0.75), max(1, int(s * 0.02)), cv2.LINE_AA, 4
        )
        lowers = list(_fx(outlines[:, 12:]))
        cv2.polylines(img, lowers, False, _shade(skin, 0.7), max(1, int(s * 0.015)), cv2.LINE_AA, 4)

    def _nose(self, img: np.ndarray, skin) -> None:
        lm, s, up, right = self.lm, self.s, self.up, self.right
        light_x = float(self.r[:, 0] @ np.asarray(self.a["light"]))  # light along the face's own x axis
        side = -1.0 if light_x > 0 else 1.0  # the flank away from the light
        flank = np.concatenate([lm[27:31], lm[[31 if side < 0 else 35]], lm[[28]] + right * side * 0.16 * s])
        self._shadow_poly(flank, int(50 + 90 * min(1.0, abs(light_x) * 1.5)))
        self._shadow_line(lm[31:36], 90, s * 0.07)
        nostrils = lm[[31, 35]] * 0.45 + lm[[32, 34]] * 0.55 + up * 0.02 * s
        for centre in nostrils:
            _ellipse(img, centre, (0.06 * s, 0.028 * s), self.angle, _shade(skin, 0.35))
        # Alar creases: from above each wing, round its outside, into the nostril.
        out = np.array([-1.0, 1.0])[:, None, None] * right
        wings = lm[[31, 35], None, :] + s * (_WING_UP[:, None] * up + _WING_OUT[:, None] * out)
        wings = np.concatenate([wings, lm[[32, 34], None, :]], axis=1)
        cv2.polylines(img, list(_fx(wings)), False, _shade(skin, 0.72), max(1, int(s * 0.02)), cv2.LINE_AA, 4)
        _line(img, lm[28:31] - right * side * 0.03 * s, _shade(skin, 1.12), s * 0.05)

    def _mouth(self, img: np.ndarray) -> None:
        lm, s = self.lm, self.s
        lip = tuple(self.a["lip_rgb"])
        outer = _catmull_rom(lm[fg.LIPS_OUTER], 4, closed=True)
        inner = _catmull_rom(lm[fg.LIPS_INNER], 4, closed=True)
        self._shadow_poly(outer, 0)
        _fill(img, outer, lip)
        upper_outer, upper_inner = outer[:25], inner[:17]
        _fill(img, np.concatenate([upper_outer, upper_inner[::-1]]), _shade(lip, 0.82))
        gap = math.dist(lm[66], lm[62])
        if gap > 1.5:
            teeth = np.concatenate([upper_inner, (upper_inner - self.up * min(0.09 * s, 0.45 * gap))[::-1]])

            def open_mouth(canvas: np.ndarray, origin: np.ndarray) -> None:
                _fill(canvas, inner - origin, (58, 22, 26))
                _fill(canvas, teeth - origin, (232, 226, 212))

            self._clipped(img, [inner], open_mouth)
            _line(img, inner, _shade(lip, 0.7), 1, closed=True)
        else:
            _line(img, upper_inner, _shade(lip, 0.45), s * 0.03)
        below = lm[57] - self.up * 0.07 * s
        self._shadow_ellipse(below, (0.2 * s, 0.06 * s), 60)

    def _shading(self) -> np.ndarray:
        """Lambert shading of an ellipsoid around the head, coarse: (size/8, size/8) uint8, 128 = 1.

        Each grid pixel casts a ray along the view axis; in the head's frame the ray is m0 + t d, and the
        front hit of the ellipsoid m^T W m = 1 gives the normal W m (rays that miss take the rim's)."""
        low = max(24, self.size // 8)
        grid = (np.arange(low) + 0.5) * (self.size / low)
        x = ((grid - self.pose.centre[0]) / self.s)[None, :, None]
        y = ((grid - self.pose.centre[1]) / self.s)[:, None, None]
        centre, axes = _SHADE_ELLIPSOID
        w = 1.0 / axes**2
        e0, e1, d = self.r  # the view's x, y and z axes in the head's frame
        m0 = x * e0 + y * e1 + (fg.PIVOT - centre)
        qa = d @ (w * d)
        qb = m0 @ (2.0 * w * d)
        qc = (m0 * m0) @ w - 1.0
        t = (np.sqrt(np.maximum(qb * qb - 4.0 * qa * qc, 0.0)) - qb) / (2.0 * qa)
        wm = (m0 + t[..., None] * d) * w
        cos = (wm @ (self.r.T @ np.asarray(self.a["light"]))) / np.sqrt((wm * wm).sum(axis=-1))
        # Wrapped Lambert: the outline of the head darkens without turning into a black rim.
        ambient = self.a["ambient"]
        shade = ambient + (1.12 - ambient) * np.maximum((cos + 0.4) / 1.4, 0.0)
        return np.minimum(shade * 128.0, 255.0).astype(np.uint8)

    def _finish(self, img: np.ndarray) -> np.ndarray:
        """Multiply in lighting and soft shadows (on the head) and film grain: uint8 fixed point, 128 = 1."""
        full, half = (self.size, self.size), self.dark.shape[::-1]
        sigma = max(0.5, 0.03 * self.s)
        k = 2 * int(2.5 * sigma) + 1
        ox, oy = (int(v * half[0]) for v in self.a["grain_offset"])
        grain = _grain(half[0])[oy : oy + half[1], ox : ox + half[0]]
        # 128 * (1 - 0.55 * shadow / 255), which is never negative, so the absolute value changes nothing.
        light = cv2.convertScaleAbs(
            cv2.GaussianBlur(self.dark, (k, k), sigma), alpha=-0.55 * 128 / 255, beta=128
        )
        light = cv2.multiply(light, grain, scale=1.0 / 128.0)
        shaded = cv2.multiply(cv2.resize(self._shading(), half), light, scale=1.0 / 128.0)
        # Blend by the head's coverage, so anti-aliased edges are shaded as much as they are head;
        # off the head (background, neck, clothes) only the grain applies.
        outside = cv2.multiply(cv2.resize(grain, full), cv2.bitwise_not(self.mask), scale=1.0 / 255.0)
        factor = cv2.add(outside, cv2.multiply(cv2.resize(shaded, full), self.mask, scale=1.0 / 255.0))
        return cv2.multiply(img, cv2.merge([factor, factor, factor]), scale=1.0 / 128.0)
