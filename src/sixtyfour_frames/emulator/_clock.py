"""Clocks for the emulator.

Every time-dependent decision in the emulator (run progress, URL expiry, timestamps) reads an
injected clock, a callable returning seconds since the Unix epoch, so tests can move time forward
instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]

# 2026-01-01T00:00:00Z: a fixed start makes the timestamps of a manual-clock run reproducible.
MANUAL_CLOCK_EPOCH = 1_767_225_600.0


def system_clock() -> float:
    """The wall clock, in seconds since the Unix epoch."""
    return time.time()


class ManualClock:
    """A clock that moves only when :meth:`advance` is called.

    It starts at 2026-01-01T00:00:00Z unless told otherwise. Safe to read and advance from
    several threads (the server thread reads it while a test advances it).
    """

    def __init__(self, start: float = MANUAL_CLOCK_EPOCH) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance({seconds!r}))")
        with self._lock:
            self._now += float(seconds)
            return self._now


def isoformat(timestamp: float) -> str:
    """ISO-8601 in UTC with millisecond precision and a ``Z`` suffix, as the API's examples show."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
