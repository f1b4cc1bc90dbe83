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


def say(message: str) -> None:
    """Print a one-line note to stderr, from the main process only."""
    if is_main_process():
        print(message, file=sys.stderr, flush=True)
