"""Pure retry decisions: what is retryable, how long to wait, and how much retrying is allowed.

Nothing here sleeps or does I/O; the HTTP layer asks and then sleeps with an injected function.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum

# Statuses worth another attempt. 408 and 429 are refusals before any work (the request was
# not processed); a 5xx may come after the server acted, so for a POST it leaves the outcome open.
_NOT_PROCESSED_STATUSES = frozenset({408, 429})
_RETRY_STATUSES = _NOT_PROCESSED_STATUSES | {500, 502, 503, 504}
# 409 on POST /workflows/run means "this Idempotency-Key is in flight": wait and replay it.
_RETRY_ON_POST_RUN = _RETRY_STATUSES | {409}


_SHARED_RNG = random.Random()


class Attempt(Enum):
    """How one HTTP attempt ended, as far as retrying is concerned."""

    OK = "ok"
    NOT_SENT = "not_sent"  # the connection never opened: the server cannot have acted
    CANNOT_CONNECT = "cannot_connect"  # nothing was sent, and retrying cannot help (TLS)
    AMBIGUOUS = "ambiguous"  # sent, then the connection failed: the server may have acted
    NOT_PROCESSED = "not_processed"  # 408/429: refused before any work; worth another attempt
    RETRYABLE_STATUS = "retryable_status"  # 5xx (and 409 on a run): the server may have acted
    FINAL_STATUS = "final_status"

    @property
    def may_have_acted(self) -> bool:
        """True when the server may have acted on this attempt without our knowing the result."""
        return self in (Attempt.AMBIGUOUS, Attempt.RETRYABLE_STATUS)


@dataclass(frozen=True)
class RetryPolicy:
    """Jittered exponential backoff with a longer schedule for 429 and a cap on Retry-After."""

    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    rate_limit_delay: float = 5.0  # first wait after a 429 without Retry-After
    rate_limit_max_delay: float = 60.0  # the docs advise waiting up to 60 s after a 429
    retry_after_cap: float = 120.0  # a Retry-After above this is not honoured: we give up instead

    def backoff(
        self, attempt: int, *, rate_limited: bool = False, rng: random.Random | None = None
    ) -> float:
        """Full-jitter exponential delay before retry number ``attempt`` (1-based)."""
        base, cap = (
            (self.rate_limit_delay, self.rate_limit_max_delay)
            if rate_limited
            else (self.base_delay, self.max_delay)
        )
        ceiling: float = min(cap, base * 2.0 ** max(0, attempt - 1))
        # Half fixed, half random: retries spread out without ever retrying at once.
        return ceiling / 2 + (rng or _SHARED_RNG).uniform(0, ceiling / 2)


def is_retryable_status(status: int, *, post_run: bool = False) -> bool:
    return status in (_RETRY_ON_POST_RUN if post_run else _RETRY_STATUSES)


def was_not_processed(status: int) -> bool:
    """408 and 429 are refusals before the server did anything with the request."""
    return status in _NOT_PROCESSED_STATUSES


def parse_retry_after(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date).

    Malformed values (``inf``, ``nan``, negative numbers, absurd dates, empty strings) give
    ``None`` so the caller falls back to its own backoff instead of crashing or waiting forever.
    """
    millis = finite_non_negative(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    raw = (headers.get("retry-after") or "").strip()
    if not raw:
        return None
    seconds = finite_non_negative(raw)
    if seconds is not None:
        return seconds
    return _seconds_until_http_date(raw, now=now)


def finite_non_negative(raw: str | None) -> float | None:
    """``raw`` as a number of seconds, or None when it is missing, not a number, ±inf, NaN or < 0."""
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _seconds_until_http_date(raw: str, *, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


class RetryBudget:
    """A client-wide token bucket (as botocore does) so many failing calls cannot storm the server.

    Each retry costs ``retry_cost`` tokens, each success gives one back. When the bucket is empty,
    calls fail at once with the error they have instead of retrying.
    """

    def __init__(self, capacity: int = 500, retry_cost: int = 5) -> None:
        self._capacity = capacity
        self._tokens = capacity
        self._cost = retry_cost
        self._lock = threading.Lock()

    def try_spend(self) -> bool:
        with self._lock:
            if self._tokens < self._cost:
                return False
            self._tokens -= self._cost
            return True

    def refund(self) -> None:
        with self._lock:
            self._tokens = min(self._capacity, self._tokens + 1)

    @property
    def tokens(self) -> int:
        return self._tokens


class RateLimiter:
    """At most ``limit`` requests in any sliding ``window`` seconds, across every caller.

    :meth:`reserve` books a slot and returns how long the caller must wait before using it, so the
    sync and async drivers share one decision and each sleeps in its own way.
    """

    def __init__(
        self, limit: int = 450, window: float = 60.0, clock: Callable[[], float] | None = None
    ) -> None:
        import time

        self.limit = limit
        self.window = window
        self._clock = clock or time.monotonic
        self._slots: deque[float] = deque()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        with self._lock:
            now = self._clock()
            while self._slots and self._slots[0] <= now - self.window:
                self._slots.popleft()
            start = now
            if len(self._slots) >= self.limit:
                # The slot frees when the request `limit` places back leaves the window.
                start = self._slots[-self.limit] + self.window
            self._slots.append(start)
            return max(0.0, start - now)
