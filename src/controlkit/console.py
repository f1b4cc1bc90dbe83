"""Messages for the person at the terminal, printed once per job.

Under ``accelerate launch`` every process runs the same code; a message about the job (a skipped row, the
cache in use, the preset applied) should appear once, from the main process, not once per process.
"""

from __future__ import annotations

import os
import sys


def is_main_process() -> bool:
    """Whether this is the job's main process: accelerate's answer once it is set up, else the launcher's
    ``RANK`` (a lone process is the main one)."""
    if "accelerate" in sys.modules:
        from accelerate.state import PartialState

        if PartialState._shared_state:
            return PartialState().is_main_process
    return int(os.environ.get("RANK", "0")) == 0


def size_text(count: float) -> str:
    """Bytes as disks are sold (1 KB = 1000 bytes): 1234567 -> "1.2 MB"."""
    units = ["bytes", "KB", "MB", "GB", "TB"]
    while count >= 1000 and len(units) > 1:
        count, units = count / 1000, units[1:]
    return f"{count:.0f} {units[0]}" if units[0] == "bytes" else f"{count:.1f} {units[0]}"


def say(message: str) -> None:
    """Print a one-line note to stderr, from the main process only."""
    if is_main_process():
        print(message, file=sys.stderr, flush=True)
