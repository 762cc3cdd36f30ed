"""Idempotency-Key: replays, a reused key with another body, and a key still in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sixtyfour_frames.emulator import Emulator, assert_faults_consumed

from ._support import COMPANY_WF, TLS, Schemas, companies

RUN = "/workflows/run"


def _post(
    http: httpx.Client, body: Any, key: str | None = "key-1", **params: Any
) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return http.post(RUN, params={"workflow_id": COMPANY_WF, **params}, json=body, headers=headers)


def test_a_repeat_with_the_same_key_and_body_is_a_replay(
    emulator: Emulator, http: httpx.Client, schemas: Schemas
) -> None:
    body = {"webhook_payload": companies(3)}
    first = _post(http, body).json()
    again = _post(http, body)
    schemas.check_response(RUN, "POST", again.json())
    assert again.json() == {**first, "already_started": True}
    ledger = emulator.ledger()
    assert (ledger["runs_created"], ledger["rows_charged"], ledger["idempotent_replays"]) == (
        1,
        3,
        1,
    )
    assert [run.idempotency_key for run in emulator.runs()] == ["key-1"]


def test_a_replay_reports_the_run_s_current_status(emulator: Emulator, http: httpx.Client) -> None:
    body = {"webhook_payload": companies(1)}
    _post(http, body)
    emulator.advance(100)
    assert _post(http, body).json()["status"] == "completed"


def test_key_order_inside_records_is_part_of_the_body(http: httpx.Client) -> None:
    # Column order is meaningful (output columns follow it), so reordering keys is a new body.
    assert _post(http, {"webhook_payload": [{"company_name": "A", "x": 1}]}).status_code == 200
    response = _post(http, {"webhook_payload": [{"x": 1, "company_name": "A"}]})
    assert response.status_code == 422


def test_whitespace_does_not_change_the_body(emulator: Emulator, http: httpx.Client) -> None:
    compact = b'{"webhook_payload":[{"company_name":"A"}]}'
    spaced = b'{ "webhook_payload" : [ { "company_name" : "A" } ] }'
    for content in (compact, spaced):
        response = http.post(
            RUN,
            params={"workflow_id": COMPANY_WF},
            content=content,
            headers={"Idempotency-Key": "k", "content-type": "application/json"},
        )
        assert response.status_code == 200
    assert emulator.ledger()["runs_created"] == 1


@pytest.mark.parametrize(
    ("second_body", "params"),
    [
        ({"webhook_payload": companies(4)}, {}),
        ({"webhook_payload": companies(3)}, {"save_json": "true"}),
    ],
)
def test_the_same_key_with_another_request_is_a_422(
    emulator: Emulator, http: httpx.Client, second_body: dict[str, Any], params: dict[str, str]
) -> None:
    _post(http, {"webhook_payload": companies(3)})
    response = _post(http, second_body, **params)
    assert response.status_code == 422
    assert response.json() == {"detail": "Idempotency-Key reused with a different request body"}
    assert emulator.ledger()["runs_created"] == 1


def test_different_keys_create_different_runs(emulator: Emulator, http: httpx.Client) -> None:
    body = {"webhook_payload": companies(1)}
    assert (
        _post(http, body, key="a").json()["job_id"] != _post(http, body, key="b").json()["job_id"]
    )
    assert emulator.ledger()["runs_created"] == 2


def test_a_request_that_fails_validation_does_not_claim_its_key(
    emulator: Emulator, http: httpx.Client
) -> None:
    assert _post(http, {"webhook_payload": []}).status_code == 400
    assert _post(http, {"webhook_payload": companies(1)}).status_code == 200
    assert emulator.ledger()["idempotent_replays"] == 0


def test_without_idempotency_the_header_is_ignored() -> None:
    with (
        Emulator(idempotency=False) as emu,
        httpx.Client(base_url=emu.base_url, headers=emu.headers, verify=TLS) as http,
    ):
        body = {"webhook_payload": companies(2)}
        first, second = _post(http, body).json(), _post(http, body).json()
        assert first["job_id"] != second["job_id"]
        assert "already_started" not in second
        assert _post(http, {"webhook_payload": companies(5)}).status_code == 200
        assert emu.ledger()["runs_created"] == 3
        assert [run.idempotency_key for run in emu.runs()] == [None, None, None]


@pytest.fixture
def background(emulator: Emulator) -> Iterator[list[threading.Thread]]:
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(5)


def _in_background(
    emulator: Emulator, threads: list[threading.Thread], body: Any
) -> list[httpx.Response]:
    answers: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=emulator.base_url, headers=emulator.headers, verify=TLS) as http:
            answers.append(_post(http, body))

    thread = threading.Thread(target=send)
    threads.append(thread)
    thread.start()
    deadline = time.monotonic() + 2
    while not emulator.requests("run") and time.monotonic() < deadline:
        time.sleep(0.002)
    return answers


@pytest.mark.parametrize("kind", ["latency", "stall"])
def test_a_key_still_in_flight_gets_a_409(
    emulator: Emulator, http: httpx.Client, background: list[threading.Thread], kind: str
) -> None:
    body = {"webhook_payload": companies(2)}
    emulator.add_fault("run", kind, seconds=0.3)
    answers = _in_background(emulator, background, body)
    time.sleep(0.05)  # let the first request reach its fault
    conflict = _post(http, body)
    assert conflict.status_code == 409
    assert conflict.json() == {"detail": "A request with this Idempotency-Key is in progress"}
    background[0].join(5)
    assert answers[0].status_code == 200
    replay = _post(http, body).json()
    assert replay["job_id"] == answers[0].json()["job_id"]
    assert replay["already_started"] is True
    assert emulator.ledger()["runs_created"] == 1
    assert_faults_consumed(emulator)
