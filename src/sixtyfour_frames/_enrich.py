"""The one orchestrator: payload → ledger → submit → wait → download → join.

``EnrichJob`` holds one call. :func:`start` builds and validates the payload (nothing is sent when
it is bad), reuses rows the ledger already has, records each chunk's intent, and starts up to
``max_concurrent_runs`` runs; :meth:`EnrichJob.wait` polls them all in one loop (starting the rest
as slots free up), downloads each finished run at once and stores it before anything else;
:meth:`EnrichJob.result` joins everything back onto the caller's frame.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_frames._chunks import (
    Chunk,
    body_sha256,
    cache_scope,
    fingerprint,
    halve,
    split_chunks,
)
from sixtyfour_frames._client import Client
from sixtyfour_frames._crash import crash_point
from sixtyfour_frames._downloads import Downloads
from sixtyfour_frames._errors import (
    AmbiguousSubmitError,
    InvalidArgumentError,
    JoinError,
    NotFoundError,
    PayloadTooLargeError,
    RunCancelledError,
    RunError,
    RunFailedError,
    SixtyfourError,
    WaitTimeoutError,
)
from sixtyfour_frames._frames import FrameKind, attach_report, eager, frame_kind, like_input
from sixtyfour_frames._join import Multiple, OnConflict, join_results
from sixtyfour_frames._ledger import Ledger, Submission, SubmissionState
from sixtyfour_frames._models import LiveStatus
from sixtyfour_frames._operations import EncodedPayload, encode_run_body
from sixtyfour_frames._payload import ROW_KEY, NaiveDatetimePolicy, Payload, build_payload
from sixtyfour_frames._poll import PollSchedule, as_schedule, finished_or_raise
from sixtyfour_frames._progress import ProgressOption, ProgressTracker, make_tracker
from sixtyfour_frames._report import RunInfo, RunReport
from sixtyfour_frames._submit import NoRunWasCreated, Submitter

logger = logging.getLogger("sixtyfour_frames")

ErrorsPolicy = Literal["raise", "keep"]
InterruptPolicy = Literal["cancel", "detach"]
DEFAULT_MAX_CONCURRENT_RUNS = 4
# An ambiguous POST proven to have created no run is sent again under a new key (§3.3 of the
# reliability notes), at most this many times in one call: an outage fails every round alike.
MAX_RESUBMITS_AFTER_NO_RUN = 1


class EnrichInterrupted(KeyboardInterrupt):
    """Ctrl-C during an enrich call; the message says what happened to the runs and what to do."""

    def __init__(self, message: str, *, run_ids: Sequence[str], cancelled: bool) -> None:
        self.run_ids = tuple(run_ids)
        self.cancelled = cancelled
        super().__init__(message)


class _StopRequested(Exception):
    """Internal: an async caller was cancelled; handled like Ctrl-C."""


@dataclass(frozen=True)
class EnrichOptions:
    """Every knob of an enrich call (the keyword arguments of ``df.sixtyfour.enrich``)."""

    columns: Sequence[str] | None = None
    rename: Mapping[str, str] | None = None
    specs_override: Mapping[str, Any] | None = None
    on: Sequence[str] | None = None
    multiple: Multiple = "first"
    on_conflict: OnConflict = "suffix"
    suffix: str = "_sixtyfour"
    chunk_size: int | None = None
    chunk_bytes: int | None = None
    max_concurrent_runs: int | None = None
    progress: ProgressOption = None
    timeout: float | None = None
    on_interrupt: InterruptPolicy = "cancel"
    cache: bool = True
    refresh: bool = False
    errors: ErrorsPolicy = "raise"
    naive_datetimes: NaiveDatetimePolicy = "raise"
    poll: PollSchedule | float | None = None

    def validate(self) -> None:
        _one_of("multiple", self.multiple, ("first", "list", "explode"))
        _one_of("on_conflict", self.on_conflict, ("suffix", "raise", "overwrite"))
        _one_of("on_interrupt", self.on_interrupt, ("cancel", "detach"))
        _one_of("errors", self.errors, ("raise", "keep"))
        if self.max_concurrent_runs is not None and (
            isinstance(self.max_concurrent_runs, bool) or self.max_concurrent_runs < 1
        ):
            raise InvalidArgumentError(
                f"max_concurrent_runs must be a positive integer, got {self.max_concurrent_runs!r}."
            )
        if self.timeout is not None and not self.timeout > 0:
            raise InvalidArgumentError(f"timeout must be positive seconds, got {self.timeout!r}.")
        if isinstance(self.on, str):
            raise InvalidArgumentError(f"on must be a list of column names, e.g. on=[{self.on!r}].")


def _rows_with_keys(row_keys: pa.Array, keys: Mapping[str, Any]) -> int:
    """How many rows have one of ``keys``."""
    if not keys:
        return 0
    hits = pc.is_in(row_keys, value_set=pa.array(list(keys), pa.string()))
    return int(pc.sum(hits).as_py() or 0)


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidArgumentError(
            f"{name}={value!r} is not one of {', '.join(map(repr, allowed))}."
        )


@dataclass
class _Work:
    """One chunk of the call and what became of it."""

    chunk: Chunk
    fingerprint: str
    submission: Submission | None = None
    source: str = "new"
    table: pa.Table | None = None
    error: RunError | None = None
    submitted_at: float = 0.0
    polls: int = 0  # each run keeps its own poll schedule: a new run starts short again
    next_poll_at: float = 0.0

    @property
    def job_id(self) -> str | None:
        return self.submission.job_id if self.submission else None


class EnrichJob:
    """One enrich call. Create it with ``df.sixtyfour.start(...)`` or :func:`start`."""

    def __init__(
        self,
        frame: Any,
        workflow_id: str,
        options: EnrichOptions,
        *,
        client: Client | None = None,
        ledger: Ledger | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        options.validate()
        if not isinstance(workflow_id, str) or not workflow_id.strip():
            raise InvalidArgumentError(
                f"workflow_id must be a non-empty string, got {workflow_id!r}."
            )
        self.workflow_id = workflow_id.strip()
        self.options = options
        self._kind: FrameKind = frame_kind(frame)
        self._original = frame
        self._stop = stop or threading.Event()
        self.report = RunReport(workflow_id=self.workflow_id)
        self._call_id = str(uuid.uuid4())
        started = time.perf_counter()
        self._frame = eager(frame)
        self._payload = _build(self._frame, options)
        self._timing("payload", started)
        self._owns_client = client is None
        self._client = client or Client()
        self._sleep: Callable[[float], None] = self._client._sleep
        self._clock: Callable[[], float] = self._client._clock
        self._owns_ledger = ledger is None
        self._ledger = ledger or Ledger()
        self._scope = cache_scope(
            self.workflow_id, options.specs_override, base_url=self._client.base_url
        )
        self._cached_tables: list[pa.Table] = []
        self._works: list[_Work] = []
        self._pending: deque[_Work] = deque()
        self._active: dict[str, _Work] = {}
        self._downloads: Downloads[_Work, tuple[pa.Table, float]] = Downloads(self._fetch)
        self._submitter = Submitter(
            self._client, self._ledger, sleep=self._sleep, specs_override=options.specs_override
        )
        self._tracker: ProgressTracker | None = None
        self._finished = False
        self._generation = 1  # the refresh link chunks use when paying again (see _plan)

    # ------------------------------------------------------------ public API

    @property
    def run_ids(self) -> list[str]:
        return [w.job_id for w in self._works if w.job_id]

    def status(self) -> dict[str, str]:
        """Poll every run of the call once: job id → status."""
        states = {w.job_id: _state_of(w) for w in self._works if w.job_id}
        for job_id in list(self._active):
            states[job_id] = self._client.live_status(job_id).overall_status
        return states

    def wait(self, timeout: float | None = None) -> RunReport:
        """Block until every run has finished and its rows are stored in the ledger."""
        started = time.perf_counter()
        try:
            self._drive(timeout if timeout is not None else self.options.timeout)
        except (KeyboardInterrupt, _StopRequested):
            self._interrupted()
        finally:
            self._timing("wait", started)
        self._finished = True
        return self.report

    def result(self, timeout: float | None = None) -> Any:
        """Wait, then return the caller's frame with the workflow's new columns attached."""
        if not self._finished:
            self.wait(timeout)
        failures = [w.error for w in self._works if w.error is not None]
        if failures and self.options.errors == "raise":
            self._close_progress()
            raise failures[0]
        started = time.perf_counter()
        joined = self._join()
        self._timing("join", started)
        self._close_progress()
        self._release()
        return joined

    def cancel(self) -> list[str]:
        """Cancel every run of the call that is still going; returns the job ids cancelled.

        A run that finished before the cancel reached it stays with the call: its rows are paid
        for, and ``result()`` still collects them.
        """
        cancelled = []
        for job_id, work in list(self._active.items()):
            if not self._cancel_run(job_id, work, "cancelled by the user"):
                continue
            self._set_run(work, "cancelled")
            work.error = RunCancelledError(job_id)
            del self._active[job_id]
            cancelled.append(job_id)
        return cancelled

    def resume(self) -> EnrichJob:
        """Start the same call again: finished chunks come from the ledger, running ones re-attach."""
        return start(
            self._original,
            self.workflow_id,
            options=self.options,
            client=self._client,
            ledger=self._ledger,
        )

    def __repr__(self) -> str:
        return f"EnrichJob(workflow_id={self.workflow_id!r}, run_ids={self.run_ids!r})"

    # ------------------------------------------------------------ planning

    def _launch(self) -> EnrichJob:
        """Reuse what the ledger has, plan chunks, start the first runs."""
        started = time.perf_counter()
        try:
            self._plan()
            self._tracker = make_tracker(
                self.options.progress,
                rows_total=sum(len(w.chunk.keys) for w in self._works),
                rows_cached=self.report.rows_cached,
                description=f"sixtyfour {self.workflow_id[:8]}",
            )
            for work in self._works:
                if work.job_id:
                    self._tracker.add_run(work.job_id, len(work.chunk.keys), _state_of(work))
            self._fill_slots()
        except (KeyboardInterrupt, _StopRequested):
            self._interrupted()
        finally:
            self._timing("submit", started)
        return self

    def _plan(self) -> None:
        payload = self._payload
        report = self.report
        report.rows_in = payload.n_rows
        report.rows_unique = payload.n_unique
        report.rows_deduplicated = payload.n_rows - payload.n_unique
        cached = self._reuse_cached(payload.unique_key_array)
        to_send = np.flatnonzero(
            pc.invert(pc.is_in(payload.unique_key_array, pa.array(cached, pa.string())))
        )
        sizes = payload.record_sizes
        runs = split_chunks(
            sizes[to_send], chunk_rows=self.options.chunk_size, chunk_bytes=self.options.chunk_bytes
        )
        chunks = []
        for index, (start, stop, size) in enumerate(runs):
            positions = to_send[start:stop]
            keys = payload.unique_key_array.take(pa.array(positions))
            chunks.append(Chunk(index, keys, positions, size))
        if self._pays_again:
            self._generation = self._refresh_generation(chunks)
        for chunk in chunks:
            self._add_work(chunk)

    def _reuse_cached(self, keys: pa.Array) -> set[str]:
        if not self.options.cache or self.options.refresh:
            return set()
        by_job: dict[str, list[str]] = {}
        for key, job_id in self._ledger.cache_lookup(self._scope, keys).items():
            by_job.setdefault(job_id, []).append(key)
        served: set[str] = set()
        serving_runs: list[str] = []
        for job_id, job_keys in by_job.items():
            table = self._ledger.load_results(job_id)
            if table is None or ROW_KEY not in table.column_names:
                continue  # the stored rows are gone: those records are sent again
            mask = pc.is_in(table.column(ROW_KEY), value_set=pa.array(job_keys, pa.string()))
            self._cached_tables.append(self._joinable(table.filter(mask)))
            served.update(job_keys)
            serving_runs.append(job_id)
        self.report.rows_cached = len(served)
        # Only the runs whose stored rows were used: the report says where the rows came from.
        self.report.cached_from_runs = tuple(sorted(serving_runs))
        return served

    def _body(self, chunk: Chunk) -> bytes:
        """The chunk's records as sent. Built when needed and then dropped: cutting it from the
        payload's texts is cheap, and holding every chunk's body would double the memory."""
        return self._payload.body_for(chunk.positions)

    def _add_work(self, chunk: Chunk) -> _Work:
        fp = self._fingerprint_for(self._body(chunk))
        work = _Work(chunk, fp, submission=self._ledger.submission(fp))
        self._works.append(work)
        self._classify(work)
        return work

    @property
    def _pays_again(self) -> bool:
        """``refresh=True`` or ``cache=False``: records enriched before are paid for again."""
        return self.options.refresh or not self.options.cache

    def _fingerprint_for(self, records_json: bytes) -> str:
        if not self._pays_again:
            return fingerprint(self._scope, records_json)
        chain = self._refresh_chain(records_json)
        return chain[min(self._generation, len(chain) - 1)]

    def _refresh_chain(self, records_json: bytes) -> list[str]:
        """The fingerprints this chunk's records had in the first call and in each refresh since.

        Each refresh's fingerprint derives from the run it replaces, so the chain is the same in
        every process. Every link but the last is COMPLETED; the last one is new or in flight.
        """
        fp = fingerprint(self._scope, records_json)
        chain = [fp]
        while (sub := self._ledger.submission(fp)) and sub.state is SubmissionState.COMPLETED:
            fp = fingerprint(fp, (sub.job_id or "").encode())
            chain.append(fp)
        return chain

    def _refresh_generation(self, chunks: Sequence[Chunk]) -> int:
        """The link of every chunk's chain this refresh uses.

        A refresh pays again once: one link past the newest link that *every* chunk completed.
        Chunks already past it were refreshed by an earlier attempt of this refresh that crashed
        or was interrupted before the other chunks finished; they reuse that link instead of being
        refreshed (and paid for) a third time. Walking each chunk to its own end would do that.
        """
        completed = [len(self._refresh_chain(self._body(chunk))) - 1 for chunk in chunks]
        return max(1, min(completed, default=1))

    def _classify(self, work: _Work) -> None:
        sub = work.submission
        state = sub.state if sub else None
        if state in (
            SubmissionState.SUBMITTED,
            SubmissionState.COMPLETED,
            SubmissionState.CANCELLED,
        ):
            if (
                state is SubmissionState.CANCELLED
                and sub is not None
                and not self._ledger.has_results(sub.job_id or "")
            ):
                self._ledger.supersede(work.fingerprint)
                work.submission = None
                self._pending.append(work)
                return
            work.source = "reattached"
            self._active[sub.job_id or ""] = work  # type: ignore[union-attr]
            work.submitted_at = self._clock()
            return
        if state is SubmissionState.FAILED:
            self._ledger.supersede(work.fingerprint)  # re-running pays again only for what failed
            work.submission = None
        elif state in (SubmissionState.INTENT, SubmissionState.AMBIGUOUS):
            work.source = "reattached"
        self._pending.append(work)

    # ------------------------------------------------------------ submitting

    def _fill_slots(self) -> None:
        limit = self.options.max_concurrent_runs or DEFAULT_MAX_CONCURRENT_RUNS
        while self._pending and len(self._active) < limit:
            self._check_stop()
            work = self._pending.popleft()
            try:
                self._submit(work)
            except PayloadTooLargeError:
                self._split(work)
            except BaseException:
                # Not started as far as we know, yet its POST may have created a run: back in
                # the queue, where Ctrl-C handling looks for the runs of interrupted submissions.
                self._pending.appendleft(work)
                raise
        self._release_sent_texts()

    def _release_sent_texts(self) -> None:
        """Drop the texts no chunk still waiting to be sent needs: the texts are most of the
        payload's memory, and a long call would otherwise hold them all until its last POST."""
        if self._payload.texts is None:
            return
        if not self._pending:
            self._payload = self._payload.without_texts()  # every chunk is sent
            return
        waiting = min(int(work.chunk.positions.min()) for work in self._pending)
        self._payload = self._payload.release_texts_below(waiting)

    def _submit(self, work: _Work) -> None:
        records_json = self._body(work.chunk)
        body_hash = body_sha256(
            encode_run_body(EncodedPayload(records_json), self.options.specs_override) or b""
        )
        with self._ledger.lock(work.fingerprint):
            sub = self._submit_locked(work, records_json, body_hash)
        work.submission = sub
        work.submitted_at = self._clock()
        # A run just started cannot be done yet: its first poll waits one short interval.
        work.next_poll_at = work.submitted_at + as_schedule(self.options.poll).interval(0)
        job_id = sub.job_id or ""
        self._active[job_id] = work
        if self._tracker is not None:
            self._tracker.add_run(job_id, len(work.chunk.keys), "queued")

    def _submit_locked(self, work: _Work, records_json: bytes, body_hash: str) -> Submission:
        """Record the intent and send it, holding the chunk's lock; the submission with a job id."""
        resubmits = 0
        while True:
            sub = self._ledger.record_intent(
                fingerprint=work.fingerprint,
                workflow_id=self.workflow_id,
                scope=self._scope,
                body_sha256=body_hash,
                record_keys=work.chunk.keys,
                call_id=self._call_id,
            )
            if sub.job_id:  # another process submitted it while we waited for the lock
                work.source = "reattached"
                return sub
            crash_point("after_intent")
            try:
                return self._submitter.submit(sub, records_json)
            except NoRunWasCreated as nothing:
                # The ledger retired the old key, so a new intent may be sent. But while the API
                # keeps failing every round ends like this one: give up after a few.
                if resubmits >= MAX_RESUBMITS_AFTER_NO_RUN:
                    raise nothing.error from None
                resubmits += 1

    def _split(self, work: _Work) -> None:
        """The API refused the chunk as too large (413): send it as two smaller runs."""
        logger.warning(
            "chunk of %d records was too large; splitting it in two", len(work.chunk.keys)
        )
        self._works.remove(work)
        for part in halve(work.chunk, self._payload.record_sizes):
            self._pending.appendleft(self._detach(self._add_work(part)))

    def _detach(self, work: _Work) -> _Work:
        if work in self._pending:
            self._pending.remove(work)
        return work

    # ------------------------------------------------------------ waiting

    def _drive(self, timeout: float | None) -> None:
        schedule = as_schedule(self.options.poll)
        deadline = None if timeout is None else self._clock() + timeout
        while self._pending or self._active or self._downloads:
            self._fill_slots()
            ready = [work for work in self._due() if self._poll(work, schedule)]
            for work in ready:  # free the slots first: the next chunks start while these download
                self._active.pop(work.job_id or "", None)
            self._fill_slots()
            for work in ready:
                self._downloads.start(work)
            if not self._real_time:
                # An injected clock (tests): each download ends before the clock moves on, so
                # every run of a test makes the same requests in the same order.
                self._downloads.wait(all_of_them=True)
            for work, fetched in self._downloads.finished():
                self._collect(work, *fetched.result())
            if not self._active and not self._pending:
                self._downloads.wait()  # only downloads are left: no poll is due
                self._check_stop()
                continue
            if deadline is not None and self._clock() >= deadline:
                raise WaitTimeoutError(
                    ", ".join(self._active), timeout=timeout or 0.0, last_status="running"
                )
            self._pause(self._until_next_poll(deadline))

    def _due(self) -> list[_Work]:
        now = self._clock()
        return [work for work in self._active.values() if work.next_poll_at <= now]

    def _until_next_poll(self, deadline: float | None) -> float:
        wake = min((work.next_poll_at for work in self._active.values()), default=self._clock())
        if deadline is not None:
            wake = min(wake, deadline)
        return max(0.0, wake - self._clock())

    def _poll(self, work: _Work, schedule: PollSchedule) -> bool:
        """Read one run's live status; True when it completed and its rows can be collected."""
        job_id = work.job_id or ""
        if work.submission is not None and work.submission.state is SubmissionState.COMPLETED:
            return True
        work.next_poll_at = self._clock() + schedule.interval(work.polls)
        work.polls += 1
        try:
            status = self._client.live_status(job_id)
        except NotFoundError:
            if self._clock() - work.submitted_at < schedule.not_found_grace:
                return False  # a new run can be briefly unknown
            raise
        crash_point("during_polling")
        if self._tracker is not None:
            self._tracker.observe(status)
        try:
            done = finished_or_raise(status, job_id)
        except RunFailedError as error:
            self._ended(work, SubmissionState.FAILED, error, status)
            return False
        except RunCancelledError as error:
            self._ended(work, SubmissionState.CANCELLED, error, status)
            return False
        return done

    def _ended(
        self, work: _Work, state: SubmissionState, error: RunError, status: LiveStatus
    ) -> None:
        self._ledger.mark(work.fingerprint, state, error=str(error))
        work.error = error
        self._set_run(work, status.overall_status)
        self._active.pop(work.job_id or "", None)

    def _fetch(self, work: _Work) -> tuple[pa.Table, float]:
        """On the download thread: a finished run's rows, stored before anything else touches
        them, and the seconds it took."""
        job_id = work.job_id or ""
        started = time.perf_counter()
        table = self._ledger.load_results(job_id)
        if table is None:
            crash_point("before_download")
            table = self._client.download_results(job_id)
            self._ledger.store_results(job_id, table)
            crash_point("after_download")
        return table, time.perf_counter() - started

    def _collect(self, work: _Work, table: pa.Table, seconds: float) -> None:
        """Take a fetched run's rows into the call (and the row cache) once they are ours."""
        job_id = work.job_id or ""
        self.report.timings["download"] = self.report.timings.get("download", 0.0) + seconds
        self._check_rows_are_ours(table, work, job_id)
        if ROW_KEY in table.column_names and self.options.cache:
            self._ledger.cache_put(self._scope, work.chunk.keys, job_id)
        self._ledger.mark(work.fingerprint, SubmissionState.COMPLETED)
        work.table = self._joinable(table)
        self._set_run(work, "completed", done=True)
        self._active.pop(job_id, None)

    def _joinable(self, table: pa.Table) -> pa.Table:
        """The columns the join can use. With the row key there, the echoed input columns are
        never attached (nor matched on): not holding them keeps a large call's memory down. The
        ledger keeps the file as downloaded."""
        if ROW_KEY not in table.column_names:
            return table  # matched on the echoed `on` columns
        echoed = set(self._payload.columns)
        return table.drop_columns([name for name in table.column_names if name in echoed])

    def _check_rows_are_ours(self, table: pa.Table, work: _Work, job_id: str) -> None:
        """Refuse a run whose rows all belong to other records: another client's run, adopted.

        Checked for every run, not only those adopted in this process: the ledger does not say
        whether a re-attached run was adopted, and an unchecked foreign run would be recorded as
        these records' results (their rows left empty, and cached as done). A run with *some* of
        our keys is ours, whatever extra rows the workflow added. Unlinking a foreign run makes
        the next call send the records again: adopting it proved that no run of ours exists.
        """
        if job_id in self._submitter.adopted and ROW_KEY not in table.column_names:
            self._refuse_unverifiable(work, job_id)
        if not _holds_only_other_records(table, work.chunk.keys):
            return
        current = self._ledger.submission(work.fingerprint)
        if current is not None and current.state is SubmissionState.SUBMITTED:
            self._ledger.mark(
                work.fingerprint,
                SubmissionState.FAILED,
                error=f"run {job_id} holds another client's records",
            )
        self._active.pop(job_id, None)
        raise JoinError(
            f"run {job_id} was adopted as the outcome of an interrupted submission, but none of "
            "its rows belongs to the records sent: it is another client's run.",
            hint="Nothing was joined. Re-running the call sends these records in a new run "
            "(none of ours was made); `sixtyfour-frames runs list` shows the runs.",
        )

    def _refuse_unverifiable(self, work: _Work, job_id: str) -> NoReturn:
        """A run adopted from the runs list must prove it holds our records; without row keys
        it cannot, so it is never recorded as these records' results."""
        current = self._ledger.submission(work.fingerprint)
        if current is not None and current.state is SubmissionState.SUBMITTED:
            self._ledger.mark(
                work.fingerprint,
                SubmissionState.FAILED,
                error=f"adopted run {job_id} cannot be verified: its output has no row keys",
            )
        self._active.pop(job_id, None)
        sub = work.submission
        raise AmbiguousSubmitError(
            f"run {job_id} was adopted as the outcome of an interrupted submission, but its "
            f"output has no {ROW_KEY!r} column, so it cannot be shown to hold the records sent",
            idempotency_key=sub.idempotency_key if sub else "",
            workflow_id=self.workflow_id,
            candidates=[job_id],
            hint="Nothing was joined. Check the run with `sixtyfour-frames runs status`; "
            "re-running the call sends these records in a new run.",
        )

    @property
    def _real_time(self) -> bool:
        return self._sleep is time.sleep

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            if not self._real_time:
                self._sleep(seconds)
            elif self._downloads:
                self._downloads.wait(seconds)  # wakes when the rows are in, to take them at once
            else:
                self._stop.wait(seconds)  # wakes at once when an async caller is cancelled
        self._check_stop()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _StopRequested

    def _set_run(self, work: _Work, state: str, *, done: bool = False) -> None:
        if self._tracker is not None and work.job_id:
            self._tracker.mark(work.job_id, state, done=done)

    # ------------------------------------------------------------ interrupts

    def _interrupted(self) -> NoReturn:
        ids = list(self._active)
        for work in self._pending:
            # The ledger, not the work, knows the intent an interrupted POST recorded.
            work.submission = self._ledger.submission(work.fingerprint)
            if work.submission is not None and work.submission.state is SubmissionState.INTENT:
                ids.extend(self._find_unacknowledged(work))
        if self.options.on_interrupt == "cancel":
            cancelled = [job_id for job_id in ids if self._cancel_quietly(job_id)]
            not_cancelled = [job_id for job_id in ids if job_id not in cancelled]
            message = (
                f"Interrupted: cancelled {len(cancelled)} run(s) on the server "
                f"({', '.join(cancelled) or 'none'}). "
            )
            if not_cancelled:
                message += (
                    f"{len(not_cancelled)} run(s) had already finished or could not be cancelled "
                    f"({', '.join(not_cancelled)}). "
                )
            message += (
                "Rows of finished runs are kept (in the ledger, or on the server until the next "
                "call fetches them): re-running the same call pays only for the rest."
            )
        else:
            message = (
                f"Interrupted: {len(ids)} run(s) keep going on the server ({', '.join(ids) or 'none'}). "
                "Re-run the same call to re-attach, or pick them up elsewhere with "
                f"sixtyfour_frames.attach({ids!r}, df, {self.workflow_id!r})."
            )
        logger.warning(message)
        self._close_progress()
        raise EnrichInterrupted(
            message, run_ids=ids, cancelled=self.options.on_interrupt == "cancel"
        )

    def _find_unacknowledged(self, work: _Work) -> list[str]:
        """A POST cut short by Ctrl-C may have started a run: find it through the runs list."""
        if work.submission is None or self.options.on_interrupt != "cancel":
            return []
        try:
            resolved = self._submitter.find_run(work.submission)
        except SixtyfourError:
            return []
        if resolved is None or not resolved.job_id:
            return []
        work.submission = resolved
        self._active[resolved.job_id] = work
        return [resolved.job_id]

    def _mark_cancelled(self, work: _Work, reason: str) -> None:
        # A run already recorded as completed keeps its rows: a late cancel changes nothing.
        current = self._ledger.submission(work.fingerprint)
        if current is not None and current.state is SubmissionState.SUBMITTED:
            self._ledger.mark(work.fingerprint, SubmissionState.CANCELLED, error=reason)

    def _cancel_quietly(self, job_id: str) -> bool:
        """``_cancel_run`` that logs a failure instead of raising it (we are handling Ctrl-C)."""
        try:
            return self._cancel_run(job_id, self._active.get(job_id), "interrupted")
        except SixtyfourError as error:
            logger.error("could not cancel run %s: %s", job_id, error)
            return False

    def _cancel_run(self, job_id: str, work: _Work | None, reason: str) -> bool:
        """Cancel one run; True when the server's answer says it is cancelled (then recorded)."""
        answer = self._client.cancel_run(job_id)
        if answer.status != "cancelled":
            # It ended first (completed or failed): the poll loop or the next call collects or
            # reports it. Recording it as cancelled would drop paid rows, and the next call
            # would pay for them again.
            return False
        if work is not None:
            self._mark_cancelled(work, reason)
        return True

    # ------------------------------------------------------------ joining

    def _join(self) -> Any:
        tables = self._cached_tables + [w.table for w in self._works if w.table is not None]
        results = combine_tables(tables)
        row_status = None
        if self.options.errors == "keep":
            row_status = {
                key: (_failure_status(w.error), str(w.error))
                for w in self._works
                if w.error is not None
                for key in w.chunk.keys.to_pylist()
            }
        joined, stats = join_results(
            self._frame,
            results,
            row_keys=self._payload.row_key_array,
            sent_columns=self._payload.columns,
            on=self.options.on,
            rename=self.options.rename,
            multiple=self.options.multiple,
            on_conflict=self.options.on_conflict,
            suffix=self.options.suffix,
            row_status=row_status,
        )
        self._fill_report(stats, row_status)
        attach_report(joined, self.report.to_dict())
        return like_input(joined, self._kind)

    def _fill_report(self, stats: Any, row_status: Mapping[str, Any] | None) -> None:
        report = self.report
        report.rows_matched = stats.rows_matched
        report.rows_missing = stats.rows_missing
        report.output_rows = stats.output_rows
        report.output_extra = stats.output_extra
        report.output_duplicated = stats.output_duplicated
        report.new_columns = stats.new_columns
        report.rows_failed = _rows_with_keys(self._payload.row_key_array, row_status or {})
        report.runs = [
            RunInfo(
                job_id=w.job_id or "",
                rows=len(w.chunk.keys),
                status=_state_of(w),
                source=w.source,
                error=str(w.error) if w.error else None,
            )
            for w in self._works
            if w.job_id
        ]
        report.rows_sent = sum(
            len(w.chunk.keys) for w in self._works if w.source == "new" and w.job_id
        )
        report.rows_reattached = sum(
            len(w.chunk.keys) for w in self._works if w.source == "reattached" and w.job_id
        )

    # ------------------------------------------------------------ housekeeping

    def _timing(self, phase: str, started: float) -> None:
        self.report.timings[phase] = time.perf_counter() - started

    def _close_progress(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None

    def _release(self) -> None:
        """Close the client and ledger this job created (once; a caller's own are left open)."""
        self._downloads.close()  # the download in flight uses both
        if self._owns_client:
            self._client.close()
            self._owns_client = False
        if self._owns_ledger:
            self._ledger.close()
            self._owns_ledger = False


def _state_of(work: _Work) -> str:
    if work.table is not None:
        return "completed"
    if isinstance(work.error, RunCancelledError):
        return "cancelled"
    if work.error is not None:
        return "failed"
    return work.submission.state.value if work.submission else "pending"


def _failure_status(error: RunError | None) -> str:
    return "cancelled" if isinstance(error, RunCancelledError) else "failed"


def _holds_only_other_records(table: pa.Table, ours: pa.Array) -> bool:
    """True when a run's output has row keys and none of them is one of ``ours``. (A workflow
    that drops the key leaves nothing to check against: False.)"""
    if ROW_KEY not in table.column_names:
        return False
    keys = pc.drop_null(table.column(ROW_KEY))
    if not len(keys):
        return False
    return not pc.any(pc.is_in(keys, value_set=ours.cast(keys.type))).as_py()


def _build(frame: Any, options: EnrichOptions) -> Payload:
    return build_payload(
        frame,
        columns=options.columns,
        rename=options.rename,
        naive_datetimes=options.naive_datetimes,
    )


def combine_tables(tables: Sequence[pa.Table]) -> pa.Table:
    """Results of several runs → one table; columns whose types disagree become text."""
    if not tables:
        return pa.table({ROW_KEY: pa.array([], pa.string())})
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        names = {name for table in tables for name in table.column_names}
        clashing = {
            name
            for name in names
            if len({str(t.schema.field(name).type) for t in tables if name in t.column_names}) > 1
        }
        as_text = [
            t.cast(
                pa.schema(
                    [pa.field(f.name, pa.string()) if f.name in clashing else f for f in t.schema]
                )
            )
            for t in tables
        ]
        return pa.concat_tables(as_text, promote_options="permissive")


# ---------------------------------------------------------------- the public functions


def options_from(kwargs: Mapping[str, Any], options: EnrichOptions | None = None) -> EnrichOptions:
    """Keyword arguments → validated-by-name options; an unknown name is a clear error."""
    base = options or EnrichOptions()
    unknown = set(kwargs) - set(EnrichOptions.__dataclass_fields__)
    if unknown:
        raise InvalidArgumentError(
            f"unknown argument(s): {', '.join(sorted(unknown))}; see help(sixtyfour_frames.enrich)."
        )
    return replace(base, **kwargs)


def start(
    frame: Any,
    workflow_id: str,
    *,
    options: EnrichOptions | None = None,
    client: Client | None = None,
    ledger: Ledger | None = None,
    **kwargs: Any,
) -> EnrichJob:
    """Validate, reuse, and start the runs of an enrich call without waiting for them."""
    job = EnrichJob(frame, workflow_id, options_from(kwargs, options), client=client, ledger=ledger)
    try:
        return job._launch()
    except BaseException:
        job._release()  # the caller never gets this job, so nobody else could close them
        raise


def enrich(
    frame: Any,
    workflow_id: str,
    *,
    options: EnrichOptions | None = None,
    client: Client | None = None,
    ledger: Ledger | None = None,
    **kwargs: Any,
) -> Any:
    """Enrich ``frame`` with workflow ``workflow_id``; the same kind of frame comes back.

    See the README for every keyword argument (columns, rename, specs_override, on, multiple,
    on_conflict, suffix, chunk_size, max_concurrent_runs, progress, timeout, on_interrupt, cache,
    refresh, errors, naive_datetimes, poll).
    """
    job = EnrichJob(frame, workflow_id, options_from(kwargs, options), client=client, ledger=ledger)
    return _run_to_the_end(job)


def _run_to_the_end(job: EnrichJob) -> Any:
    """Launch, wait and join a job that only this call holds, and close what it opened.

    ``result()`` closes them after a success only, because the holder of a job from ``start()``
    may still ``wait()`` or ``resume()`` it after a failure. Nobody can do that with the job of
    ``enrich()``: after a failed run or a Ctrl-C its HTTP pool and ledger connection would stay
    open, one more for every interrupted cell of a notebook.
    """
    try:
        return job._launch().result()
    finally:
        job._release()


async def aenrich(
    frame: Any,
    workflow_id: str,
    *,
    options: EnrichOptions | None = None,
    client: Client | None = None,
    ledger: Ledger | None = None,
    **kwargs: Any,
) -> Any:
    """``enrich`` for async code: runs in a worker thread; cancelling the task acts like Ctrl-C."""
    opts = options_from(kwargs, options)
    stop = threading.Event()

    def work() -> Any:
        job = EnrichJob(frame, workflow_id, opts, client=client, ledger=ledger, stop=stop)
        return _run_to_the_end(job)

    try:
        return await asyncio.to_thread(work)
    except asyncio.CancelledError:
        stop.set()
        raise
