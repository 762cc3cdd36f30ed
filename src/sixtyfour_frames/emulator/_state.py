"""The emulator's state core: workflows, runs, idempotency, faults, the charge ledger.

No HTTP and no sleeping here: the adapter (``_app``) parses requests into calls on
:class:`EmulatorState` and renders what it returns. Time comes from the injected clock. All public
methods take one lock, because the server thread and the test thread use the state together.
"""

from __future__ import annotations

import copy
import os
import threading
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sixtyfour_frames.emulator import _timeline as tl
from sixtyfour_frames.emulator._blocks import synthetic_companies
from sixtyfour_frames.emulator._clock import Clock
from sixtyfour_frames.emulator._errors import BadRequest, NotFound, Unprocessable
from sixtyfour_frames.emulator._faults import Fault, FaultPlan
from sixtyfour_frames.emulator._files import CSV, JSON, NDJSON
from sixtyfour_frames.emulator._records import RecordedRequest, RunRecord
from sixtyfour_frames.emulator._runs import InjectedFaults, Run, RunOptions, new_run
from sixtyfour_frames.emulator._tokens import FileToken, sign, verify
from sixtyfour_frames.emulator._workflows import (
    READ_CSV,
    BlockSpec,
    Workflow,
    builtin_workflows,
    custom_workflow,
)

Record = dict[str, Any]
IDEMPOTENCY_MISMATCH = "Idempotency-Key reused with a different request body"
IDEMPOTENCY_IN_PROGRESS = "A request with this Idempotency-Key is in progress"
RUN_NOT_FOUND = "Workflow run not found"
WORKFLOW_NOT_FOUND = "Workflow not found"
CANCELED = "canceled"  # the cancel response's spelling, as the API documents it


@dataclass(frozen=True)
class Settings:
    """How the emulated service behaves (fixed for an emulator's life)."""

    api_key: str
    seed: int = 0
    pace: float = 0.0
    block_latency: float = 0.0
    idempotency: bool = True
    inline_results_max_rows: int = 50
    download_expires_in_seconds: int = 900
    csv_bom: bool = False


@dataclass(frozen=True)
class RunRequest:
    """A parsed and shape-validated ``POST /workflows/run``."""

    workflow_id: str
    webhook_payload: Any
    specs_override: Mapping[str, Any] | None
    save_json: bool = False
    result_formats: tuple[str, ...] = ()
    idempotency_key: str | None = None
    fingerprint: str = ""


@dataclass(frozen=True)
class RunStarted:
    """The answer to a run request: a new run, or a replay of an earlier one."""

    job_id: str
    workflow_id: str
    status: str
    replayed: bool


@dataclass(frozen=True)
class RunSnapshot:
    """A run and its view at one moment, for rendering."""

    run: Run
    view: tl.RunView

    @property
    def status_reason(self) -> str | None:
        """A short reason for failed and cancelled runs."""
        if self.view.status == tl.FAILED:
            sequence = self.view.failed_sequence or 0
            return f"Failed at block {sequence} ({self.run.workflow.block_name(sequence)})"
        if self.view.status == tl.CANCELLED:
            return "Cancelled by request"
        return None


@dataclass(frozen=True)
class ResultFile:
    """One downloadable file: a producing block's rows in one format."""

    job_id: str
    block_number: int
    block_name: str
    fmt: str
    rows: list[Record]
    columns: list[str]
    created_at: float

    @property
    def filename(self) -> str:
        """``<job>_block<N>_<block_name>.<ext>``."""
        return f"{self.job_id}_block{self.block_number}_{self.block_name}.{self.fmt}"


class FileDenied(Exception):
    """A download token that is forged, or expired (``expired`` tells which)."""

    def __init__(self, *, expired: bool, expires_at: float | None = None) -> None:
        self.expired = expired
        self.expires_at = expires_at
        super().__init__("expired" if expired else "invalid signature")


class EmulatorState:
    """Everything the emulated service knows, behind one lock."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.faults = FaultPlan()
        self._lock = threading.RLock()
        self._secret = os.urandom(32)
        self._created_at = clock()
        self._workflows: dict[str, Workflow] = {
            wf.id: wf for wf in builtin_workflows(settings.seed, self._created_at)
        }
        self._clear_books()

    def _clear_books(self) -> None:
        self._runs: dict[str, Run] = {}
        self._by_key: dict[str, str] = {}
        self._in_flight: set[str] = set()
        self._requests: list[RecordedRequest] = []
        self._counts: Counter[str] = Counter()

    def now(self) -> float:
        """The emulator clock."""
        return self.clock()

    # ---- workflows -------------------------------------------------------------------------

    def workflows(self) -> list[Workflow]:
        """Every workflow, built-ins first, then custom ones in the order they were added."""
        with self._lock:
            return list(self._workflows.values())

    def workflow(self, workflow_id: str) -> Workflow:
        """The workflow with this id, or :class:`NotFound`."""
        with self._lock:
            try:
                return self._workflows[workflow_id]
            except KeyError:
                raise NotFound(WORKFLOW_NOT_FOUND) from None

    def last_run_at(self, workflow_id: str) -> float | None:
        """When the workflow was last run, if ever."""
        with self._lock:
            times = [r.queued_at for r in self._runs.values() if r.workflow.id == workflow_id]
            return max(times, default=None)

    def add_workflow(
        self,
        name: str,
        blocks: Sequence[BlockSpec],
        *,
        workflow_id: str | None = None,
        required_columns: Sequence[str] = (),
        dataframe_type: str = "COMPANY",
        description: str | None = None,
    ) -> str:
        """Register a custom workflow (replacing one with the same id); returns its id."""
        workflow = custom_workflow(
            name,
            blocks,
            seed=self.settings.seed,
            created_at=self.now(),
            workflow_id=workflow_id,
            required_columns=required_columns,
            dataframe_type=dataframe_type,
            description=description,
        )
        with self._lock:
            self._workflows[workflow.id] = workflow
        return workflow.id

    # ---- recording ---------------------------------------------------------------------------

    def record_request(self, request: RecordedRequest) -> None:
        """Log a request and count it for its route."""
        with self._lock:
            self._requests.append(request)
            self._counts[request.route] += 1

    def requests(self, route: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, oldest first, optionally for one route."""
        with self._lock:
            return [r for r in self._requests if route is None or r.route == route]

    def take_fault(
        self, route: str, kinds: frozenset[str] | set[str], note: str = ""
    ) -> Fault | None:
        """Consume the next planned fault of ``route`` if it is one of ``kinds``."""
        return self.faults.take(route, kinds, now=self.now(), note=note)

    # ---- runs --------------------------------------------------------------------------------

    def begin_in_flight(self, key: str) -> bool:
        """Mark an Idempotency-Key as being handled; False if it already is."""
        with self._lock:
            if key in self._in_flight:
                return False
            self._in_flight.add(key)
            return True

    def end_in_flight(self, key: str) -> None:
        """The request holding ``key`` has been answered."""
        with self._lock:
            self._in_flight.discard(key)

    def start_run(self, request: RunRequest) -> RunStarted:
        """Create a run, or replay the run an earlier request with the same key created."""
        with self._lock:
            now = self.now()
            key = request.idempotency_key if self.settings.idempotency else None
            if key is not None and key in self._by_key:
                return self._replay(self._runs[self._by_key[key]], request, now)
            workflow = self.workflow(request.workflow_id)
            records = self._input_rows(workflow, request)
            run = self._create(workflow, records, request, key, now)
            if key is not None:
                self._by_key[key] = run.job_id
            return RunStarted(run.job_id, workflow.id, tl.QUEUED, replayed=False)

    def _replay(self, run: Run, request: RunRequest, now: float) -> RunStarted:
        if run.options.fingerprint != request.fingerprint:
            raise Unprocessable(IDEMPOTENCY_MISMATCH)
        self._counts["idempotent_replays"] += 1
        return RunStarted(run.job_id, run.workflow.id, run.status(now), replayed=True)

    def _input_rows(self, workflow: Workflow, request: RunRequest) -> list[Record]:
        payload = request.webhook_payload
        if workflow.source.block_name == READ_CSV:
            return self._read_csv_rows(payload, request.specs_override)
        if payload is None:
            raise BadRequest(
                "webhook_payload is required: this workflow starts with a webhook block"
            )
        records = [payload] if isinstance(payload, dict) else list(payload)
        if not records:
            raise BadRequest("webhook_payload is empty")
        _check_required_columns(records, workflow.source.required_columns)
        return records

    def _read_csv_rows(
        self, payload: Any, specs_override: Mapping[str, Any] | None
    ) -> list[Record]:
        if payload is not None:
            raise BadRequest(
                "webhook_payload can only be sent to a workflow whose first block is webhook "
                "(this workflow starts with read_csv)"
            )
        handle = (specs_override or {}).get("resource_handle_id")
        if not isinstance(handle, str) or not handle:
            raise BadRequest(
                "Workflows starting with read_csv cannot be triggered via the API without "
                "specs_override.resource_handle_id"
            )
        return synthetic_companies(self.settings.seed, handle)

    def _create(
        self,
        workflow: Workflow,
        records: list[Record],
        request: RunRequest,
        key: str | None,
        now: float,
    ) -> Run:
        job_id = str(uuid.uuid4())
        options = RunOptions(
            save_json=request.save_json or JSON in request.result_formats,
            result_formats=request.result_formats,
            specs_override=request.specs_override,
            idempotency_key=key,
            fingerprint=request.fingerprint,
        )
        run = new_run(
            job_id,
            len(self._runs),
            workflow,
            records,
            options,
            self._injected_faults(job_id, workflow),
            pace=self.settings.pace,
            block_latency=self.settings.block_latency,
            now=now,
        )
        self._runs[job_id] = run
        self._counts["runs_created"] += 1
        self._counts["rows_charged"] += len(records)
        return run

    def _injected_faults(self, job_id: str, workflow: Workflow) -> InjectedFaults:
        """``fail_run`` / ``stall_run`` faults planned for the next created run."""
        fail = self.take_fault("run", {"fail_run"}, note=job_id)
        stall = self.take_fault("run", {"stall_run"}, note=job_id)
        injected = InjectedFaults()
        if fail is not None:
            at_block = min(int(fail.params.get("at_block", 2)), workflow.blocks_count)
            default = f"Synthetic failure injected at block {at_block}"
            message = str(fail.params.get("error_message", default))
            injected = replace(injected, fail_at_block=at_block, fail_message=message)
        if stall is not None:
            injected = replace(injected, stall_at_block=int(stall.params.get("at_block", 2)))
        return injected

    def _run(self, job_id: str) -> Run:
        try:
            return self._runs[job_id]
        except KeyError:
            raise NotFound(RUN_NOT_FOUND) from None

    def snapshot(self, job_id: str) -> RunSnapshot:
        """The run and its live view now, or :class:`NotFound`."""
        with self._lock:
            now = self.now()
            run = self._run(job_id)
            return RunSnapshot(run, run.view(now))

    def list_runs(
        self, *, status: str | None, workflow_id: str | None, limit: int
    ) -> list[RunSnapshot]:
        """Runs newest first, filtered like ``GET /workflows/runs``."""
        with self._lock:
            if workflow_id is not None:
                self.workflow(workflow_id)
            now = self.now()
            wanted = _status_filter(status)
            snapshots = [
                RunSnapshot(run, run.view(now))
                for run in sorted(
                    self._runs.values(), key=lambda r: (r.queued_at, r.number), reverse=True
                )
                if workflow_id is None or run.workflow.id == workflow_id
            ]
            return [s for s in snapshots if wanted is None or s.view.status in wanted][:limit]

    def cancel(self, job_id: str) -> str:
        """Cancel an active run (→ ``canceled``); a finished run keeps and returns its status."""
        with self._lock:
            now = self.now()
            run = self._run(job_id)
            status = run.status(now)
            if status in tl.TERMINAL:
                return status
            run.cancelled_elapsed = tl.elapsed(run.plan, run.interruptions, now)
            run.cancelled_at = now
            self._counts["runs_cancelled"] += 1
            return CANCELED

    def release(self, job_id: str) -> None:
        """Let a run held by a ``stall_run`` fault go on (no-op for other runs)."""
        with self._lock:
            run = self._run(job_id)
            if run.released_at is None and run.cancelled_at is None:
                run.released_at = self.now()

    # ---- results -----------------------------------------------------------------------------

    def result_files(self, job_id: str, fmt: str) -> list[ResultFile]:
        """The files of every producing block that has completed, in block order."""
        with self._lock:
            now = self.now()
            run = self._run(job_id)
            _check_format_available(run, fmt)
            view = run.view(now)
            files = []
            for block in view.blocks[1:]:
                if block.status != tl.COMPLETED or block.completed_at is None:
                    continue
                output = run.execution.outputs[block.sequence_number - 1]
                name = run.workflow.block_name(block.sequence_number)
                files.append(
                    ResultFile(
                        job_id,
                        block.sequence_number,
                        name,
                        fmt,
                        output.rows,
                        output.columns,
                        block.completed_at,
                    )
                )
            return files

    def sign_file(self, result: ResultFile, *, expired: bool = False) -> str:
        """A download token for ``result``, valid for ``download_expires_in_seconds``."""
        now = self.now()
        expires_at = now - 1 if expired else now + self.settings.download_expires_in_seconds
        return sign(
            FileToken(result.job_id, result.block_number, result.fmt, expires_at), self._secret
        )

    def open_file(self, token_text: str) -> ResultFile:
        """The file a token grants, or :class:`FileDenied` / :class:`NotFound`."""
        token = verify(token_text, self._secret)
        if token is None:
            raise FileDenied(expired=False)
        if self.now() >= token.expires_at:
            raise FileDenied(expired=True, expires_at=token.expires_at)
        with self._lock:
            run = self._run(token.job_id)
            for result in self.result_files(run.job_id, token.fmt):
                if result.block_number == token.block_number:
                    return result
        raise NotFound("The specified key does not exist.")

    def count_download(self, *, complete: bool) -> None:
        """Account a file response (complete, or cut short by a fault)."""
        with self._lock:
            self._counts["files_downloaded" if complete else "files_truncated"] += 1

    # ---- books for tests ---------------------------------------------------------------------

    def ledger(self) -> dict[str, Any]:
        """The charge ledger: runs created, rows charged, replays, cancels, requests per route."""
        with self._lock:
            counts = self._counts
            routes = (
                "run",
                "runs",
                "live_status",
                "cancel",
                "download_links",
                "file",
                "workflows",
                "workflow",
            )
            with_credentials = sum(
                1 for r in self._requests if r.route == "file" and r.carried_credentials
            )
            return {
                "runs_created": counts["runs_created"],
                "rows_charged": counts["rows_charged"],
                "idempotent_replays": counts["idempotent_replays"],
                "runs_cancelled": counts["runs_cancelled"],
                "files_downloaded": counts["files_downloaded"],
                "files_truncated": counts["files_truncated"],
                "file_requests_with_credentials": with_credentials,
                "requests": {route: counts[route] for route in routes},
            }

    def runs(self) -> list[RunRecord]:
        """Every run, in creation order."""
        with self._lock:
            now = self.now()
            return [
                _record_of(run, now) for run in sorted(self._runs.values(), key=lambda r: r.number)
            ]

    def run_input(self, job_id: str) -> list[Record]:
        """The run's input rows exactly as parsed from the request."""
        with self._lock:
            return copy.deepcopy(self._run(job_id).records)

    def reset(self) -> None:
        """Forget runs, faults, requests and the ledger (workflows and the clock stay)."""
        with self._lock:
            self.faults.clear()
            self._clear_books()


def _check_required_columns(records: Sequence[Record], required: Sequence[str]) -> None:
    for index, record in enumerate(records):
        missing = [column for column in required if column not in record]
        if missing:
            raise BadRequest(
                f"webhook_payload is missing required input_schema column(s) {', '.join(missing)} "
                f"(record {index})"
            )


def _status_filter(status: str | None) -> frozenset[str] | None:
    if status is None or status == "":
        return None
    lowered = status.strip().lower()
    if lowered == "active":
        return frozenset({tl.QUEUED, tl.RUNNING})
    if lowered == CANCELED:
        return frozenset({tl.CANCELLED})
    return frozenset({lowered})


def _check_format_available(run: Run, fmt: str) -> None:
    if fmt == JSON and not run.options.save_json:
        raise BadRequest("format=json requires the run to have been started with save_json=true")
    if fmt == NDJSON and NDJSON not in run.options.result_formats:
        raise BadRequest(
            "format=ndjson requires the run to have been started with result_formats=ndjson"
        )
    if fmt not in (CSV, JSON, NDJSON):
        raise BadRequest(f"Unsupported format {fmt!r}: use 'csv', 'json' or 'ndjson'")


def _record_of(run: Run, now: float) -> RunRecord:
    return RunRecord(
        job_id=run.job_id,
        workflow_id=run.workflow.id,
        workflow_name=run.workflow.name,
        status=run.status(now),
        rows_in=len(run.records),
        rows_out=run.rows_out,
        idempotency_key=run.options.idempotency_key,
        queued_at=run.queued_at,
        save_json=run.options.save_json,
        result_formats=run.options.result_formats,
        specs_override=copy.deepcopy(run.options.specs_override),
    )
