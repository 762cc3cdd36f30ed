"""Submissions: their states, the transitions the ledger accepts, and their database rows.

A submission is one logical POST /workflows/run (one chunk of one enrich call). Its state machine
is deliberately strict: a state that may own a paid run (INTENT, AMBIGUOUS, SUBMITTED) can never
be turned back into "nothing happened", because that would let the next call pay again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sixtyfour_frames._errors import LedgerError


class SubmissionState(StrEnum):
    """Where one logical submission stands. See :data:`ALLOWED_TRANSITIONS`."""

    INTENT = "intent"  # recorded, key chosen; the POST may or may not have been sent
    SUBMITTED = "submitted"  # the server gave a job id
    COMPLETED = "completed"
    FAILED = "failed"  # the run failed on the server
    CANCELLED = "cancelled"
    AMBIGUOUS = "ambiguous"  # a run may exist; resolve with the same key or the runs list
    FAILED_NO_RUN = "failed_no_run"  # rejected before any run existed (400/401/402/…)


_S = SubmissionState

ALLOWED_TRANSITIONS: Mapping[SubmissionState, frozenset[SubmissionState]] = {
    _S.INTENT: frozenset({_S.SUBMITTED, _S.AMBIGUOUS, _S.FAILED_NO_RUN}),
    # An ambiguous submission is resolved by a job id (replay or adoption) or, once the runs list
    # proves that no run was made, by FAILED_NO_RUN; it is never simply dropped.
    _S.AMBIGUOUS: frozenset({_S.SUBMITTED, _S.AMBIGUOUS, _S.FAILED_NO_RUN}),
    _S.SUBMITTED: frozenset({_S.SUBMITTED, _S.COMPLETED, _S.FAILED, _S.CANCELLED}),
    # A cancel can lose the race against completion; the finished run's results are still wanted.
    _S.CANCELLED: frozenset({_S.CANCELLED, _S.COMPLETED}),
    _S.COMPLETED: frozenset({_S.COMPLETED}),
    _S.FAILED: frozenset({_S.FAILED}),
    _S.FAILED_NO_RUN: frozenset({_S.FAILED_NO_RUN}),
}
"""Every state change the ledger accepts (re-marking the same state is allowed and idempotent).
States that may own a run (INTENT, AMBIGUOUS, SUBMITTED) can never go back to "nothing happened"."""

RETIRABLE_STATES: frozenset[SubmissionState] = frozenset(
    {_S.FAILED, _S.CANCELLED, _S.FAILED_NO_RUN}
)
"""States that :meth:`Ledger.supersede` accepts: no run is pending, so a fresh key cannot pay twice."""


@dataclass(frozen=True)
class Submission:
    """One logical submission (one chunk of one enrich call) as recorded in the ledger."""

    fingerprint: str  # hash of (workflow id, specs_override, the exact records sent); by the caller
    workflow_id: str
    scope: str  # row-cache scope (hash of workflow id + specs_override); by the caller
    idempotency_key: str  # uuid4 text chosen by record_intent, never changed afterwards
    body_sha256: str  # hash of the exact request body, frozen at intent time
    record_keys: tuple[str, ...]  # the row keys sent in this submission
    state: SubmissionState
    job_id: str | None
    already_started: bool | None
    created_at: float  # epoch seconds
    updated_at: float
    error: str | None
    call_id: str | None  # groups the chunks of one enrich call; opaque text from the caller
    superseded: bool = False  # retired by supersede(); kept as history only
    replaces: str | None = None  # idempotency key of the retired submission this one replaces


def current_row(conn: sqlite3.Connection, fingerprint: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM submissions WHERE fingerprint = ? AND superseded_at IS NULL",
        (fingerprint,),
    ).fetchone()
    return row


def require_current(conn: sqlite3.Connection, fingerprint: str) -> sqlite3.Row:
    row = current_row(conn, fingerprint)
    if row is None:
        raise LedgerError(
            f"no current submission with fingerprint {fingerprint}",
            hint="Call record_intent(...) first.",
        )
    return row


def row_by_id(conn: sqlite3.Connection, row_id: int) -> sqlite3.Row:
    row: sqlite3.Row = conn.execute("SELECT * FROM submissions WHERE id = ?", (row_id,)).fetchone()
    return row


def lastrowid(cursor: sqlite3.Cursor) -> int:
    assert cursor.lastrowid is not None  # always set after a single-row INSERT
    return cursor.lastrowid


def submission_from_row(row: sqlite3.Row) -> Submission:
    started = row["already_started"]
    return Submission(
        fingerprint=row["fingerprint"],
        workflow_id=row["workflow_id"],
        scope=row["scope"],
        idempotency_key=row["idempotency_key"],
        body_sha256=row["body_sha256"],
        record_keys=tuple(json.loads(row["record_keys"])),
        state=SubmissionState(row["state"]),
        job_id=row["job_id"],
        already_started=None if started is None else bool(started),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        error=row["error"],
        call_id=row["call_id"],
        superseded=row["superseded_at"] is not None,
        replaces=row["replaces"],
    )


def submission_filters(
    workflow_id: str | None,
    states: Collection[SubmissionState] | None,
    call_id: str | None,
    include_superseded: bool,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if not include_superseded:
        clauses.append("superseded_at IS NULL")
    if workflow_id is not None:
        clauses.append("workflow_id = ?")
        params.append(workflow_id)
    if call_id is not None:
        clauses.append("call_id = ?")
        params.append(call_id)
    if states is not None:
        values = sorted({SubmissionState(s).value for s in states})
        clauses.append(f"state IN ({', '.join('?' for _ in values)})")
        params.extend(values)
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


def check_same_body(row: sqlite3.Row, body_sha256: str) -> None:
    if row["body_sha256"] != body_sha256:
        raise LedgerError(
            f"submission {row['fingerprint']} was recorded with another request body "
            f"(sha256 {row['body_sha256']}, now {body_sha256})",
            hint="The same fingerprint must always describe the same body: this is a fingerprint "
            "collision or a bug. Nothing was sent.",
        )


def check_same_job(row: sqlite3.Row, job_id: str) -> None:
    if row["job_id"] != job_id:
        raise LedgerError(
            f"submission {row['fingerprint']} already has run {row['job_id']}; refusing to record "
            f"a second run {job_id} for it",
            hint="Two runs for one chunk may mean it was paid twice: inspect both with "
            "`sixtyfour-frames runs status`.",
        )


def check_job_unclaimed(conn: sqlite3.Connection, job_id: str) -> None:
    owner = conn.execute(
        "SELECT fingerprint FROM submissions WHERE job_id = ?", (job_id,)
    ).fetchone()
    if owner is not None:
        raise LedgerError(
            f"run {job_id} is already recorded for submission {owner[0]}",
            hint="A run can belong to one submission only; an adopted run must not be claimed twice.",
        )


def check_transition(row: sqlite3.Row, target: SubmissionState) -> None:
    current = SubmissionState(row["state"])
    if target not in ALLOWED_TRANSITIONS[current]:
        allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[current]))
        raise LedgerError(
            f"submission {row['fingerprint']} cannot go from {current} to {target} "
            f"(allowed: {allowed})"
        )
