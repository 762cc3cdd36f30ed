"""Waiting for a run: sans-I/O poll decisions, one sync loop and one async loop.

Sleep and clock are injected, so tests never really sleep. The interval starts short and backs
off (2 s growing to 10 s by default); the loop stops on completed / failed / cancelled / timeout
or when the caller's deadline passes — and a passed deadline never cancels the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sixtyfour_frames._errors import (
    NotFoundError,
    RunCancelledError,
    RunFailedError,
    WaitTimeoutError,
)
from sixtyfour_frames._models import KNOWN_STATUSES, LiveStatus

logger = logging.getLogger("sixtyfour_frames")

StatusCallback = Callable[[LiveStatus], object]


@dataclass(frozen=True)
class PollSchedule:
    """Poll interval ``initial · factor^n`` seconds, never above ``maximum``.

    ``not_found_grace``: a run can be briefly unknown right after it was created (eventual
    consistency); a 404 within this many seconds of the first poll is treated as "not yet".
    """

    initial: float = 2.0
    factor: float = 1.5
    maximum: float = 10.0
    not_found_grace: float = 15.0

    def interval(self, polls_done: int) -> float:
        return float(min(self.maximum, self.initial * self.factor ** max(0, polls_done)))


DEFAULT_SCHEDULE = PollSchedule()


def as_schedule(poll: PollSchedule | float | None) -> PollSchedule:
    """A number means a fixed interval; ``None`` the default schedule."""
    if poll is None:
        return DEFAULT_SCHEDULE
    if isinstance(poll, PollSchedule):
        return poll
    seconds = float(poll)
    return PollSchedule(initial=seconds, factor=1.0, maximum=seconds)


def finished_or_raise(status: LiveStatus, job_id: str) -> bool:
    """True when the run completed; raise when it ended otherwise; False while it goes on."""
    state = status.overall_status
    if state == "completed":
        return True
    if state in ("failed", "timeout"):
        block = status.failed_block
        raise RunFailedError(
            job_id,
            error_message=status.error_message,
            status_reason="the run timed out on the server" if state == "timeout" else None,
            failed_block=block.block_name if block else None,
        )
    if state == "cancelled":
        raise RunCancelledError(job_id)
    if state not in KNOWN_STATUSES:
        logger.warning("run %s reports an unknown status %r; still waiting", job_id, state)
    return False


class _Waiter:
    """The decisions of one wait, shared by both loops."""

    def __init__(
        self, job_id: str, timeout: float | None, schedule: PollSchedule, clock: Callable[[], float]
    ) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.schedule = schedule
        self.clock = clock
        self.started = clock()
        self.polls = 0
        self.last: LiveStatus | None = None

    def tolerate(self, error: NotFoundError) -> bool:
        return self.clock() - self.started < self.schedule.not_found_grace

    def next_sleep(self) -> float:
        """Seconds to sleep before the next poll; raises once the deadline has passed."""
        delay = self.schedule.interval(self.polls)
        self.polls += 1
        if self.timeout is None:
            return delay
        remaining = self.started + self.timeout - self.clock()
        if remaining <= 0:
            raise WaitTimeoutError(
                self.job_id,
                timeout=self.timeout,
                last_status=self.last.overall_status if self.last else None,
            )
        return min(delay, remaining)


def wait_sync(
    fetch: Callable[[], LiveStatus],
    job_id: str,
    *,
    timeout: float | None = None,
    poll: PollSchedule | float | None = None,
    on_status: StatusCallback | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> LiveStatus:
    waiter = _Waiter(job_id, timeout, as_schedule(poll), clock)
    while True:
        try:
            status = fetch()
        except NotFoundError as error:
            if not waiter.tolerate(error):
                raise
        else:
            waiter.last = status
            if on_status is not None:
                on_status(status)
            if finished_or_raise(status, job_id):
                return status
        sleep(waiter.next_sleep())


async def wait_async(
    fetch: Callable[[], Awaitable[LiveStatus]],
    job_id: str,
    *,
    timeout: float | None = None,
    poll: PollSchedule | float | None = None,
    on_status: StatusCallback | None = None,
    sleep: Callable[[float], Awaitable[None]],
    clock: Callable[[], float] = time.monotonic,
) -> LiveStatus:
    waiter = _Waiter(job_id, timeout, as_schedule(poll), clock)
    while True:
        try:
            status = await fetch()
        except NotFoundError as error:
            if not waiter.tolerate(error):
                raise
        else:
            waiter.last = status
            if on_status is not None:
                on_status(status)
            if finished_or_raise(status, job_id):
                return status
        await sleep(waiter.next_sleep())
