"""Which ControlNets an evaluation compares: the checkpoints of a training run and its final model.

A `controlkit train` output folder holds ``checkpoint-N/controlnet/`` (complete checkpoints only) and the
final ControlNet at its root, whose step its ``controlkit.json`` records; when a checkpoint was saved
at that same step it holds the same weights, so only the checkpoint is kept. A Hub id is one ControlNet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from controlkit.errors import UserError
from controlkit.paths import check_exists

FINAL = "final"


@dataclass(frozen=True)
class Candidate:
    """One ControlNet to evaluate: its name (``checkpoint-N`` or ``final``), its training step (None when
    unknown) and what ``load_controlnet`` loads it from."""

    name: str
    step: int | None
    path: str

    @property
    def order(self) -> float:
        return math.inf if self.step is None else self.step


def _final_step(folder: Path) -> int | None:
    """The step its controlkit.json records, else the last in its metrics.jsonl (older runs)."""
    from controlkit.metadata import ControlNetInfo
    from controlkit.train.metrics import read_metrics

    recorded = ControlNetInfo.read(folder).step
    steps = [record["step"] for record in read_metrics(folder) if "loss" in record]
    return recorded if recorded is not None else (steps[-1] if steps else None)


def all_candidates(controlnet: str) -> list[Candidate]:
    """Every checkpoint and the final model, oldest first; a folder with neither is one line."""
    if not check_exists(controlnet, "ControlNet"):
        return [Candidate(FINAL, None, controlnet)]
    from controlkit.train.checkpoints import PREFIX, list_checkpoints

    folder = Path(controlnet)
    found = [
        Candidate(path.name, int(path.name.removeprefix(PREFIX)), str(path))
        for path in list_checkpoints(folder)
        if (path / "controlnet" / "config.json").is_file()
    ]
    if (folder / "config.json").is_file() or (folder / "controlnet" / "config.json").is_file():
        step = _final_step(folder)
        if step is None or step not in {c.step for c in found}:
            found.append(Candidate(FINAL, step, str(folder)))
    if not found:
        raise UserError(
            f"{controlnet} holds no ControlNet (config.json) and no checkpoint-N/ folder to evaluate"
        )
    return sorted(found, key=lambda c: c.order)


def choose(candidates: list[Candidate], which: str) -> list[Candidate]:
    """``all``, ``latest`` (the last one), or a comma-separated list of names (``final`` is the last one)."""
    if which == "all":
        return candidates
    if which in ("latest", FINAL):
        return candidates[-1:]
    by_name = {c.name: c for c in candidates}
    names = [name.strip() for name in which.split(",") if name.strip()]
    unknown = [name for name in names if name not in by_name and name != FINAL]
    if unknown or not names:
        raise UserError(
            f"--checkpoints {which!r}: no {', '.join(unknown) or 'name'} here; "
            f"choose all, latest or from {', '.join(by_name)}"
        )
    chosen = {by_name.get(name, candidates[-1]) for name in names}
    return sorted(chosen, key=lambda c: c.order)
