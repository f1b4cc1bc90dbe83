"""metrics.jsonl: one JSON line per optimizer step (loss, lr, images/s, peak memory) and per validation."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends records to output_dir/metrics.jsonl (main process only); survives resumes."""

    def __init__(self, output_dir: str | os.PathLike, enabled: bool = True):
        self.path = Path(output_dir) / METRICS_FILE
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """On resume, drop the records an interrupted run wrote after the checkpoint it resumes from."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [
            line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step
        ]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")


def read_metrics(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a run, in order."""
    path = Path(output_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []
