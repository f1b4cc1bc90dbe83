"""Seed ranges: generation ``i`` of a run uses ``--seed + i``, and every one of those must fit torch's
random generator. generate (image i) and realify (row i) check the same rule before any work."""

from __future__ import annotations

from controlkit.errors import UserError

MAX_SEED = 2**64 - 1
"""The largest seed torch's generator takes."""


def check_seed_range(seed: int, count: int, item: str, uses: str) -> None:
    """``seed + i`` for ``i < count`` within 0..MAX_SEED, or one line saying the largest seed that fits;
    ``item`` names the things counted ("images"), ``uses`` how item i uses its seed."""
    if seed < 0 or seed + count - 1 > MAX_SEED:
        raise UserError(
            f"--seed {seed}: {uses} seed + i, which must lie in 0..2**64 - 1 ({MAX_SEED}); with {count} "
            f"{item} the seed must be at most {MAX_SEED - count + 1}"
        )
