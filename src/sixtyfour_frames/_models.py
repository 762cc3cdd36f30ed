"""Frozen wire models, parsed tolerantly at the boundary.

Unknown fields are ignored and missing optional fields take the documented defaults, so a newer
API does not break older clients. Status normalisation (``canceled`` → ``cancelled``, ``RUNNING`` →
``running``) happens here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "timeout"})
ACTIVE_STATUSES = frozenset({"queued", "running"})
KNOWN_STATUSES = TERMINAL_STATUSES | ACTIVE_STATUSES | {"pending"}
_SPELLINGS = {"canceled": "cancelled"}


def normalize_status(raw: object) -> str:
    """One spelling per status: lower case, ``canceled`` → ``cancelled``."""
    text = str(raw or "").strip().lower()
    return _SPELLINGS.get(text, text)


def is_terminal(status: str) -> bool:
    return normalize_status(status) in TERMINAL_STATUSES


def _str(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key)
    return default if value is None else str(value)


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _int(data: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = data.get(key)
    if isinstance(value, bool) or value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    return None if data.get(key) is None else _int(data, key)


def _float(data: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    value = data.get(key)
    try:
        return default if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return default


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class RunStarted:
    """The answer to ``POST /workflows/run``."""

    job_id: str
    workflow_id: str
    status: str
    already_started: bool
    idempotency_key: str
    cache_config: Mapping[str, Any] | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], *, idempotency_key: str) -> RunStarted:
        return cls(
            job_id=_str(data, "job_id"),
            workflow_id=_str(data, "workflow_id"),
            status=normalize_status(data.get("status") or "queued"),
            already_started=bool(data.get("already_started")),
            idempotency_key=idempotency_key,
            cache_config=data.get("cache_config")
            if isinstance(data.get("cache_config"), Mapping)
            else None,
        )


@dataclass(frozen=True)
class RunSummary:
    """One item of ``GET /workflows/runs``."""

    job_id: str
    workflow_id: str
    status: str
    workflow_name: str = "Untitled Workflow"
    step: str | None = None
    user_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    queued_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: int | None = None
    status_reason: str | None = None
    error_message: str | None = None
    metrics: Mapping[str, Any] | None = None
    blocks: Any = None
    blocks_count: int = 0

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> RunSummary:
        return cls(
            job_id=_str(data, "job_id"),
            workflow_id=_str(data, "workflow_id"),
            status=normalize_status(data.get("status")),
            workflow_name=_str(data, "workflow_name", "Untitled Workflow"),
            step=_opt_str(data, "step"),
            user_id=_opt_str(data, "user_id"),
            created_at=_opt_str(data, "created_at"),
            updated_at=_opt_str(data, "updated_at"),
            queued_at=_opt_str(data, "queued_at"),
            started_at=_opt_str(data, "started_at"),
            completed_at=_opt_str(data, "completed_at"),
            duration_ms=_opt_int(data, "duration_ms"),
            status_reason=_opt_str(data, "status_reason"),
            error_message=_opt_str(data, "error_message"),
            metrics=data.get("metrics") if isinstance(data.get("metrics"), Mapping) else None,
            blocks=data.get("blocks"),
            blocks_count=_int(data, "blocks_count"),
        )


@dataclass(frozen=True)
class BlockMetrics:
    row_count: int = 0
    dataframe_type: str = "LEAD"
    processed_count: int | None = None
    total_count: int | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> BlockMetrics:
        return cls(
            row_count=_int(data, "row_count"),
            dataframe_type=_str(data, "dataframe_type", "LEAD"),
            processed_count=_opt_int(data, "processed_count"),
            total_count=_opt_int(data, "total_count"),
        )


@dataclass(frozen=True)
class BlockStatus:
    """Live status of one block of a run."""

    block_name: str
    sequence_number: int
    status: str
    last_updated: str
    metrics: BlockMetrics = field(default_factory=BlockMetrics)
    block_id: str | None = None
    previous_block_ids: tuple[str, ...] | None = None
    started_at: str | None = None
    completed_at: str | None = None
    progress_percentage: float = 0.0
    current_step: str | None = None
    processed_count: int = 0
    total_count: int = 0
    estimated_total_count: int | None = None
    error_message: str | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> BlockStatus:
        previous = data.get("previous_block_ids")
        return cls(
            block_name=_str(data, "block_name"),
            sequence_number=_int(data, "sequence_number"),
            status=normalize_status(data.get("status")),
            last_updated=_str(data, "last_updated"),
            metrics=BlockMetrics.from_wire(_mapping(data.get("metrics"))),
            block_id=_opt_str(data, "block_id"),
            previous_block_ids=tuple(str(p) for p in previous)
            if isinstance(previous, list)
            else None,
            started_at=_opt_str(data, "started_at"),
            completed_at=_opt_str(data, "completed_at"),
            progress_percentage=_float(data, "progress_percentage"),
            current_step=_opt_str(data, "current_step"),
            processed_count=_int(data, "processed_count"),
            total_count=_int(data, "total_count"),
            estimated_total_count=_opt_int(data, "estimated_total_count"),
            error_message=_opt_str(data, "error_message"),
        )


@dataclass(frozen=True)
class LiveStatus:
    """``GET /workflows/runs/{run_id}/live_status``."""

    run_id: str
    workflow_id: str
    overall_status: str
    last_updated: str
    current_block: str | None = None
    current_block_sequence: int | None = None
    total_blocks: int = 0
    completed_blocks: int = 0
    started_at: str | None = None
    completed_at: str | None = None
    blocks: tuple[BlockStatus, ...] = ()
    overall_progress_percentage: float = 0.0
    estimation_blocked_by: str | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> LiveStatus:
        blocks = data.get("blocks")
        return cls(
            run_id=_str(data, "run_id"),
            workflow_id=_str(data, "workflow_id"),
            overall_status=normalize_status(data.get("overall_status")),
            last_updated=_str(data, "last_updated"),
            current_block=_opt_str(data, "current_block"),
            current_block_sequence=_opt_int(data, "current_block_sequence"),
            total_blocks=_int(data, "total_blocks"),
            completed_blocks=_int(data, "completed_blocks"),
            started_at=_opt_str(data, "started_at"),
            completed_at=_opt_str(data, "completed_at"),
            blocks=tuple(
                BlockStatus.from_wire(b)
                for b in (blocks if isinstance(blocks, list) else ())
                if isinstance(b, Mapping)
            ),
            overall_progress_percentage=_float(data, "overall_progress_percentage"),
            estimation_blocked_by=_opt_str(data, "estimation_blocked_by"),
        )

    @property
    def is_terminal(self) -> bool:
        return self.overall_status in TERMINAL_STATUSES

    @property
    def failed_block(self) -> BlockStatus | None:
        return next((b for b in self.blocks if b.status == "failed"), None)

    @property
    def error_message(self) -> str | None:
        block = self.failed_block
        return block.error_message if block else None


@dataclass(frozen=True)
class CancelResult:
    """``POST /workflows/cancel``: the run's status after the call (``cancelled`` or unchanged)."""

    job_id: str
    status: str

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> CancelResult:
        return cls(job_id=_str(data, "job_id"), status=normalize_status(data.get("status")))


@dataclass(frozen=True)
class ResultFile:
    """One item of ``download-links``: a result file of one block."""

    filename: str
    storage_bucket: str
    row_count: int = 0
    block_number: int | None = None
    file_size: int | None = None
    created_at: str | None = None
    message: str | None = None
    content_type: str | None = None
    download_url: str | None = field(default=None, repr=False)
    download_expires_in_seconds: int = 900
    results: tuple[Mapping[str, Any], ...] | None = field(default=None, repr=False)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ResultFile:
        inline = data.get("results")
        return cls(
            filename=_str(data, "filename"),
            storage_bucket=_str(data, "storage_bucket"),
            row_count=_int(data, "row_count"),
            block_number=_opt_int(data, "block_number"),
            file_size=_opt_int(data, "file_size"),
            created_at=_opt_str(data, "created_at"),
            message=_opt_str(data, "message"),
            content_type=_opt_str(data, "content_type"),
            download_url=_opt_str(data, "download_url"),
            download_expires_in_seconds=_int(data, "download_expires_in_seconds", 900),
            results=tuple(r for r in inline if isinstance(r, Mapping))
            if isinstance(inline, list)
            else None,
        )
