"""Fault plans: every kind on the routes it applies to, consumed in order and accounted."""

from __future__ import annotations

import threading
import time
from http.client import HTTPConnection, IncompleteRead
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from sixtyfour_frames.emulator import FAULT_ROUTES, Emulator, assert_faults_consumed

from ._support import COMPANY_WF, TLS, companies, finish, links, live, start_run

FILTER_WF = Emulator.workflow_id("filter_companies")
TRANSPORT_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError)


def _file_url(emulator: Emulator, http: httpx.Client, job_id: str | None = None) -> str:
    job_id = job_id or start_run(http, companies(3))
    finish(emulator)
    url: str = links(http, job_id)[-1]["download_url"]
    return url


def _call(emulator: Emulator, http: httpx.Client, route: str) -> httpx.Response:
    """One request to ``route`` that succeeds when no fault interferes."""
    if route == "run":
        return http.post(
            "/workflows/run",
            params={"workflow_id": COMPANY_WF},
            json={"webhook_payload": companies(1)},
        )
    if route == "runs":
        return http.get("/workflows/runs")
    job_id = start_run(http, companies(2))
    if route == "live_status":
        return http.get(f"/workflows/runs/{job_id}/live_status")
    if route == "cancel":
        return http.post("/workflows/cancel", params={"job_id": job_id})
    if route == "download_links":
        return http.get(f"/workflows/runs/{job_id}/results/download-links")
    return httpx.get(_file_url(emulator, http, job_id), verify=TLS)


# ---- status ------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", FAULT_ROUTES)
def test_status_faults_answer_instead_of_acting(
    emulator: Emulator, http: httpx.Client, route: str
) -> None:
    emulator.add_fault(route, "status", code=503)
    response = _call(emulator, http, route)
    assert response.status_code == 503
    assert response.json() == {"detail": "Service Unavailable"}
    assert_faults_consumed(emulator)
    assert _call(emulator, http, route).status_code == 200


def test_a_503_on_run_creates_nothing(emulator: Emulator, http: httpx.Client) -> None:
    emulator.add_fault("run", "status", code=503, times=2)
    statuses = [_call(emulator, http, "run").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert emulator.ledger()["runs_created"] == 1
    assert emulator.ledger()["requests"]["run"] == 3
    assert_faults_consumed(emulator)


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({}, {}),
        ({"retry_after": 2}, {"retry-after": "2"}),
        (
            {"retry_after": "Wed, 21 Oct 2026 07:28:00 GMT"},
            {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"},
        ),
        (
            {"retry_after": "inf", "retry_after_ms": 1500},
            {"retry-after": "inf", "retry-after-ms": "1500"},
        ),
    ],
)
def test_429_with_and_without_retry_after(
    emulator: Emulator, http: httpx.Client, params: dict[str, Any], headers: dict[str, str]
) -> None:
    emulator.add_fault("run", "status", code=429, **params)
    response = _call(emulator, http, "run")
    assert response.status_code == 429
    assert response.json() == {"detail": "Rate limit exceeded"}
    for name in ("retry-after", "retry-after-ms"):
        assert response.headers.get(name) == headers.get(name)
    assert_faults_consumed(emulator)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"error": "Payment Required", "message": "Balance too low"},
            b'{"error":"Payment Required","message":"Balance too low"}',
        ),
        ("<html>Bad gateway</html>", b"<html>Bad gateway</html>"),
    ],
)
def test_status_faults_can_carry_any_body(
    emulator: Emulator, http: httpx.Client, body: Any, expected: bytes
) -> None:
    emulator.add_fault("run", "status", code=402, body=body)
    response = _call(emulator, http, "run")
    assert (response.status_code, response.content) == (402, expected)
    assert_faults_consumed(emulator)


# ---- connection faults -------------------------------------------------------------------------


@pytest.mark.parametrize("route", FAULT_ROUTES)
def test_reset_before_drops_the_connection_without_a_response(
    emulator: Emulator, http: httpx.Client, route: str
) -> None:
    emulator.add_fault(route, "reset_before")
    with pytest.raises(TRANSPORT_ERRORS):
        _call(emulator, http, route)
    assert_faults_consumed(emulator)
    assert _call(emulator, http, route).status_code == 200  # the client's pool recovers


def test_reset_before_on_run_creates_nothing(emulator: Emulator, http: httpx.Client) -> None:
    emulator.add_fault("run", "reset_before")
    with pytest.raises(TRANSPORT_ERRORS):
        _call(emulator, http, "run")
    assert emulator.ledger()["runs_created"] == 0
    assert_faults_consumed(emulator)


def test_reset_after_on_run_creates_and_charges_the_run(
    emulator: Emulator, http: httpx.Client
) -> None:
    emulator.add_fault("run", "reset_after")
    body = {"webhook_payload": companies(4)}
    headers = {"Idempotency-Key": "commit-then-reset"}
    params = {"workflow_id": COMPANY_WF}
    with pytest.raises(TRANSPORT_ERRORS):
        http.post("/workflows/run", params=params, json=body, headers=headers)
    assert (emulator.ledger()["runs_created"], emulator.ledger()["rows_charged"]) == (1, 4)
    retry = http.post("/workflows/run", params=params, json=body, headers=headers).json()
    assert retry["already_started"] is True
    assert retry["job_id"] == emulator.runs()[0].job_id
    assert emulator.ledger()["runs_created"] == 1
    assert_faults_consumed(emulator)


def test_reset_after_on_cancel_still_cancels(emulator: Emulator, http: httpx.Client) -> None:
    job_id = start_run(http, companies(5))
    emulator.add_fault("cancel", "reset_after")
    with pytest.raises(TRANSPORT_ERRORS):
        http.post("/workflows/cancel", params={"job_id": job_id})
    assert live(http, job_id)["overall_status"] == "cancelled"
    assert_faults_consumed(emulator)


def test_latency_delays_then_answers_normally(emulator: Emulator, http: httpx.Client) -> None:
    emulator.add_fault("runs", "latency", seconds=0.15)
    started = time.perf_counter()
    response = http.get("/workflows/runs")
    assert time.perf_counter() - started >= 0.15
    assert response.status_code == 200
    assert_faults_consumed(emulator)


def test_stall_acts_then_holds_the_answer_past_a_read_timeout(
    emulator: Emulator, http: httpx.Client
) -> None:
    emulator.add_fault("run", "stall", seconds=0.3)
    with pytest.raises(httpx.ReadTimeout):
        http.post(
            "/workflows/run",
            params={"workflow_id": COMPANY_WF},
            json={"webhook_payload": companies(2)},
            timeout=0.1,
        )
    assert emulator.ledger()["runs_created"] == 1
    assert_faults_consumed(emulator)


def test_malformed_json_answers_200_with_broken_json_after_acting(
    emulator: Emulator, http: httpx.Client
) -> None:
    emulator.add_fault("run", "malformed_json")
    response = _call(emulator, http, "run")
    assert response.status_code == 200
    with pytest.raises(ValueError, match=r"Expecting|Unterminated|delimiter"):
        response.json()
    assert emulator.ledger()["runs_created"] == 1
    assert_faults_consumed(emulator)


# ---- file faults ---------------------------------------------------------------------------------


def test_truncate_sends_fewer_bytes_than_announced(emulator: Emulator, http: httpx.Client) -> None:
    url = _file_url(emulator, http)
    emulator.add_fault("file", "truncate", bytes=25)
    parts = urlsplit(url)
    connection = HTTPConnection(parts.hostname or "", parts.port)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        announced = int(response.headers["content-length"])
        with pytest.raises(IncompleteRead) as info:
            response.read()
    finally:
        connection.close()
    assert len(info.value.partial) == 25 < announced
    assert emulator.ledger()["files_truncated"] == 1
    assert_faults_consumed(emulator)


def test_truncate_is_a_transport_error_for_httpx(emulator: Emulator, http: httpx.Client) -> None:
    url = _file_url(emulator, http)
    emulator.add_fault("file", "truncate", bytes=10, times=2)
    for _ in range(2):
        with pytest.raises(TRANSPORT_ERRORS):
            httpx.get(url, verify=TLS)
    assert httpx.get(url, verify=TLS).status_code == 200
    assert_faults_consumed(emulator)


def test_bom_prefixes_the_next_file(emulator: Emulator, http: httpx.Client) -> None:
    url = _file_url(emulator, http)
    emulator.add_fault("file", "bom")
    assert httpx.get(url, verify=TLS).content.startswith(b"\xef\xbb\xbfcompany_name,")
    assert httpx.get(url, verify=TLS).content.startswith(b"company_name,")
    assert_faults_consumed(emulator)


def test_expire_url_gives_urls_that_are_already_expired(
    emulator: Emulator, http: httpx.Client
) -> None:
    job_id = start_run(http, companies(2), workflow_id=FILTER_WF)
    finish(emulator)
    emulator.add_fault("download_links", "expire_url")
    expired = links(http, job_id)
    for item in expired:
        response = httpx.get(item["download_url"], verify=TLS)
        assert response.status_code == 403
        assert b"<Code>ExpiredToken</Code>" in response.content
    fresh = links(http, job_id)[-1]["download_url"]
    assert httpx.get(fresh, verify=TLS).status_code == 200
    assert_faults_consumed(emulator)


def test_null_url_gives_no_download_url(emulator: Emulator, http: httpx.Client) -> None:
    job_id = start_run(http, companies(2), workflow_id=FILTER_WF)
    finish(emulator)
    emulator.add_fault("download_links", "null_url")
    assert [item["download_url"] for item in links(http, job_id)] == [None, None]
    assert all(item["download_url"] for item in links(http, job_id))
    assert_faults_consumed(emulator)


def test_url_faults_wait_for_a_response_that_has_files(
    emulator: Emulator, http: httpx.Client
) -> None:
    job_id = start_run(http, companies(2))
    emulator.add_fault("download_links", "null_url")
    assert links(http, job_id) == []  # nothing produced yet: the fault stays planned
    assert len(emulator.faults_pending()) == 1
    finish(emulator)
    assert links(http, job_id)[0]["download_url"] is None
    assert_faults_consumed(emulator)


# ---- run faults ----------------------------------------------------------------------------------


def test_fail_run_fails_the_next_created_run_at_a_block(
    emulator: Emulator, http: httpx.Client
) -> None:
    emulator.add_fault("run", "fail_run", at_block=3, error_message="quota exhausted")
    failed = start_run(http, companies(3), workflow_id=FILTER_WF)
    healthy = start_run(http, companies(3), workflow_id=FILTER_WF)
    finish(emulator)
    body = live(http, failed)
    assert body["overall_status"] == "failed"
    assert [b["status"] for b in body["blocks"]] == ["completed", "completed", "failed"]
    assert body["blocks"][2]["error_message"] == "quota exhausted"
    assert [item["block_number"] for item in links(http, failed)] == [2]
    assert live(http, healthy)["overall_status"] == "completed"
    assert emulator.faults_consumed()[0]["note"] == failed
    assert_faults_consumed(emulator)


def test_fail_run_defaults_to_the_second_block(emulator: Emulator, http: httpx.Client) -> None:
    emulator.add_fault("run", "fail_run")
    job_id = start_run(http, companies(1))
    finish(emulator)
    body = live(http, job_id)
    assert body["blocks"][1]["status"] == "failed"
    assert body["blocks"][1]["error_message"] == "Synthetic failure injected at block 2"
    assert_faults_consumed(emulator)


def test_stall_run_holds_a_run_until_released(emulator: Emulator, http: httpx.Client) -> None:
    emulator.add_fault("run", "stall_run")
    job_id = start_run(http, companies(2))
    emulator.advance(1_000)
    held = live(http, job_id)
    assert held["overall_status"] == "running"
    assert held["current_block_sequence"] == 2
    assert held["blocks"][1]["processed_count"] == 0
    emulator.release(job_id)
    emulator.advance(1)
    assert live(http, job_id)["blocks"][1]["processed_count"] == 1
    emulator.advance(1)
    assert live(http, job_id)["overall_status"] == "completed"
    assert_faults_consumed(emulator)


def test_stall_run_holds_even_an_instant_emulator() -> None:
    with (
        Emulator() as emu,
        httpx.Client(base_url=emu.base_url, headers=emu.headers, verify=TLS) as http,
    ):
        emu.add_fault("run", "stall_run", at_block=1)
        job_id = start_run(http, companies(2))
        assert live(http, job_id)["current_block"] == "webhook"
        assert (
            http.post("/workflows/cancel", params={"job_id": job_id}).json()["status"] == "canceled"
        )
        assert live(http, job_id)["overall_status"] == "cancelled"
        assert_faults_consumed(emu)


def test_canceled_spelling_applies_to_the_next_cancelled_answer(
    emulator: Emulator, http: httpx.Client
) -> None:
    emulator.add_fault("live_status", "canceled_spelling")
    emulator.add_fault("runs", "canceled_spelling")
    job_id = start_run(http, companies(5))
    assert live(http, job_id)["overall_status"] == "queued"  # not cancelled: fault stays planned
    assert len(emulator.faults_pending()) == 2
    http.post("/workflows/cancel", params={"job_id": job_id})
    assert live(http, job_id)["overall_status"] == "canceled"
    assert live(http, job_id)["overall_status"] == "cancelled"
    assert http.get("/workflows/runs").json()[0]["status"] == "canceled"
    assert http.get("/workflows/runs").json()[0]["status"] == "cancelled"
    assert_faults_consumed(emulator)


# ---- plans and accounting --------------------------------------------------------------------------


def test_faults_of_a_route_are_consumed_in_order(emulator: Emulator, http: httpx.Client) -> None:
    emulator.add_fault("runs", "status", code=500)
    emulator.add_fault("runs", "status", code=502, times=2)
    emulator.add_fault("runs", "status", code=429)
    codes = [http.get("/workflows/runs").status_code for _ in range(5)]
    assert codes == [500, 502, 502, 429, 200]
    consumed = emulator.faults_consumed()
    assert [c["params"]["code"] for c in consumed] == [500, 502, 502, 429]
    assert all(c["route"] == "runs" and c["note"] == "/workflows/runs" for c in consumed)
    assert_faults_consumed(emulator)


def test_pending_faults_are_listed_with_what_is_left(
    emulator: Emulator, http: httpx.Client
) -> None:
    fault_id = emulator.add_fault("live_status", "status", code=500, times=3)
    emulator.add_fault("file", "bom")
    http.get("/workflows/runs/00000000-0000-4000-8000-000000000000/live_status")
    assert emulator.faults_pending() == [
        {
            "id": fault_id,
            "route": "live_status",
            "kind": "status",
            "params": {"code": 500},
            "times": 3,
            "remaining": 2,
        },
        {
            "id": fault_id + 1,
            "route": "file",
            "kind": "bom",
            "params": {},
            "times": 1,
            "remaining": 1,
        },
    ]


def test_assert_faults_consumed_fails_when_a_fault_never_happened(emulator: Emulator) -> None:
    emulator.add_fault("download_links", "expire_url")
    with pytest.raises(AssertionError, match="download_links: expire_url"):
        assert_faults_consumed(emulator)


def test_reset_forgets_planned_faults(emulator: Emulator) -> None:
    emulator.add_fault("run", "status", code=500)
    emulator.reset()
    assert emulator.faults_pending() == []
    assert emulator.faults_consumed() == []


@pytest.mark.parametrize(
    ("route", "kind", "params", "message"),
    [
        ("nowhere", "status", {"code": 500}, "unknown route"),
        ("run", "explode", {}, "unknown fault kind"),
        ("run", "truncate", {"bytes": 3}, "does not apply to route 'run'"),
        ("file", "fail_run", {}, "does not apply"),
        ("run", "status", {}, "needs code"),
        ("run", "status", {"code": 503, "retry": 1}, "does not take retry"),
        ("run", "status", {"code": 1000}, "100..599"),
        ("run", "latency", {"seconds": -1}, "non-negative"),
        ("run", "fail_run", {"at_block": 0}, "at_block"),
    ],
)
def test_add_fault_rejects_plans_that_could_never_apply(
    emulator: Emulator, route: str, kind: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        emulator.add_fault(route, kind, **params)


def test_add_fault_rejects_a_bad_times(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="times"):
        emulator.add_fault("run", "reset_before", times=0)


def test_stopping_wakes_a_stalled_request() -> None:
    emu = Emulator().start()
    emu.add_fault("runs", "stall", seconds=30)
    with httpx.Client(base_url=emu.base_url, headers=emu.headers, verify=TLS) as http:
        outcome: list[Any] = []

        def call() -> None:
            try:
                outcome.append(http.get("/workflows/runs").status_code)
            except httpx.HTTPError as exc:
                outcome.append(type(exc))

        thread = threading.Thread(target=call)
        thread.start()
        while not emu.faults_consumed():
            time.sleep(0.002)
        started = time.perf_counter()
        emu.stop()
        thread.join(5)
    assert time.perf_counter() - started < 2
    assert outcome, "the stalled request ended"
