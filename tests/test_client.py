"""Every client method against the emulator over loopback, sync and async with one test body."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pyarrow as pa
import pytest

from sixtyfour_frames import (
    AuthenticationError,
    BadRequestError,
    Client,
    ConfigurationError,
    InsufficientCreditsError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    RequestValidationError,
    RunCancelledError,
    RunFailedError,
    ServerError,
    TransportError,
    WaitTimeoutError,
)
from sixtyfour_frames.emulator import Emulator
from tests.conftest import Api, FakeTime

COMPANIES = [
    {"company_name": "Acme Robotics", "country": "US"},
    {"company_name": "Globex", "country": "DE"},
    {"company_name": "Initech", "country": "US"},
]
COMPANY_WF = Emulator.workflow_id("company_enrichment")


def run_keys(emu: Emulator) -> list[str]:
    return [r.headers.get("idempotency-key", "") for r in emu.requests("run")]


def assert_all_faults_consumed(emu: Emulator) -> None:
    assert emu.faults_pending() == [], "a planned fault was never experienced"


# ---------------------------------------------------------------- run_workflow


def test_run_workflow_sends_one_idempotency_key_and_starts_one_run(api: Api, emu: Emulator) -> None:
    started = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    assert started.job_id and started.workflow_id == COMPANY_WF
    assert started.status == "queued" and not started.already_started
    assert run_keys(emu) == [started.idempotency_key]
    assert emu.ledger()["runs_created"] == 1
    assert emu.ledger()["rows_charged"] == len(COMPANIES)


def test_reusing_an_idempotency_key_returns_the_same_run(api: Api, emu: Emulator) -> None:
    first = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES, idempotency_key="k-1")
    again = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES, idempotency_key="k-1")
    assert again.job_id == first.job_id and again.already_started
    assert emu.ledger()["runs_created"] == 1
    assert emu.ledger()["idempotent_replays"] == 1


def test_503_twice_then_success_retries_with_the_identical_key(
    api: Api, emu: Emulator, fake_time: FakeTime
) -> None:
    emu.add_fault("run", "status", times=2, code=503)
    started = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    assert run_keys(emu) == [started.idempotency_key] * 3
    assert emu.ledger()["runs_created"] == 1
    assert len(fake_time.sleeps) == 2 and all(0 < s <= 20 for s in fake_time.sleeps)
    assert_all_faults_consumed(emu)


@pytest.mark.parametrize("kind", ["reset_after", "malformed_json"])
def test_a_lost_response_after_the_run_was_created_is_recovered_by_replay(
    api: Api, emu: Emulator, kind: str
) -> None:
    emu.add_fault("run", kind)
    started = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    assert started.already_started  # the server created it on the first attempt
    assert emu.ledger()["runs_created"] == 1
    assert len(set(run_keys(emu))) == 1 and len(run_keys(emu)) == 2
    assert_all_faults_consumed(emu)


def test_a_reset_before_the_server_acts_is_retried(api: Api, emu: Emulator) -> None:
    emu.add_fault("run", "reset_before")
    started = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    assert not started.already_started
    assert emu.ledger()["runs_created"] == 1
    assert_all_faults_consumed(emu)


def test_a_stall_past_the_read_timeout_is_retried_with_the_same_key(
    make_api: Callable[..., Api], emu: Emulator
) -> None:
    # Real sleeps here: the retries must outlast the stalled first attempt (409 until then).
    api = make_api(timeout=0.3, real_sleep=True)
    emu.add_fault("run", "stall", seconds=0.6)
    started = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    assert started.already_started
    assert emu.ledger()["runs_created"] == 1
    assert_all_faults_consumed(emu)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, InsufficientCreditsError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (413, PayloadTooLargeError),
        (422, RequestValidationError),
    ],
)
def test_final_statuses_are_never_retried(
    api: Api, emu: Emulator, code: int, error: type[Exception]
) -> None:
    emu.add_fault("run", "status", code=code, body={"detail": f"planned {code}"})
    with pytest.raises(error, match=f"planned {code}") as caught:
        api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    assert caught.value.status == code  # type: ignore[attr-defined]
    assert not caught.value.maybe_acted_before  # type: ignore[attr-defined]
    assert len(emu.requests("run")) == 1
    assert emu.ledger()["runs_created"] == 0


def test_a_4xx_after_an_ambiguous_attempt_says_a_run_may_exist(api: Api, emu: Emulator) -> None:
    emu.add_fault("run", "reset_after")
    emu.add_fault("run", "status", code=402, body={"detail": "Insufficient balance"})
    with pytest.raises(InsufficientCreditsError) as caught:
        api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    assert caught.value.maybe_acted_before
    assert emu.ledger()["runs_created"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"detail": "plain detail"},
        {"detail": [{"loc": ["body", "webhook_payload"], "msg": "plain detail", "type": "x"}]},
        {"error": "Bad Request", "message": "plain detail"},
        {"error": {"code": "bad_request", "message": "plain detail"}},
    ],
)
def test_every_documented_error_shape_is_parsed(
    api: Api, emu: Emulator, body: dict[str, Any]
) -> None:
    emu.add_fault("run", "status", code=400, body=body)
    with pytest.raises(BadRequestError, match="plain detail"):
        api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)


def test_webhook_payload_to_a_non_webhook_workflow_is_a_400(api: Api) -> None:
    with pytest.raises(BadRequestError) as caught:
        api.run_workflow(Emulator.workflow_id("read_csv_source"), webhook_payload=COMPANIES)
    assert "webhook" in str(caught.value)


def test_missing_required_input_columns_is_a_400(api: Api) -> None:
    with pytest.raises(BadRequestError, match="company_name"):
        api.run_workflow(COMPANY_WF, webhook_payload=[{"country": "US"}])


def test_unknown_workflow_is_a_404_with_a_hint(api: Api) -> None:
    with pytest.raises(NotFoundError) as caught:
        api.run_workflow("00000000-0000-4000-8000-000000000000", webhook_payload=COMPANIES)
    assert "does not exist" in str(caught.value)


def test_429_honours_retry_after_then_succeeds(
    api: Api, emu: Emulator, fake_time: FakeTime
) -> None:
    emu.add_fault("run", "status", code=429, retry_after="2")
    api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    assert 2.0 in fake_time.sleeps
    assert_all_faults_consumed(emu)


def test_429_without_retry_after_waits_longer_than_a_plain_retry(
    api: Api, emu: Emulator, fake_time: FakeTime
) -> None:
    emu.add_fault("run", "status", times=3, code=429)
    api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    assert len(fake_time.sleeps) == 3
    assert all(s >= 2.5 for s in fake_time.sleeps)


def test_a_retry_after_above_the_cap_gives_up_with_a_rate_limit_error(
    api: Api, emu: Emulator
) -> None:
    emu.add_fault("runs", "status", code=429, retry_after="100000")
    with pytest.raises(RateLimitError) as caught:
        api.list_runs()
    assert caught.value.retry_after == 100000.0
    assert len(emu.requests("runs")) == 1


def test_exhausted_retries_raise_a_server_error(
    make_api: Callable[..., Api], emu: Emulator
) -> None:
    api = make_api(max_retries=2)
    emu.add_fault("live_status", "status", times=3, code=502)
    started = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    with pytest.raises(ServerError) as caught:
        api.live_status(started.job_id)
    assert caught.value.job_id == started.job_id
    assert len(emu.requests("live_status")) == 3


def test_connection_refused_is_a_transport_error_that_was_not_sent(
    fake_time: FakeTime, api_kind: str
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Client(
        api_key="k",
        base_url=f"http://127.0.0.1:{port}",
        max_retries=1,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
    )
    with client, pytest.raises(TransportError) as caught:
        client.list_runs()
    assert not caught.value.sent
    assert len(fake_time.sleeps) == 1


# ---------------------------------------------------------------- list_runs


@pytest.mark.parametrize("limit", [0, 501, -1, True, "10"])
def test_list_runs_validates_limit_before_sending(api: Api, emu: Emulator, limit: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="limit"):
        api.list_runs(limit=limit)
    assert emu.requests("runs") == []


def test_list_runs_validates_status_before_sending(api: Api, emu: Emulator) -> None:
    with pytest.raises(InvalidArgumentError, match="status"):
        api.list_runs(status="paused")
    assert emu.requests("runs") == []


def test_list_runs_filters_and_normalises(api: Api, emu: Emulator) -> None:
    first = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    lead = api.run_workflow(
        Emulator.workflow_id("lead_enrichment"),
        webhook_payload=[{"full_name": "Ada Lovelace", "company_name": "Acme Robotics"}],
    )
    api.wait(first.job_id)
    runs = api.list_runs(workflow_id=COMPANY_WF)
    assert [r.job_id for r in runs] == [first.job_id]
    assert runs[0].status == "completed" and runs[0].blocks_count >= 2
    assert {r.job_id for r in api.list_runs()} == {first.job_id, lead.job_id}
    assert [r.job_id for r in api.list_runs(limit=1)] == [lead.job_id]  # newest first
    api.list_runs(status="Canceled")
    assert emu.requests("runs")[-1].query["status"] == ["cancelled"]


def test_list_runs_of_an_unknown_workflow_is_a_404(api: Api) -> None:
    with pytest.raises(NotFoundError):
        api.list_runs(workflow_id="00000000-0000-4000-8000-000000000000")


# ---------------------------------------------------------------- live_status, wait, cancel


def test_live_status_is_typed_with_every_block(api: Api) -> None:
    started = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    status = api.wait(started.job_id)
    assert status.overall_status == "completed" and status.is_terminal
    assert status.overall_progress_percentage == 100.0
    assert status.total_blocks == status.completed_blocks == len(status.blocks) >= 2
    assert [b.sequence_number for b in status.blocks] == sorted(
        b.sequence_number for b in status.blocks
    )
    assert all(b.status == "completed" and b.last_updated for b in status.blocks)
    assert status.blocks[-1].total_count == len(COMPANIES)


def test_live_status_of_a_malformed_run_id_is_a_422(api: Api) -> None:
    with pytest.raises(RequestValidationError, match="run_id"):
        api.live_status("not-a-uuid")


def test_wait_backs_off_from_two_to_ten_seconds_and_times_out_without_cancelling(
    api: Api, emu: Emulator, fake_time: FakeTime
) -> None:
    emu.add_fault("run", "stall_run")
    started = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    seen: list[str] = []
    with pytest.raises(WaitTimeoutError) as caught:
        api.wait(started.job_id, timeout=60, on_status=lambda s: seen.append(s.overall_status))
    assert caught.value.job_id == started.job_id
    assert fake_time.sleeps[:5] == [2.0, 3.0, 4.5, 6.75, 10.0]
    assert max(fake_time.sleeps) == 10.0 and sum(fake_time.sleeps) == pytest.approx(60.0)
    assert seen and set(seen) <= {"queued", "running"}
    assert emu.ledger()["runs_cancelled"] == 0
    emu.release(started.job_id)
    assert api.wait(started.job_id).overall_status == "completed"


def test_wait_raises_run_failed_with_the_servers_reasons(api: Api) -> None:
    started = api.run_workflow(Emulator.workflow_id("failing"), webhook_payload=COMPANIES)
    with pytest.raises(RunFailedError) as caught:
        api.wait(started.job_id)
    assert caught.value.job_id == started.job_id
    assert caught.value.error_message
    assert started.job_id in str(caught.value)


def test_cancel_an_active_run_then_again_is_idempotent(api: Api, emu: Emulator) -> None:
    emu.add_fault("run", "stall_run")
    started = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    assert api.cancel_run(started.job_id).status == "cancelled"  # the wire says "canceled"
    assert api.cancel_run(started.job_id).status == "cancelled"
    assert emu.ledger()["runs_cancelled"] == 1
    with pytest.raises(RunCancelledError):
        api.wait(started.job_id)


def test_cancel_of_a_finished_run_keeps_its_status(api: Api) -> None:
    started = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    api.wait(started.job_id)
    assert api.cancel_run(started.job_id).status == "completed"


def test_cancel_of_an_unknown_run_is_a_404(api: Api) -> None:
    with pytest.raises(NotFoundError):
        api.cancel_run("00000000-0000-4000-8000-000000000000")


def test_the_canceled_spelling_in_live_status_is_normalised(api: Api, emu: Emulator) -> None:
    emu.add_fault("run", "stall_run")
    emu.add_fault("live_status", "canceled_spelling")
    started = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    api.cancel_run(started.job_id)
    assert api.live_status(started.job_id).overall_status == "cancelled"
    assert_all_faults_consumed(emu)


# ---------------------------------------------------------------- download


def finished_run(api: Api, workflow: str = "company_enrichment", rows: int = 3, **kw: Any) -> str:
    payload = [{"company_name": f"Company {i}", "country": "US"} for i in range(rows)]
    started = api.run_workflow(Emulator.workflow_id(workflow), webhook_payload=payload, **kw)
    api.wait(started.job_id)
    return str(started.job_id)


def test_download_links_lists_one_file_per_producing_block(api: Api) -> None:
    job_id = finished_run(api)
    files = api.download_links(job_id)
    assert len(files) >= 1
    assert [f.block_number for f in files] == sorted(f.block_number or 0 for f in files)
    assert all(f.download_url and f.download_expires_in_seconds > 0 for f in files)
    assert "download_url" not in repr(files[0])


def test_small_results_come_inline_without_touching_the_file_host(api: Api, emu: Emulator) -> None:
    job_id = finished_run(api, rows=3)
    table = api.download_results(job_id)
    assert table.num_rows == 3
    assert {"company_name", "domain", "industry", "description"} <= set(table.column_names)
    assert emu.requests("file") == []


def test_large_results_are_fetched_without_the_key_and_parse_multiline_cells(
    api: Api, emu: Emulator
) -> None:
    job_id = finished_run(api, rows=120)
    table = api.download_results(job_id)
    assert table.num_rows == 120
    assert table.column("company_name").to_pylist() == [f"Company {i}" for i in range(120)]
    assert any("\n" in (d or "") for d in table.column("description").to_pylist())
    fetched = emu.requests("file")
    assert len(fetched) == 1
    assert "x-api-key" not in fetched[0].headers and "authorization" not in fetched[0].headers


@pytest.mark.parametrize("kind", ["expire_url", "null_url"])
def test_an_expired_or_missing_url_leads_to_fresh_links(api: Api, emu: Emulator, kind: str) -> None:
    job_id = finished_run(api, rows=120)
    emu.add_fault("download_links", kind)
    assert api.download_results(job_id).num_rows == 120
    assert len(emu.requests("download_links")) == 2
    assert_all_faults_consumed(emu)


@pytest.mark.parametrize(("kind", "params"), [("truncate", {"bytes": 200}), ("bom", {})])
def test_truncated_or_bom_prefixed_files_still_arrive_whole(
    api: Api, emu: Emulator, kind: str, params: dict[str, Any]
) -> None:
    job_id = finished_run(api, rows=120)
    emu.add_fault("file", kind, **params)
    table = api.download_results(job_id)
    assert table.num_rows == 120 and table.column_names[0] == "company_name"
    assert_all_faults_consumed(emu)


def test_json_and_ndjson_results(api: Api) -> None:
    job_id = finished_run(api, rows=120, save_json=True, result_formats=["ndjson"])
    as_csv = api.download_results(job_id)
    as_json = api.download_results(job_id, format="json")
    as_ndjson = api.download_results(job_id, format="ndjson")
    assert as_json.num_rows == as_ndjson.num_rows == as_csv.num_rows == 120
    assert as_json.column("company_name").to_pylist() == as_csv.column("company_name").to_pylist()
    assert as_ndjson.column("description").to_pylist() == as_csv.column("description").to_pylist()


def test_a_specific_block_file_can_be_chosen(api: Api) -> None:
    job_id = finished_run(api, workflow="filter_companies", rows=40)
    files = api.download_links(job_id)
    first_block = files[0].block_number
    assert first_block is not None
    table = api.download_results(job_id, file=first_block)
    assert isinstance(table, pa.Table) and table.num_rows == files[0].row_count


# ---------------------------------------------------------------- configuration and secrets


def test_a_missing_key_fails_before_any_socket_opens(
    monkeypatch: pytest.MonkeyPatch, api_kind: str
) -> None:
    monkeypatch.delenv("SIXTYFOUR_API_KEY", raising=False)

    def no_sockets(*args: object, **kwargs: object) -> None:
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(socket, "socket", no_sockets)
    with pytest.raises(ConfigurationError, match="SIXTYFOUR_API_KEY"):
        Client()


def test_environment_then_explicit_arguments(
    monkeypatch: pytest.MonkeyPatch, emu: Emulator
) -> None:
    monkeypatch.setenv("SIXTYFOUR_API_KEY", emu.api_key)
    monkeypatch.setenv("SIXTYFOUR_BASE_URL", emu.base_url)
    with Client() as client:
        assert client.base_url == emu.base_url
        client.list_runs()
    with (
        Client(api_key="wrong", base_url=emu.base_url) as client,
        pytest.raises(AuthenticationError),
    ):
        client.list_runs()
    assert Client(base_url="https://example.invalid/").base_url == "https://example.invalid"


@pytest.mark.parametrize(
    "url", ["ftp://x", "api.sixtyfour.ai", "https://u:p@host", "https://h/?q=1"]
)
def test_bad_base_urls_are_rejected(url: str) -> None:
    with pytest.raises(ConfigurationError):
        Client(api_key="k", base_url=url)


def test_the_key_never_shows_in_reprs_errors_or_debug_logs(
    make_api: Callable[..., Api], emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api = make_api()
    emu.add_fault("run", "status", code=503)
    started = api.run_workflow(COMPANY_WF, webhook_payload=COMPANIES)
    emu.add_fault("live_status", "status", code=400, body={"detail": "nope"})
    with pytest.raises(BadRequestError) as caught:
        api.live_status(started.job_id)
    texts = [repr(api.client), str(caught.value), repr(caught.value), repr(api.client.settings)]
    texts += [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    assert caplog.records, "debug logging was expected"
    assert not [t for t in texts if emu.api_key in t]


def test_a_handed_in_httpx_client_is_used_and_left_open(emu: Emulator) -> None:
    seen: list[str] = []
    with httpx.Client(event_hooks={"request": [lambda r: seen.append(r.url.path)]}) as http:
        with Client(api_key=emu.api_key, base_url=emu.base_url, http_client=http) as client:
            client.list_runs()
        assert seen == ["/workflows/runs"]
        assert not http.is_closed


def test_a_handed_in_transport_is_used(emu: Emulator) -> None:
    transport = httpx.HTTPTransport(retries=0)
    with Client(api_key=emu.api_key, base_url=emu.base_url, transport=transport) as client:
        assert client.list_runs() == []
