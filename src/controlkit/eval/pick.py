"""Which checkpoint to keep, by a rule the report states.

With prompt fidelity measured (a CLIP model): the best matched adherence among the checkpoints whose
off-domain fidelity is at least ``floor`` (90%) of the base model's: control, without forgetting; when none
keeps that much, the one that forgot least. Without CLIP: the best matched adherence, and the report says
that forgetting was not checked. Ties go to the earlier step (less training, less to forget).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pick:
    """The chosen checkpoint (None when no checkpoint has a figure to choose by), the rule, and why."""

    name: str | None
    step: int | None
    rule: str
    reason: str


def _value(record: dict[str, Any], *path: str) -> float:
    value: Any = record
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.nan


def adherence_key(records: list[dict[str, Any]], key: str | None) -> str | None:
    """The condition's adherence key, else the first key the matched scores have."""
    if key:
        return key
    keys = [k for record in records for k in record.get("adherence", {}).get("matched", {})]
    return keys[0] if keys else None


def pick_checkpoint(
    records: list[dict[str, Any]], key: str | None, higher_is_better: bool, floor: float
) -> Pick:
    """Apply the rule to per-checkpoint records (``figures.checkpoint_record``'s, oldest first)."""
    key = adherence_key(records, key)
    best = "highest" if higher_is_better else "lowest"
    measured = any(math.isfinite(_value(r, "off_domain_fidelity")) for r in records)
    if measured:
        rule = (
            f"the {best} matched {key} among the checkpoints whose off-domain prompt fidelity is at least "
            f"{floor:.0%} of the base model's (if none is, the highest off-domain fidelity); ties go to the "
            "earlier step"
        )
    else:
        rule = (
            f"the {best} matched {key}; prompt fidelity was not measured (no CLIP model), so forgetting is "
            "not checked; ties go to the earlier step"
        )
    adherence = {id(r): _value(r, "adherence", "matched", key or "") for r in records}
    sign = -1.0 if higher_is_better else 1.0
    pool = [r for r in records if math.isfinite(adherence[id(r)])]
    if measured:
        kept = [r for r in pool if _value(r, "off_domain_fidelity") >= floor]
        if not kept:
            fidelity = [r for r in records if math.isfinite(_value(r, "off_domain_fidelity"))]
            chosen = max(fidelity, key=lambda r: _value(r, "off_domain_fidelity"))
            reason = f"no checkpoint keeps {floor:.0%} off-domain fidelity; {chosen['name']} forgets least"
            return Pick(chosen["name"], chosen.get("step"), rule, reason)
        pool = kept
    if not pool:
        return Pick(None, None, rule, f"no checkpoint has a matched {key} to choose by")
    chosen = min(pool, key=lambda r: sign * adherence[id(r)])  # min keeps the first (earliest) of equals
    reason = f"{chosen['name']}: matched {key} {adherence[id(chosen)]:.3f}"
    if measured:
        reason += f", off-domain fidelity {_value(chosen, 'off_domain_fidelity'):.2f} of the base's"
    return Pick(chosen["name"], chosen.get("step"), rule, reason)
