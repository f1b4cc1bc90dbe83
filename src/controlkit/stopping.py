"""Stopping cleanly when asked: spot and preemptible machines send SIGTERM and allow about 30 seconds.

A long command runs inside ``graceful_stop()``: the first SIGTERM or SIGINT only sets ``requested``, the
command finishes the unit of work in hand (an optimizer step, a shard), saves what it has, and raises
``Stopped`` with the one line that says how to continue; the CLI prints it and exits with
``EXIT_STOPPED``. A second signal stops at once (``KeyboardInterrupt``), as Ctrl-C twice should.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_STOPPED = 75
"""The exit code of a command stopped by a signal after saving its work (EX_TEMPFAIL: run it again)."""


class Stopped(Exception):
    """A command stopped on request after saving its work; the message says how to continue."""


class StopRequest:
    """Whether a stop was asked for, and by which signal."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.signal = signum


@contextmanager
def graceful_stop() -> Iterator[StopRequest]:
    """Catch SIGTERM and SIGINT for the block (main thread only; elsewhere the block runs as it is)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {sig: signal.signal(sig, request._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
