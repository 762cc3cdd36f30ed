"""The pure progress model: how a run looks at any moment, whatever happens to it."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from sixtyfour_frames.emulator import _timeline as tl

ORDER = {tl.QUEUED: 0, tl.RUNNING: 1, tl.COMPLETED: 2, tl.FAILED: 2, tl.CANCELLED: 2}


def _plan(
    rows: list[int], *, failure_index: int | None = None, stall_index: int | None = None
) -> tl.RunPlan:
    produced: list[int | None] = [
        None if failure_index is not None and i >= failure_index else n for i, n in enumerate(rows)
    ]
    return tl.plan_run(
        rows,
        produced,
        pace=1.0,
        block_latency=0.5,
        failure_index=failure_index,
        failure="boom" if failure_index is not None else None,
        stall_index=stall_index,
    )


def test_blocks_are_laid_out_one_after_another() -> None:
    plan = _plan([4, 4, 2])
    assert [(b.start, b.end) for b in plan.blocks] == [(0.0, 4.5), (4.5, 9.0), (9.0, 11.5)]
    assert plan.end == 11.5


def test_a_failing_block_ends_halfway_and_later_blocks_never_start() -> None:
    plan = _plan([4, 4, 0], failure_index=1)
    assert plan.end == 4.5 + 2.25
    view = tl.view(plan, tl.Interruptions(queued_at=100.0), now=200.0)
    assert [b.status for b in view.blocks] == [tl.COMPLETED, tl.FAILED, tl.PENDING]
    assert view.blocks[1].processed_count == 2
    assert view.failure == "boom"
    assert view.failed_sequence == 2
    assert view.completed_at == 100.0 + 6.75


def test_time_spent_stalled_is_skipped_after_release() -> None:
    plan = _plan([2, 2], stall_index=1)
    held = tl.Interruptions(queued_at=0.0)
    assert tl.elapsed(plan, held, now=50.0) == 2.5  # frozen at the start of block 2
    released = tl.Interruptions(queued_at=0.0, released_at=50.0)
    assert tl.elapsed(plan, released, now=51.0) == 3.5
    view = tl.view(plan, released, now=100.0)
    assert view.status == tl.COMPLETED
    assert view.blocks[1].started_at == 2.5  # it showed as running (at 0 rows) while held
    assert view.blocks[1].completed_at == view.completed_at == 50.0 + 2.5


def test_releasing_before_the_stall_point_changes_nothing() -> None:
    plan = _plan([2, 2], stall_index=1)
    early = tl.Interruptions(queued_at=0.0, released_at=1.0)
    assert tl.elapsed(plan, early, now=4.0) == 4.0


@st.composite
def _scenarios(draw: st.DrawFn) -> tuple[tl.RunPlan, tl.Interruptions, list[float]]:
    rows = draw(st.lists(st.integers(0, 20), min_size=1, max_size=5))
    failure = draw(st.none() | st.integers(0, len(rows) - 1))
    stall = draw(st.none() | st.integers(0, len(rows) - 1))
    pace = draw(st.sampled_from([0.0, 0.1, 1.0]))
    latency = draw(st.sampled_from([0.0, 0.5]))
    produced: list[int | None] = [
        None if failure is not None and i >= failure else n for i, n in enumerate(rows)
    ]
    plan = tl.plan_run(
        rows,
        produced,
        pace=pace,
        block_latency=latency,
        failure_index=failure,
        failure="x" if failure is not None else None,
        stall_index=stall,
    )
    times = sorted(draw(st.lists(st.floats(0, 200), min_size=2, max_size=12)))
    released_at = draw(st.none() | st.floats(0, 200))
    interruptions = tl.Interruptions(queued_at=0.0, released_at=released_at)
    cancel_at = draw(st.none() | st.floats(0, 200))
    if cancel_at is not None and tl.run_status(plan, interruptions, cancel_at) not in tl.TERMINAL:
        interruptions = tl.Interruptions(
            queued_at=0.0,
            released_at=released_at
            if released_at is not None and released_at <= cancel_at
            else None,
            cancelled_at=cancel_at,
            cancelled_elapsed=tl.elapsed(plan, interruptions, cancel_at),
        )
        times = [t for t in times if t >= cancel_at] or [cancel_at]
    elif released_at is not None:
        times = [t for t in times if t >= released_at] or [released_at]
    return plan, interruptions, times


@settings(max_examples=150, deadline=None)
@given(_scenarios())
def test_progress_only_moves_forward(
    scenario: tuple[tl.RunPlan, tl.Interruptions, list[float]],
) -> None:
    plan, interruptions, times = scenario
    views = [tl.view(plan, interruptions, now) for now in times]
    for earlier, later in itertools.pairwise(views):
        assert ORDER[earlier.status] <= ORDER[later.status]
        if earlier.status in tl.TERMINAL:
            assert later.status == earlier.status
        assert earlier.progress_percentage <= later.progress_percentage
        assert earlier.completed_blocks <= later.completed_blocks
    for view in views:
        assert 0.0 <= view.progress_percentage <= 100.0
        assert all(0 <= b.processed_count <= b.total_count for b in view.blocks)
        assert (view.current_index is not None) == (view.status == tl.RUNNING)
        if view.status == tl.COMPLETED:
            assert view.progress_percentage == 100.0
            assert all(b.status == tl.COMPLETED for b in view.blocks)
        if view.status == tl.FAILED:
            assert view.blocks[plan.failure_index or 0].status == tl.FAILED
