"""From scored images to the figures of a checkpoint: mean scores per case, CLIP scores, fidelity ratios.

A base record (the ControlNet at scale 0) holds ``adherence["off"]`` and the base CLIP scores; a checkpoint
record holds its own cases and, with CLIP, ``prompt_fidelity`` (its matched CLIP score over the base's on
the same prompts and seeds) and ``off_domain_fidelity`` (the same for the forgetting probe's prompts).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from controlkit.eval.evaluator import Item


def mean_scores(scores: Iterable[dict[str, float]]) -> dict[str, float]:
    """The NaN-aware mean of each key (NaN when every value is NaN), in the order ``score`` gives them."""
    scores = list(scores)
    means = {}
    for key in dict.fromkeys(key for score in scores for key in score):
        values = np.array([score.get(key, math.nan) for score in scores], dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means[key] = float(np.nanmean(values))
    return means


def summarize(items: list[Item]) -> dict[str, Any]:
    """``{"adherence": {case: mean scores}, "clip_score": {case: mean}}`` (no clip_score without CLIP)."""
    cases = list(dict.fromkeys(item.case for item in items))
    adherence = {}
    for case in cases:
        scored = [item.scores for item in items if item.case == case and item.scores]
        if scored:
            adherence[case] = mean_scores(scored)
    summary: dict[str, Any] = {"adherence": adherence}
    clip = {
        case: float(np.mean(values))
        for case in cases
        if (values := [item.clip for item in items if item.case == case and item.clip is not None])
    }
    if clip:
        summary["clip_score"] = clip
    return summary


def ratio(value: float | None, base: float | None) -> float:
    """value / base; NaN when either is missing or the base is 0."""
    if value is None or base is None or base == 0:
        return math.nan
    return value / base


def checkpoint_record(name: str, step: int | None, items: list[Item], base: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's figures, with its fidelity relative to the base record when both have CLIP scores."""
    record = {"name": name, "step": step, **summarize(items)}
    clip, base_clip = record.get("clip_score"), base.get("clip_score")
    if clip and base_clip:
        record["prompt_fidelity"] = ratio(clip.get("matched"), base_clip.get("off"))
        record["off_domain_fidelity"] = ratio(clip.get("off_domain"), base_clip.get("base_off_domain"))
    return record


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
