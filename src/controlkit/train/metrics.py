"""metrics.jsonl: one JSON line per optimizer step (loss, lr, images/s, peak memory) and per validation.

A run killed while appending leaves a torn last line; readers skip a line that does not parse, and a
resume drops it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def _records(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics file, without lines that do not parse (a torn write)."""
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class MetricsLog:
    """Appends records to output_dir/metrics.jsonl (main process only); survives resumes."""

    def __init__(self, output_dir: str | os.PathLike, enabled: bool = True):
        self.path = Path(output_dir) / METRICS_FILE
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """On resume, drop the records an interrupted run wrote after the checkpoint it resumes from (and
        a torn last line); a new run (step 0) starts an empty file."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [record for record in _records(self.path) if record.get("step", math.inf) <= step]
        self.path.write_text("".join(json.dumps(record) + "\n" for record in kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")


def read_metrics(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a run, in order (a torn line left by a killed run is skipped)."""
    path = Path(output_dir) / METRICS_FILE
    return _records(path) if path.is_file() else []
