"""The API's JSON shapes: domain objects in, response bodies out (see the OpenAPI schemas).

Timestamps are ISO-8601 UTC with a ``Z``. Cancelled runs read ``cancelled`` (the spelling of the
list filter and the official pollers) unless a ``canceled_spelling`` fault asks for the other one.
"""

from __future__ import annotations

from typing import Any

from sixtyfour_frames.emulator import _timeline as tl
from sixtyfour_frames.emulator._clock import isoformat
from sixtyfour_frames.emulator._files import CONTENT_TYPES
from sixtyfour_frames.emulator._state import CANCELED, ResultFile, RunSnapshot, RunStarted
from sixtyfour_frames.emulator._workflows import Workflow

ORG_ID = "org_emulator"
USER_ID = "8d1f4e2a-6b7c-4d3e-9f10-2a3b4c5d6e7f"
STORAGE_BUCKET = "sixtyfour-emulator-results"


def _time(timestamp: float | None) -> str | None:
    return None if timestamp is None else isoformat(timestamp)


def _spelled(status: str, canceled_spelling: bool) -> str:
    return CANCELED if canceled_spelling and status == tl.CANCELLED else status


def run_started(started: RunStarted) -> dict[str, Any]:
    """``WorkflowRunStartedResponse``; ``already_started`` only on a replay."""
    body: dict[str, Any] = {
        "status": started.status,
        "workflow_id": started.workflow_id,
        "job_id": started.job_id,
        "cache_config": None,
    }
    if started.replayed:
        body["already_started"] = True
    return body


def run_item(snapshot: RunSnapshot, *, canceled_spelling: bool = False) -> dict[str, Any]:
    """``WorkflowRunResponse``, as listed by ``GET /workflows/runs`` (``blocks`` is null)."""
    run, view = snapshot.run, snapshot.view
    duration = None
    if view.started_at is not None and view.completed_at is not None:
        duration = round((view.completed_at - view.started_at) * 1000)
    rows_out = run.rows_out if view.status == tl.COMPLETED else None
    return {
        "job_id": run.job_id,
        "workflow_id": run.workflow.id,
        "workflow_name": run.workflow.name,
        "status": _spelled(view.status, canceled_spelling),
        "step": None,
        "user_id": USER_ID,
        "created_at": isoformat(run.queued_at),
        "updated_at": isoformat(view.last_updated),
        "queued_at": isoformat(run.queued_at),
        "started_at": _time(view.started_at),
        "completed_at": _time(view.completed_at),
        "duration_ms": duration,
        "status_reason": snapshot.status_reason,
        "error_message": view.failure,
        "metrics": {"rows_in": len(run.records), "rows_out": rows_out, "credits": len(run.records)},
        "blocks": None,
        "blocks_count": run.workflow.blocks_count,
    }


def live_status(snapshot: RunSnapshot, *, canceled_spelling: bool = False) -> dict[str, Any]:
    """``WorkflowLiveStatusResponse`` with one ``BlockLiveStatus`` per block."""
    run, view = snapshot.run, snapshot.view
    workflow = run.workflow
    current = view.current_index
    return {
        "run_id": run.job_id,
        "workflow_id": workflow.id,
        "overall_status": _spelled(view.status, canceled_spelling),
        "current_block": None if current is None else workflow.block_name(current + 1),
        "current_block_sequence": None if current is None else current + 1,
        "total_blocks": workflow.blocks_count,
        "completed_blocks": view.completed_blocks,
        "started_at": _time(view.started_at),
        "completed_at": _time(view.completed_at),
        "last_updated": isoformat(view.last_updated),
        "blocks": [_block(snapshot, block) for block in view.blocks],
        "overall_progress_percentage": view.progress_percentage,
        "estimation_blocked_by": None,
    }


def _block(snapshot: RunSnapshot, block: tl.BlockView) -> dict[str, Any]:
    workflow = snapshot.run.workflow
    sequence = block.sequence_number
    updated = block.completed_at
    if updated is None:
        pending = block.status == tl.PENDING
        updated = snapshot.run.queued_at if pending else snapshot.view.last_updated
    step = None
    if block.status == tl.RUNNING:
        step = f"Processing rows ({block.processed_count}/{block.total_count})"
    return {
        "block_id": workflow.block_id(sequence),
        "block_name": workflow.block_name(sequence),
        "sequence_number": sequence,
        "previous_block_ids": [workflow.block_id(sequence - 1)] if sequence > 1 else [],
        "status": block.status,
        "started_at": _time(block.started_at),
        "completed_at": _time(block.completed_at),
        "progress_percentage": block.progress_percentage,
        "current_step": step,
        "processed_count": block.processed_count,
        "total_count": block.total_count,
        "estimated_total_count": None,
        "last_updated": isoformat(updated),
        "error_message": block.error_message,
        "metrics": {
            "row_count": block.row_count,
            "dataframe_type": workflow.dataframe_type(sequence),
            "processed_count": block.processed_count,
            "total_count": block.total_count,
        },
    }


def result_item(
    result: ResultFile,
    *,
    download_url: str | None,
    expires_in: int,
    file_size: int,
    inline_max_rows: int,
) -> dict[str, Any]:
    """``WorkflowResultItemWithDownload``; rows inline only for small files."""
    rows = result.rows
    return {
        "filename": result.filename,
        "storage_bucket": STORAGE_BUCKET,
        "file_size": file_size,
        "row_count": len(rows),
        "block_number": result.block_number,
        "created_at": isoformat(result.created_at),
        "message": None,
        "content_type": CONTENT_TYPES[result.fmt],
        "download_url": download_url,
        "download_expires_in_seconds": expires_in,
        "results": [dict(row) for row in rows] if len(rows) <= inline_max_rows else None,
    }


def cancel_response(job_id: str, status: str) -> dict[str, Any]:
    """``WorkflowCancelResponse``."""
    return {"job_id": job_id, "status": status}


def workflow_summary(workflow: Workflow, last_run_at: float | None) -> dict[str, Any]:
    """``WorkflowResponse`` without the definition, as ``GET /workflows`` lists it."""
    return {
        "id": workflow.id,
        "user_uuid": USER_ID,
        "org_id": ORG_ID,
        "name": workflow.name,
        "description": workflow.description,
        "status": "ready",
        "step": "deployed",
        "created_at": isoformat(workflow.created_at),
        "updated_at": isoformat(workflow.created_at),
        "last_run_date": _time(last_run_at),
    }


def workflow_detail(workflow: Workflow, last_run_at: float | None) -> dict[str, Any]:
    """``WorkflowResponse`` with ``workflow_definition`` (a ``WorkflowGraph``)."""
    blocks = [
        {
            "sequence_number": 1,
            "block_type": "source",
            "block_name": workflow.source.block_name,
            "specs": workflow.source.specs(),
            "block_id": workflow.block_id(1),
        }
    ]
    for sequence, step in enumerate(workflow.steps, start=2):
        blocks.append(
            {
                "sequence_number": sequence,
                "block_type": step.block_type,
                "block_name": step.block_name,
                "specs": dict(step.specs),
                "block_id": workflow.block_id(sequence),
            }
        )
    edges = [
        {
            "from_block_id": workflow.block_id(s),
            "to_block_id": workflow.block_id(s + 1),
            "condition": None,
        }
        for s in range(1, workflow.blocks_count)
    ]
    return {
        **workflow_summary(workflow, last_run_at),
        "workflow_definition": {"blocks": blocks, "edges": edges},
    }
