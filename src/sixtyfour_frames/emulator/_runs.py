"""Executing a workflow's blocks for one run, and the run object the state core keeps.

Blocks are executed eagerly when the run is created (they are cheap and deterministic); the
timeline (see ``_timeline``) then decides how much of that work is *visible* at a given time.
"""

from __future__ import annotations

import copy
import marshal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sixtyfour_frames.emulator import _timeline as tl
from sixtyfour_frames.emulator._files import columns_of
from sixtyfour_frames.emulator._workflows import Workflow

Record = dict[str, Any]


@dataclass(frozen=True)
class RunOptions:
    """Per-run settings taken from the POST (and faults that target the new run)."""

    save_json: bool = False
    result_formats: tuple[str, ...] = ()
    specs_override: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    fingerprint: str = ""


@dataclass(frozen=True)
class InjectedFaults:
    """Faults planned for this run: fail at a block, or stall at the start of one (1-based)."""

    fail_at_block: int | None = None
    fail_message: str = ""
    stall_at_block: int | None = None


@dataclass(frozen=True)
class BlockOutput:
    """What one block produced: its rows and their columns (also known when there are no rows)."""

    rows: list[Record]
    columns: list[str]


@dataclass(frozen=True)
class Execution:
    """The outcome of running every block: outputs up to a failure, and the failure if any."""

    outputs: list[BlockOutput]  # one per block that completed, source first
    failure_index: int | None
    failure: str | None


@dataclass
class Run:
    """One run: its input, its executed blocks, its plan and what happened to it since."""

    job_id: str
    number: int  # creation order, to sort runs queued at the same instant
    workflow: Workflow
    records: list[Record]
    options: RunOptions
    execution: Execution
    plan: tl.RunPlan
    queued_at: float
    released_at: float | None = None
    cancelled_at: float | None = None
    cancelled_elapsed: float | None = None

    @property
    def interruptions(self) -> tl.Interruptions:
        """The facts the timeline needs besides the plan."""
        return tl.Interruptions(
            self.queued_at, self.released_at, self.cancelled_at, self.cancelled_elapsed
        )

    def view(self, now: float) -> tl.RunView:
        """The run as seen at ``now``."""
        return tl.view(self.plan, self.interruptions, now)

    def status(self, now: float) -> str:
        """queued, running, completed, failed or cancelled."""
        return tl.run_status(self.plan, self.interruptions, now)

    @property
    def rows_out(self) -> int | None:
        """Rows of the final output, once the last block has produced them."""
        outputs = self.execution.outputs
        if self.execution.failure_index is not None or len(outputs) < self.workflow.blocks_count:
            return None
        return len(outputs[-1].rows)


def new_run(
    job_id: str,
    number: int,
    workflow: Workflow,
    records: Sequence[Record],
    options: RunOptions,
    faults: InjectedFaults,
    *,
    pace: float,
    block_latency: float,
    now: float,
) -> Run:
    """Execute the blocks for ``records`` and lay the run out on its timeline, queued at ``now``."""
    fail_at = None if faults.fail_at_block is None else faults.fail_at_block - 1
    execution = execute(workflow, records, fail_at, faults.fail_message)
    plan = plan_for(
        workflow,
        records,
        execution,
        pace=pace,
        block_latency=block_latency,
        stall_at_block=faults.stall_at_block,
    )
    return Run(job_id, number, workflow, json_copy(list(records)), options, execution, plan, now)


def execute(
    workflow: Workflow, records: Sequence[Record], fail_at: int | None, fail_message: str
) -> Execution:
    """Run every block in order; ``fail_at`` (0-based) forces a failure at that block."""
    current = BlockOutput(json_copy(list(records)), columns_of(records))
    if fail_at == 0:
        return Execution([], 0, fail_message)
    outputs = [current]
    for index, step in enumerate(workflow.steps, start=1):
        if fail_at == index:
            return Execution(outputs, index, fail_message)
        if step.failure is not None:
            return Execution(outputs, index, step.failure)
        try:
            rows = _checked(step.transform(json_copy(current.rows)))
        except Exception as exc:  # a user's block failing is the run failing, not the server
            return Execution(outputs, index, f"{type(exc).__name__}: {exc}")
        current = BlockOutput(rows, columns_of(rows, fallback=current.columns))
        outputs.append(current)
    return Execution(outputs, None, None)


def json_copy(value: Any) -> Any:
    """A deep copy, so that a block cannot change another block's rows or the run's input.

    Rows are parsed JSON (dicts, lists, text, numbers): ``marshal`` copies those in C, about 30×
    faster than ``copy.deepcopy``, which made a POST of 1,000 records cost the emulator some
    60 ms. A user's block may return other objects: those rows take ``deepcopy``.
    """
    try:
        return marshal.loads(marshal.dumps(value))
    except ValueError:  # an object marshal does not know
        return copy.deepcopy(value)


def _checked(rows: Any) -> list[Record]:
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise TypeError(f"a block must return a list of dicts, not {type(rows).__name__}")
    return rows


def plan_for(
    workflow: Workflow,
    records: Sequence[Record],
    execution: Execution,
    *,
    pace: float,
    block_latency: float,
    stall_at_block: int | None,
) -> tl.RunPlan:
    """The run's timeline: each block's rows in and out, failure and stall positions."""
    count = workflow.blocks_count
    rows_in = [len(records)]
    rows_in += [len(output.rows) for output in execution.outputs[: count - 1]]
    rows_in += [0] * (count - len(rows_in))
    produced: list[int | None] = [len(output.rows) for output in execution.outputs]
    produced += [None] * (count - len(produced))
    stall_index = None if stall_at_block is None else min(stall_at_block, count) - 1
    return tl.plan_run(
        rows_in,
        produced,
        pace=pace,
        block_latency=block_latency,
        failure_index=execution.failure_index,
        failure=execution.failure,
        stall_index=stall_index,
    )
