"""Runs progress over emulator time, block by block; cancel and list behave as documented."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from sixtyfour_frames.emulator import Emulator

from ._support import COMPANY_WF, TLS, companies, finish, links, live, start_run

FAILING_WF = Emulator.workflow_id("failing")


def _seconds_between(start: str, end: str) -> float:
    def parse(value: str) -> datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds()


def _blocks(body: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    return [
        (b["block_name"], b["status"], b["processed_count"], b["total_count"])
        for b in body["blocks"]
    ]


def test_an_instant_emulator_completes_runs_by_the_first_poll() -> None:
    with (
        Emulator() as emu,
        httpx.Client(base_url=emu.base_url, headers=emu.headers, verify=TLS) as http,
    ):
        job_id = start_run(http, companies(3))
        body = live(http, job_id)
    assert body["overall_status"] == "completed"
    assert body["overall_progress_percentage"] == 100.0
    assert body["completed_blocks"] == body["total_blocks"] == 2
    assert body["current_block"] is None


def test_a_run_moves_through_its_blocks_one_after_another(
    emulator: Emulator, http: httpx.Client
) -> None:
    job_id = start_run(http, companies(4))  # webhook then company_enrichment, 4 s each
    queued = live(http, job_id)
    assert queued["overall_status"] == "queued"
    assert queued["started_at"] is None
    assert _blocks(queued) == [
        ("webhook", "pending", 0, 0),
        ("company_enrichment", "pending", 0, 0),
    ]

    emulator.advance(1)
    first = live(http, job_id)
    assert (first["overall_status"], first["current_block"], first["current_block_sequence"]) == (
        "running",
        "webhook",
        1,
    )
    assert _blocks(first)[0] == ("webhook", "running", 1, 4)
    assert first["started_at"] == queued["last_updated"]

    emulator.advance(5)
    second = live(http, job_id)
    assert second["current_block"] == "company_enrichment"
    assert second["completed_blocks"] == 1
    assert _blocks(second) == [
        ("webhook", "completed", 4, 4),
        ("company_enrichment", "running", 2, 4),
    ]
    assert second["overall_progress_percentage"] == 75.0
    assert second["blocks"][1]["metrics"]["processed_count"] == 2

    emulator.advance(2)
    done = live(http, job_id)
    assert done["overall_status"] == "completed"
    assert _seconds_between(done["started_at"], done["completed_at"]) == 8.0
    assert [b["metrics"]["row_count"] for b in done["blocks"]] == [4, 4]
    assert all(b["progress_percentage"] == 100.0 for b in done["blocks"])


def test_progress_never_goes_backwards(emulator: Emulator, http: httpx.Client) -> None:
    job_id = start_run(http, companies(3), workflow_id=Emulator.workflow_id("filter_companies"))
    seen: list[tuple[str, float, int]] = []
    for _ in range(22):
        body = live(http, job_id)
        processed = sum(b["processed_count"] for b in body["blocks"])
        seen.append((body["overall_status"], body["overall_progress_percentage"], processed))
        emulator.advance(0.5)
    statuses = [status for status, _, _ in seen]
    order = {"queued": 0, "running": 1, "completed": 2}
    assert [order[s] for s in statuses] == sorted(order[s] for s in statuses)
    assert [p for _, p, _ in seen] == sorted(p for _, p, _ in seen)
    assert [n for _, _, n in seen] == sorted(n for _, _, n in seen)
    assert statuses[-1] == "completed"


def test_block_latency_adds_fixed_time_per_block() -> None:
    with (
        Emulator(clock="manual", block_latency=10.0) as emu,
        httpx.Client(base_url=emu.base_url, headers=emu.headers, verify=TLS) as http,
    ):
        job_id = start_run(http, companies(100))
        emu.advance(15)
        body = live(http, job_id)
        assert body["current_block"] == "company_enrichment"
        assert body["overall_progress_percentage"] == 75.0
        emu.advance(5)
        assert live(http, job_id)["overall_status"] == "completed"


def test_the_failing_workflow_fails_at_its_second_block(
    emulator: Emulator, http: httpx.Client
) -> None:
    job_id = start_run(http, companies(2), workflow_id=FAILING_WF)
    finish(emulator)
    body = live(http, job_id)
    assert body["overall_status"] == "failed"
    failed = body["blocks"][1]
    assert (failed["sequence_number"], failed["status"]) == (2, "failed")
    assert "synthetic failure" in failed["error_message"]
    assert body["blocks"][2]["status"] == "pending"
    assert links(http, job_id) == []
    (item,) = http.get("/workflows/runs", params={"status": "failed"}).json()
    assert item["error_message"] == failed["error_message"]
    assert item["status_reason"] == "Failed at block 2 (company_enrichment)"
    assert item["metrics"]["rows_out"] is None


def test_cancel_freezes_an_active_run(emulator: Emulator, http: httpx.Client) -> None:
    job_id = start_run(http, companies(4), workflow_id=Emulator.workflow_id("filter_companies"))
    emulator.advance(6)  # webhook done, company_enrichment half way
    assert http.post("/workflows/cancel", params={"job_id": job_id}).json()["status"] == "canceled"
    frozen = live(http, job_id)
    emulator.advance(1_000)
    later = live(http, job_id)
    assert frozen == later
    assert later["overall_status"] == "cancelled"
    assert _blocks(later) == [
        ("webhook", "completed", 4, 4),
        ("company_enrichment", "cancelled", 2, 4),
        ("filter", "pending", 0, 0),
    ]
    assert later["completed_at"] is not None
    assert links(http, job_id) == []  # no producing block had finished
    assert emulator.ledger()["runs_cancelled"] == 1


def test_cancel_keeps_the_files_of_blocks_finished_before(
    emulator: Emulator, http: httpx.Client
) -> None:
    job_id = start_run(http, companies(2), workflow_id=Emulator.workflow_id("filter_companies"))
    emulator.advance(5)  # company_enrichment finished at 4 s, filter running
    http.post("/workflows/cancel", params={"job_id": job_id})
    assert [item["block_number"] for item in links(http, job_id)] == [2]


@pytest.mark.parametrize("workflow", ["company_enrichment", "failing"])
def test_cancel_of_a_finished_run_returns_its_status_unchanged(
    emulator: Emulator, http: httpx.Client, workflow: str
) -> None:
    job_id = start_run(http, companies(1), workflow_id=Emulator.workflow_id(workflow))
    finish(emulator)
    status = live(http, job_id)["overall_status"]
    response = http.post("/workflows/cancel", params={"job_id": job_id})
    assert response.json() == {"job_id": job_id, "status": status}
    assert live(http, job_id)["overall_status"] == status
    assert emulator.ledger()["runs_cancelled"] == 0


def test_cancelling_twice_is_harmless(emulator: Emulator, http: httpx.Client) -> None:
    job_id = start_run(http, companies(3))
    assert http.post("/workflows/cancel", params={"job_id": job_id}).json()["status"] == "canceled"
    assert http.post("/workflows/cancel", params={"job_id": job_id}).json()["status"] == "cancelled"
    assert emulator.ledger()["runs_cancelled"] == 1


def test_list_runs_is_newest_first_and_filters(emulator: Emulator, http: httpx.Client) -> None:
    done = start_run(http, companies(1))
    emulator.advance(10)
    failed = start_run(http, companies(1), workflow_id=FAILING_WF)
    emulator.advance(10)
    cancelled = start_run(http, companies(5))
    http.post("/workflows/cancel", params={"job_id": cancelled})
    running = start_run(http, companies(5))
    emulator.advance(1)
    queued = start_run(http, companies(5))  # same instant as `running` + 1 s: created later

    def ids(**params: str) -> list[str]:
        return [item["job_id"] for item in http.get("/workflows/runs", params=params).json()]

    assert ids() == [queued, running, cancelled, failed, done]
    assert ids(status="active") == [queued, running]
    assert ids(status="running") == [running]
    assert ids(status="queued") == [queued]
    assert ids(status="completed") == [done]
    assert ids(status="failed") == [failed]
    assert ids(status="cancelled") == ids(status="canceled") == [cancelled]
    assert ids(limit="2") == [queued, running]
    assert ids(workflow_id=FAILING_WF) == [failed]
    assert ids(workflow_id=COMPANY_WF, status="active") == [queued, running]


def test_runs_queued_at_the_same_instant_list_in_reverse_creation_order(
    emulator: Emulator, http: httpx.Client
) -> None:
    created = [start_run(http, companies(1)) for _ in range(4)]
    listed = [item["job_id"] for item in http.get("/workflows/runs").json()]
    assert listed == created[::-1]
