"""The iBUG / 300-W 68-point layout: its groups, the walkthrough's colours, and the mirror permutation.

Indices follow the iBUG-68 annotation (0-based): jaw 0-16, brows 17-21 and 22-26, nose bridge 27-30,
nose base 31-35, eyes 36-41 and 42-47, outer lips 48-59, inner lips 60-67. "Left" and "right" are as
seen in the picture (points 36-41 are the eye on the image's left).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_POINTS = 68


@dataclass(frozen=True)
class Group:
    """A run of consecutive landmarks drawn as one stroke."""

    name: str
    start: int
    stop: int  # exclusive
    color: tuple[int, int, int]
    closed: bool


LIME = (0, 255, 0)  # #00FF00
YELLOW = (255, 255, 0)  # #FFFF00
ORANGE = (255, 165, 0)  # #FFA500
MAGENTA = (255, 0, 255)  # #FF00FF
CYAN = (0, 255, 255)  # #00FFFF
BLUE = (0, 0, 255)  # #0000FF

GROUPS: tuple[Group, ...] = (
    Group("jaw", 0, 17, LIME, False),
    Group("left_brow", 17, 22, YELLOW, False),
    Group("right_brow", 22, 27, YELLOW, False),
    Group("nose_bridge", 27, 31, ORANGE, False),
    Group("nose_base", 31, 36, ORANGE, False),
    Group("left_eye", 36, 42, MAGENTA, True),
    Group("right_eye", 42, 48, MAGENTA, True),
    Group("outer_lips", 48, 60, CYAN, True),
    Group("inner_lips", 60, 68, BLUE, True),
)
"""In drawing order: the walkthrough draws the inner lips last, over the outer lips."""

LEFT_EYE_OUTER = 36
RIGHT_EYE_OUTER = 45
"""Outer eye corners: their distance (inter-ocular) normalises the landmark error, as in 300-W."""


def _mirror_permutation() -> np.ndarray:
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nose base; 33 is the tip
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips; 51 and 57 on the midline
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lips; 62 and 66 on the midline
    perm = np.arange(NUM_POINTS)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


MIRROR = _mirror_permutation()
"""``flipped[i] = mirrored_points[MIRROR[i]]``: the point that takes index i's meaning after a flip."""
