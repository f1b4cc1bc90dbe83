"""A canonical 68-point iBUG face in 3D: identity, expression, head pose and projection to pixels.

Model units: half the face width at the cheekbones is 1, x points to the image right, y down, z towards the
camera, eye level is y = 0. The jaw contour (points 0-16) is view dependent, as in the 300-W annotation: each
jaw point sits on the silhouette of the head's horizontal cross-section at its height, so on a turned face
the far-side points follow the visible cheek outline instead of disappearing behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Face points 17-67 in the frontal, neutral pose: (x, y, z).
_BROW_LEFT = [(-0.82, -0.20, 0.45), (-0.68, -0.28, 0.68), (-0.52, -0.29, 0.82), (-0.36, -0.26, 0.92)]
_BROW_LEFT += [(-0.20, -0.19, 0.97)]
_NOSE = [(0.0, 0.02, 0.95), (0.0, 0.20, 1.05), (0.0, 0.38, 1.17), (0.0, 0.56, 1.32)]
_NOSE += [(-0.24, 0.66, 0.98), (-0.12, 0.71, 1.07), (0.0, 0.73, 1.12), (0.12, 0.71, 1.07), (0.24, 0.66, 0.98)]
_EYE_LEFT = [(-0.66, 0.02, 0.55), (-0.52, -0.07, 0.70), (-0.35, -0.075, 0.76), (-0.22, 0.02, 0.76)]
_EYE_LEFT += [(-0.36, 0.075, 0.74), (-0.52, 0.075, 0.69)]
_EYE_RIGHT = [(0.22, 0.02, 0.76), (0.35, -0.075, 0.76), (0.52, -0.07, 0.70), (0.66, 0.02, 0.55)]
_EYE_RIGHT += [(0.52, 0.075, 0.69), (0.36, 0.075, 0.74)]
_LIPS_OUTER = [(-0.36, 1.00, 0.80), (-0.24, 0.93, 0.93), (-0.10, 0.88, 1.00), (0.0, 0.90, 1.02)]
_LIPS_OUTER += [(0.10, 0.88, 1.00), (0.24, 0.93, 0.93), (0.36, 1.00, 0.80), (0.26, 1.07, 0.90)]
_LIPS_OUTER += [(0.13, 1.12, 0.96), (0.0, 1.13, 0.98), (-0.13, 1.12, 0.96), (-0.26, 1.07, 0.90)]
_LIPS_INNER = [(-0.30, 1.00, 0.84), (-0.12, 0.99, 0.95), (0.0, 0.99, 0.97), (0.12, 0.99, 0.95)]
_LIPS_INNER += [(0.30, 1.00, 0.84), (0.12, 1.00, 0.95), (0.0, 1.00, 0.97), (-0.12, 1.00, 0.95)]
_BROW_RIGHT = [(-x, y, z) for x, y, z in reversed(_BROW_LEFT)]
FACE_POINTS = np.array(_BROW_LEFT + _BROW_RIGHT + _NOSE + _EYE_LEFT + _EYE_RIGHT + _LIPS_OUTER + _LIPS_INNER)
"""Points 17-67, neutral and frontal."""

# Jaw points 0-7 (left half): frontal x, y, and the centre z0 and half-depth c of the head's
# horizontal cross-section at that height (the chin, point 8, is fixed at the front).
JAW_HALF = np.array(
    [
        (-1.05, -0.08, -0.30, 0.90),
        (-1.03, 0.19, -0.25, 0.90),
        (-0.99, 0.48, -0.20, 0.85),
        (-0.93, 0.75, -0.10, 0.80),
        (-0.85, 0.99, 0.00, 0.75),
        (-0.71, 1.23, 0.10, 0.70),
        (-0.50, 1.42, 0.25, 0.60),
        (-0.26, 1.53, 0.50, 0.40),
    ]
)
CHIN = np.array([0.0, 1.55, 0.85])
JAW_OPEN_WEIGHT = np.array([0.0, 0.0, 0.0, 0.1, 0.3, 0.55, 0.8, 0.95])
"""How far each jaw point follows the chin when the mouth opens."""

_SIDES = np.repeat([-1.0, 1.0], 8)


def _lip_weights() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How far each lip point (48-67) moves per unit of smile and of mouth opening: x factors, y offsets."""
    smile_x, smile_y, open_x, open_y = (np.zeros(20) for _ in range(4))
    corners, upper_sides = [0, 6, 12, 16], [1, 5, 13, 15]  # 48, 54, 60, 64 and 49, 53, 61, 63
    smile_x[corners], smile_y[corners] = 0.15, -0.10
    smile_y[upper_sides] = -0.04
    smile_x[[1, 5]] = 0.08
    drop = 0.36
    open_y[[7, 11]] = 0.7 * drop  # 55, 59
    open_y[[8, 9, 10, 17, 18, 19]] = drop  # 56-58, 65-67
    open_y[corners] = 0.15 * drop
    open_x[corners] = -0.12
    return smile_x, smile_y, open_x, open_y


_SMILE_X, _SMILE_Y, _OPEN_X, _OPEN_Y = _lip_weights()

CRANIUM_CENTRE = np.array([0.0, -0.20, -0.30])
CRANIUM_AXES = np.array([1.03, 1.50, 1.30])
"""An ellipsoid for the skull: its silhouette outlines the head above the jaw, its normals shade the face."""

PIVOT = np.array([0.0, 0.5, -0.3])
"""Centre of head rotation (about the middle of the head)."""

# Index groups in iBUG-68 order.
BROW_L, BROW_R = slice(17, 22), slice(22, 27)
EYE_L, EYE_R = slice(36, 42), slice(42, 48)
LIPS_OUTER, LIPS_INNER = slice(48, 60), slice(60, 68)


@dataclass
class Identity:
    """Per-person proportions, as multipliers around 1 (offsets around 0)."""

    face_width: float = 1.0
    jaw_width: float = 1.0
    face_length: float = 1.0
    eye_spacing: float = 1.0
    eye_size: float = 1.0
    nose_length: float = 1.0
    nose_width: float = 1.0
    mouth_width: float = 1.0
    lip_thickness: float = 1.0
    brow_height: float = 0.0


@dataclass
class Expression:
    mouth_open: float = 0.0  # 0 closed .. 1 wide open
    smile: float = 0.0  # 0 neutral .. 1 broad smile
    eyes_open: float = 1.0  # 0.2 nearly closed .. 1 open
    brow_raise: float = 0.0  # -1 frown .. 1 raised


@dataclass
class Pose:
    """Angles in degrees (yaw > 0 turns the nose to the image right, pitch > 0 looks up, roll > 0 tilts
    clockwise on screen), scale in pixels per model unit, centre in pixels where PIVOT lands."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    scale: float = 50.0
    centre: tuple[float, float] = (128.0, 128.0)
    focal: float = 8.0  # camera distance in model units; perspective is mild


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = Rz(roll) Rx(pitch) Ry(yaw) for column vectors, angles in degrees."""
    cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    rz = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return rz @ rx @ ry


def silhouette(
    a: np.ndarray, c: np.ndarray, z0: np.ndarray | float, side: np.ndarray, yaw: float
) -> np.ndarray:
    """(x, z) of the points of horizontal ellipses (half-width a, half-depth c, centre z0) that stick out
    furthest to ``side`` (-1 left, +1 right) once the head is turned by ``yaw`` degrees."""
    t = np.radians(yaw)
    phi = np.arctan2(side * c * np.sin(t), side * a * np.cos(t))
    return np.stack([a * np.cos(phi), z0 + c * np.sin(phi)], axis=-1)


def cranium_section(y: np.ndarray, inflate: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Half-width and half-depth of the skull ellipsoid's cross-section at heights ``y``."""
    k = np.sqrt(np.clip(1.0 - ((y - CRANIUM_CENTRE[1]) / (CRANIUM_AXES[1] * inflate)) ** 2, 0.0, 1.0))
    return CRANIUM_AXES[0] * inflate * k, CRANIUM_AXES[2] * inflate * k


def face_points(identity: Identity, expression: Expression) -> np.ndarray:
    """Points 17-67 in model units, with the identity's proportions and the expression applied."""
    p = FACE_POINTS.copy()
    idn, ex = identity, expression
    p[:, 0] *= idn.face_width
    # Brows.
    p[0:10, 1] -= 0.06 * ex.brow_raise + idn.brow_height
    # Nose: longer noses move the tip and base down; width spreads the base.
    p[10:19, 1] = 0.02 + (p[10:19, 1] - 0.02) * idn.nose_length
    p[14:19, 0] *= idn.nose_width
    # Eyes: spacing around the midline, size around each eye's centre, lids opening around it.
    eyes = p[19:31, :2].reshape(2, 6, 2)
    centres = eyes.mean(axis=1, keepdims=True)
    moved = centres * [idn.eye_spacing, 1.0]
    eyes = moved + (eyes - centres) * idn.eye_size
    squint = 0.6 + 0.4 * ex.eyes_open - 0.25 * ex.smile
    lids = np.array([1.0, ex.eyes_open, ex.eyes_open, 1.0, squint, squint])
    eyes[..., 1] = moved[..., 1] + (eyes[..., 1] - moved[..., 1]) * lids
    p[19:31, :2] = eyes.reshape(12, 2)
    # Mouth: width and lip thickness around the lip line (y = 1), then smile and opening.
    lips = p[31:51]
    lips[:, 0] *= idn.mouth_width * (1.0 + ex.smile * _SMILE_X) * (1.0 + ex.mouth_open * _OPEN_X)
    lips[:, 1] = 1.0 + (lips[:, 1] - 1.0) * idn.lip_thickness + ex.smile * _SMILE_Y + ex.mouth_open * _OPEN_Y
    # A longer face pushes the mouth and nose base down a little.
    p[10:, 1] += (p[10:, 1] > 0.5) * (idn.face_length - 1.0) * 0.5
    return p


def jaw_points(identity: Identity, expression: Expression, yaw: float) -> np.ndarray:
    """Points 0-16 in model units, on the silhouette of the head as seen at ``yaw``."""
    half = JAW_HALF
    lower = np.clip((half[:, 1] - 0.4) / 1.2, 0.0, 1.0)  # jaw width acts on the lower jaw
    a = np.abs(half[:, 0]) * identity.face_width * (1.0 + (identity.jaw_width - 1.0) * lower)
    y = half[:, 1] * (1.0 + (identity.face_length - 1.0) * (half[:, 1] > 0.5))
    y = y + 0.32 * expression.mouth_open * JAW_OPEN_WEIGHT
    both = silhouette(np.tile(a, 2), np.tile(half[:, 3], 2), np.tile(half[:, 2], 2), _SIDES, yaw)
    pts = np.empty((17, 3))
    pts[:8, 0], pts[:8, 1], pts[:8, 2] = both[:8, 0], y, both[:8, 1]
    pts[9:, 0], pts[9:, 1], pts[9:, 2] = both[:7:-1, 0], y[::-1], both[:7:-1, 1]
    mouth_open = expression.mouth_open
    pts[8] = CHIN[0], CHIN[1] * identity.face_length + 0.32 * mouth_open, CHIN[2] - 0.08 * mouth_open
    return pts


def landmarks_3d(identity: Identity, expression: Expression, yaw: float) -> np.ndarray:
    """All 68 points in model units, frontal frame (jaw already chosen for ``yaw``)."""
    return np.concatenate([jaw_points(identity, expression, yaw), face_points(identity, expression)])


def transform(points: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Model points (..., 3) -> view space (..., 3) in model units: rotated by ``r`` about PIVOT."""
    return (points - PIVOT) @ r.T + PIVOT


def project(view: np.ndarray, pose: Pose) -> np.ndarray:
    """View-space points (..., 3) -> pixel (x, y), with mild perspective around the pivot."""
    depth = pose.focal / (pose.focal - (view[..., 2] - PIVOT[2]))
    xy = (view[..., :2] - PIVOT[:2]) * (pose.scale * depth)[..., None]
    return xy + np.asarray(pose.centre)
