"""How far a run has got at a given moment: a pure function of its plan, its interruptions and now.

Blocks run one after another. Block *i* takes ``block_latency + pace × rows_in(i)`` seconds of
clock time and its ``processed_count`` grows linearly from 0 to ``rows_in(i)``. A failing block
fails halfway through. A stalled run freezes at the start of its stall block until released (the
time it spent frozen is then skipped). A cancelled run freezes where it was cancelled. Nothing is
stored per poll: every view is recomputed from these facts, so a clock moved by a test gives
exactly the state a real wait would have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
PENDING = "pending"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})


@dataclass(frozen=True)
class BlockPlan:
    """One block's share of the run: its rows and its slot on the run's own timeline."""

    sequence_number: int
    rows_in: int
    rows_out: int | None  # None when the block never produces rows (fails or is never reached)
    start: float
    end: float  # when it completes, or fails
    duration: float  # the full duration it would take (a failing block ends halfway)
    failure: str | None = None


@dataclass(frozen=True)
class RunPlan:
    """Everything about a run's progress that is fixed when the run is created."""

    blocks: tuple[BlockPlan, ...]
    failure_index: int | None
    stall_index: int | None

    @property
    def end(self) -> float:
        """Elapsed run time at which the run completes or fails."""
        return (
            self.blocks[-1].end
            if self.failure_index is None
            else self.blocks[self.failure_index].end
        )

    @property
    def stall_applies(self) -> bool:
        """A stall only matters if the run reaches the stall block before failing."""
        if self.stall_index is None:
            return False
        return self.failure_index is None or self.stall_index <= self.failure_index

    @property
    def stall_point(self) -> float:
        """Elapsed time at which a stalled run freezes."""
        return self.blocks[self.stall_index].start if self.stall_index is not None else math.inf


def plan_run(
    rows_in: Sequence[int],
    rows_out: Sequence[int | None],
    *,
    pace: float,
    block_latency: float,
    failure_index: int | None = None,
    failure: str | None = None,
    stall_index: int | None = None,
) -> RunPlan:
    """Lay the blocks out one after another; blocks after a failure get empty slots."""
    blocks = []
    cursor = 0.0
    for index, (count_in, count_out) in enumerate(zip(rows_in, rows_out, strict=True)):
        reached = failure_index is None or index <= failure_index
        duration = block_latency + pace * count_in if reached else 0.0
        fails = index == failure_index
        end = cursor + (duration / 2 if fails else duration)
        blocks.append(
            BlockPlan(
                index + 1, count_in, count_out, cursor, end, duration, failure if fails else None
            )
        )
        cursor = end if reached else cursor
    return RunPlan(tuple(blocks), failure_index, stall_index)


@dataclass(frozen=True)
class Interruptions:
    """What happened to a run after it was created (all absolute clock times)."""

    queued_at: float
    released_at: float | None = None
    cancelled_at: float | None = None
    cancelled_elapsed: float | None = None


@dataclass(frozen=True)
class BlockView:
    """One block as live_status reports it."""

    sequence_number: int
    status: str
    started_at: float | None
    completed_at: float | None
    processed_count: int
    total_count: int
    row_count: int
    progress_percentage: float
    error_message: str | None


@dataclass(frozen=True)
class RunView:
    """A run as seen at one moment."""

    status: str
    blocks: tuple[BlockView, ...]
    current_index: int | None
    completed_blocks: int
    progress_percentage: float
    started_at: float | None
    completed_at: float | None
    last_updated: float
    failure: str | None
    failed_sequence: int | None


def elapsed(plan: RunPlan, interruptions: Interruptions, now: float) -> float:
    """Run time that counts towards progress: wall time minus any time spent stalled."""
    raw = max(0.0, now - interruptions.queued_at)
    if not plan.stall_applies:
        return raw
    stall = plan.stall_point
    if interruptions.released_at is None:
        return min(raw, stall)
    pause = _pause(plan, interruptions)
    if raw <= stall:
        return raw
    return stall if raw <= stall + pause else raw - pause


def _pause(plan: RunPlan, interruptions: Interruptions) -> float:
    if not plan.stall_applies or interruptions.released_at is None:
        return 0.0
    reached_at = interruptions.queued_at + plan.stall_point
    return max(0.0, interruptions.released_at - reached_at)


def _absolute(plan: RunPlan, interruptions: Interruptions, run_time: float) -> float:
    shift = _pause(plan, interruptions) if run_time > plan.stall_point else 0.0
    return interruptions.queued_at + run_time + shift


def _held_index(plan: RunPlan, interruptions: Interruptions, run_time: float) -> int | None:
    """The block a stalled run is frozen at, if it is frozen right now."""
    frozen = plan.stall_applies and interruptions.released_at is None
    return plan.stall_index if frozen and run_time >= plan.stall_point else None


def run_status(plan: RunPlan, interruptions: Interruptions, now: float) -> str:
    """queued, running, completed, failed or cancelled."""
    if interruptions.cancelled_at is not None:
        return CANCELLED
    run_time = elapsed(plan, interruptions, now)
    if _held_index(plan, interruptions, run_time) is not None:
        return RUNNING
    if run_time >= plan.end:
        return FAILED if plan.failure_index is not None else COMPLETED
    return QUEUED if run_time <= 0 else RUNNING


def view(plan: RunPlan, interruptions: Interruptions, now: float) -> RunView:
    """The full picture of a run at ``now``."""
    status = run_status(plan, interruptions, now)
    run_time = (
        interruptions.cancelled_elapsed
        if interruptions.cancelled_elapsed is not None
        else elapsed(plan, interruptions, now)
    )
    held = _held_index(plan, interruptions, run_time)
    blocks = tuple(
        _block_view(plan, interruptions, index, status, run_time, held)
        for index in range(len(plan.blocks))
    )
    active = [b.sequence_number - 1 for b in blocks if b.status in (RUNNING, CANCELLED)]
    failed_index = plan.failure_index if status == FAILED else None
    never_started = status == QUEUED or (status == CANCELLED and run_time <= 0)
    return RunView(
        status=status,
        blocks=blocks,
        current_index=active[0] if active and status == RUNNING else None,
        completed_blocks=sum(1 for b in blocks if b.status == COMPLETED),
        progress_percentage=_overall_progress(plan, blocks, status, run_time),
        started_at=None if never_started else interruptions.queued_at,
        completed_at=_completed_at(plan, interruptions, status),
        last_updated=_last_updated(plan, interruptions, status, now),
        failure=None if failed_index is None else plan.blocks[failed_index].failure,
        failed_sequence=None if failed_index is None else failed_index + 1,
    )


def _block_view(
    plan: RunPlan,
    interruptions: Interruptions,
    index: int,
    status: str,
    run_time: float,
    held: int | None,
) -> BlockView:
    block = plan.blocks[index]
    state = _block_state(plan, index, status, run_time, held)
    fraction = _block_fraction(block, state, run_time)
    processed = math.floor(fraction * block.rows_in)
    started = None if state == PENDING else _absolute(plan, interruptions, block.start)
    finished = _absolute(plan, interruptions, block.end) if state in (COMPLETED, FAILED) else None
    produced = block.rows_out or 0
    return BlockView(
        sequence_number=block.sequence_number,
        status=state,
        started_at=started,
        completed_at=finished,
        processed_count=processed,
        total_count=block.rows_in if state != PENDING else 0,
        row_count=produced
        if state == COMPLETED
        else math.floor(fraction * produced)
        if state != FAILED
        else 0,
        progress_percentage=round(100.0 * fraction, 2),
        error_message=block.failure if state == FAILED else None,
    )


def _block_state(plan: RunPlan, index: int, status: str, run_time: float, held: int | None) -> str:
    block = plan.blocks[index]
    after_failure = plan.failure_index is not None and index > plan.failure_index
    if status == QUEUED or after_failure or (held is not None and index > held):
        return PENDING
    active = CANCELLED if status == CANCELLED else RUNNING
    if held == index:
        return active
    if run_time >= block.end:
        return FAILED if block.failure is not None else COMPLETED
    if block.start <= run_time and status in (RUNNING, CANCELLED):
        return active
    return PENDING


def _block_fraction(block: BlockPlan, state: str, run_time: float) -> float:
    if state == COMPLETED:
        return 1.0
    if state == FAILED:
        return 0.5  # a failing block gives up halfway through its rows
    if state == PENDING or block.duration <= 0:
        return 0.0
    return min(1.0, max(0.0, (run_time - block.start) / block.duration))


def _overall_progress(
    plan: RunPlan, blocks: tuple[BlockView, ...], status: str, run_time: float
) -> float:
    if status == COMPLETED:
        return 100.0
    done = sum(1 for b in blocks if b.status == COMPLETED)
    current = next((b for b in blocks if b.status in (RUNNING, CANCELLED, FAILED)), None)
    partial = 0.0
    if current is not None:
        partial = _block_fraction(
            plan.blocks[current.sequence_number - 1], current.status, run_time
        )
    return round(100.0 * (done + partial) / len(blocks), 2)


def _completed_at(plan: RunPlan, interruptions: Interruptions, status: str) -> float | None:
    if status == CANCELLED:
        return interruptions.cancelled_at
    if status in (COMPLETED, FAILED):
        return _absolute(plan, interruptions, plan.end)
    return None


def _last_updated(plan: RunPlan, interruptions: Interruptions, status: str, now: float) -> float:
    finished = _completed_at(plan, interruptions, status)
    if finished is not None:
        return finished
    return interruptions.queued_at if status == QUEUED else now
