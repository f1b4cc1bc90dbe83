"""Seed ranges: seed + i must fit torch's generator for every generation of a run."""

from __future__ import annotations

import pytest

from controlkit.errors import UserError
from controlkit.seeds import MAX_SEED, check_seed_range


def test_the_last_seed_that_fits_passes_and_one_more_is_a_line_naming_it():
    check_seed_range(MAX_SEED - 9, 10, "rows", "row i is repainted with")
    check_seed_range(0, 1, "images", "image i uses")
    with pytest.raises(UserError, match=rf"row i is repainted with seed \+ i.*at most {MAX_SEED - 9}$"):
        check_seed_range(MAX_SEED - 8, 10, "rows", "row i is repainted with")
    with pytest.raises(UserError, match="--seed -1: image i uses seed"):
        check_seed_range(-1, 1, "images", "image i uses")
