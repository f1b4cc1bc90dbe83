"""Decisions the main process makes and every process acts on.

Under ``accelerate launch`` some checks must run once (taking the folder's lock, clearing a previous run,
hashing a checkpoint's files, setting a damaged one aside) but every process has to act on the outcome:
resume the same checkpoint, or stop with the same one-line error. A process left out would wait in the
next collective until the launcher kills it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from controlkit.errors import UserError

T = TypeVar("T")


def decided_by_main(accelerator, decide: Callable[[], T]) -> T:
    """``decide()`` on the main process; its result, or its UserError, on every process."""
    answer: list = [None, None]
    if accelerator.is_main_process:
        try:
            answer = [decide(), None]
        except UserError as exc:
            answer = [None, str(exc)]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(answer)
    if answer[1] is not None:
        raise UserError(answer[1])
    return answer[0]
