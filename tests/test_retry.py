"""Pure retry decisions: Retry-After parsing, backoff bounds, the budget and the rate limiter."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from sixtyfour_frames._retry import RateLimiter, RetryBudget, RetryPolicy, parse_retry_after

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        (
            {"retry-after": format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)},
            30.0,
        ),
        ({"retry-after": format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True)}, 0.0),
        # OpenAI's table of malformed values: fall back to our own backoff, never crash.
        ({"retry-after": "inf"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "-10"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "Fri, 29 Sep 100000 00:00:00 GMT"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 12])
def test_backoff_stays_within_its_jitter_bounds(attempt: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=20.0)
    rng = random.Random(attempt)
    ceiling = min(20.0, 0.5 * 2 ** (attempt - 1))
    delays = [policy.backoff(attempt, rng=rng) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # jittered, not a fixed value


def test_rate_limited_backoff_is_longer_and_capped_at_a_minute() -> None:
    policy = RetryPolicy()
    rng = random.Random(0)
    assert policy.backoff(1, rate_limited=True, rng=rng) >= policy.rate_limit_delay / 2
    assert policy.backoff(1, rate_limited=True, rng=rng) > policy.backoff(1, rng=rng)
    assert max(policy.backoff(20, rate_limited=True, rng=rng) for _ in range(50)) <= 60.0


def test_budget_refuses_retries_once_spent_and_recovers_on_success() -> None:
    budget = RetryBudget(capacity=10, retry_cost=5)
    assert budget.try_spend()
    assert budget.try_spend()
    assert not budget.try_spend()
    for _ in range(5):
        budget.refund()
    assert budget.try_spend()


def test_rate_limiter_keeps_any_window_under_its_limit() -> None:
    now = [0.0]
    limiter = RateLimiter(limit=5, window=60.0, clock=lambda: now[0])
    starts = []
    for _ in range(12):
        wait = limiter.reserve()
        starts.append(now[0] + wait)
    assert starts[:5] == [0.0] * 5
    assert starts[5:10] == [60.0] * 5
    assert starts[10:] == [120.0] * 2
    for i, start in enumerate(starts):
        in_window = [s for s in starts if start - 60.0 < s <= start]
        assert len(in_window) <= 5, (i, in_window)
