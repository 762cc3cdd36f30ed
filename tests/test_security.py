"""reliability.md §7 G36-G40: the API key, redirects, signed URLs, TLS and a missing key.

A sentinel key (``FAKE_SECRET-…``) is the emulator's key here, and it is searched for everywhere
it must never appear. Every scenario of the fault matrix also scans for its own emulator's key
(logs at DEBUG including httpx and httpcore, str/repr/pickle of every error and its causes, the
ledger files, file-host requests): see ``tests/fault_matrix.py`` ``Env._key_leaks``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
import socket
import ssl
import stat
import threading
import traceback
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import sixtyfour_frames
from sixtyfour_frames import (
    APIError,
    AsyncClient,
    Client,
    ConfigurationError,
    TransportError,
)
from sixtyfour_frames._config import ApiKey
from sixtyfour_frames._ledger import Ledger
from sixtyfour_frames.emulator import Emulator
from sixtyfour_frames.emulator._app import build_app
from sixtyfour_frames.emulator._clock import system_clock
from sixtyfour_frames.emulator._server import ThreadServer, _Uvicorn, base_url_of, bind
from sixtyfour_frames.emulator._state import EmulatorState, Settings
from tests import fault_matrix as fm
from tests.conftest import FakeTime

SENTINEL = "FAKE_SECRET-" + uuid.uuid4().hex
COMPANY_WF = Emulator.workflow_id("company_enrichment")
SRC = Path(__file__).resolve().parents[1] / "src" / "sixtyfour_frames"


@pytest.fixture(scope="module")
def secret_emulator() -> Iterator[Emulator]:
    with Emulator(seed=0, api_key=SENTINEL) as emu:
        yield emu


@pytest.fixture
def semu(secret_emulator: Emulator) -> Iterator[Emulator]:
    secret_emulator.reset()
    yield secret_emulator
    secret_emulator.reset()


class Either:
    """A sync or an async client behind one synchronous interface (one loop per client)."""

    def __init__(self, kind: str, base_url: str, fake: FakeTime, **options: Any) -> None:
        common: dict[str, Any] = {
            "api_key": SENTINEL,
            "base_url": base_url,
            "clock": fake.clock,
            "verify": fm.TLS,
            **options,
        }
        self._loop = asyncio.new_event_loop()
        self.client: Client | AsyncClient = (
            Client(sleep=fake.sleep, **common)
            if kind == "sync"
            else AsyncClient(sleep=fake.async_sleep, **common)
        )

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, method)(*args, **kwargs)
        return self._loop.run_until_complete(result) if asyncio.iscoroutine(result) else result

    def close(self) -> None:
        if isinstance(self.client, AsyncClient):
            self._loop.run_until_complete(self.client.aclose())
        else:
            self.client.close()
        self._loop.close()


# ================================================================ G36 key hygiene


KEY_SCENARIOS = (
    "a01_503_twice_then_200",
    "a02_commit_then_reset",
    "a04_truncated_or_malformed_200",
    "a06_connection_refused_then_up",
    "a07_keys_disabled_ambiguous_then_adopted_on_resume",
    "a10_final_statuses_journal_failed_no_run",
    "a11_429_backoff_retry_after_and_its_cap",
    "b16_a_burst_of_poll_failures",
    "b18_unknown_and_misspelt_statuses",
    "c24_cancel_with_a_lost_answer",
    "c25_ctrl_c_while_polling",
    "d26_reconciliation_is_unchanged_by_list_faults",
    "e28_truncated_downloads",
    "e29_expired_or_missing_urls",
)


@pytest.fixture(scope="module")
def secret_keyless(secret_emulator: Emulator) -> Iterator[Emulator]:
    with Emulator(seed=0, idempotency=False, api_key=SENTINEL) as emu:
        yield emu


@pytest.mark.parametrize("name", KEY_SCENARIOS)
def test_G36_the_sentinel_key_never_leaks_through_faults(
    semu: Emulator, secret_keyless: Emulator, tmp_path: Path, name: str
) -> None:
    entry = fm.MATRIX[name]
    kind = entry.kinds[-1]  # the async run where there is one, else the sync one
    env = fm.Env(semu, kind, tmp_path, keyless=lambda: secret_keyless, scenario=name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = fm.play(entry.run, env)
    assert outcome.key_leaks == []
    assert env.capture.texts, "DEBUG records of httpx/httpcore/sixtyfour_frames were expected"
    assert any("httpcore" in text or "HTTP Request" in text for text in env.capture.texts)
    assert [str(w.message) for w in caught if SENTINEL in str(w.message)] == []
    fm.assert_figures(outcome)


def test_G36_reprs_and_pickles_never_show_the_key() -> None:
    for kind in ("sync", "async"):
        either = Either(kind, "https://api.sixtyfour.ai", FakeTime())
        client = either.client
        texts = [repr(client), str(client), repr(client.settings), str(client.settings.api_key)]
        texts += [repr(vars(client)), repr(client._session._auth)]
        assert not [text for text in texts if SENTINEL in text]
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(client)
        with pytest.raises(TypeError):
            copy.deepcopy(client)
        with pytest.raises(TypeError):
            pickle.dumps(client.settings)
        either.close()
    with pytest.raises(TypeError):
        pickle.dumps(ApiKey(SENTINEL))


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_G36_a_failed_request_keeps_no_key_in_its_error_chain(semu: Emulator, kind: str) -> None:
    """httpx keeps the request on its exceptions, and masks only Authorization in reprs."""
    either = Either(kind, semu.base_url, FakeTime(), max_retries=1)
    semu.add_fault("runs", "reset_before", times=2)
    try:
        with pytest.raises(TransportError) as caught:
            either.call("list_runs")
    finally:
        either.close()
    chain = "".join(traceback.format_exception(caught.value))
    cause = caught.value.__cause__
    assert isinstance(cause, httpx.TransportError)
    assert "x-api-key" not in cause.request.headers
    for text in (chain, repr(cause.request.headers)):
        assert SENTINEL not in text
    for data in (pickle.dumps(cause), pickle.dumps(caught.value)):
        assert SENTINEL.encode() not in data
    assert len(semu.requests("runs")) == 2
    assert all(r.header("x-api-key") == SENTINEL for r in semu.requests("runs"))  # it was sent


def test_G36_ledger_files_are_private_and_keyless(semu: Emulator, tmp_path: Path) -> None:
    fake = FakeTime()
    home = tmp_path / "ledger"
    frame = pd.DataFrame({"company_name": [f"Company {i}" for i in range(120)]})
    with (
        Client(api_key=SENTINEL, base_url=semu.base_url, sleep=fake.sleep, clock=fake.clock) as c,
        Ledger(home) as ledger,
    ):
        sixtyfour_frames.enrich(frame, COMPANY_WF, client=c, ledger=ledger, progress=False)
        with ledger.lock("held-while-we-look"):  # while open: the WAL files exist too
            modes = {path: stat.S_IMODE(path.stat().st_mode) for path in [home, *home.rglob("*")]}
    assert any(p.suffix == ".parquet" for p in modes) and any(p.suffix == ".lock" for p in modes)
    assert any(p.name.endswith("-wal") for p in modes)
    for path, mode in modes.items():
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    for path in home.rglob("*"):
        assert not path.is_file() or SENTINEL.encode() not in path.read_bytes(), path


def test_G36_debug_logs_of_a_whole_enrich_never_show_the_key(
    semu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sixtyfour_frames"):
        caplog.set_level(logging.DEBUG, logger=name)
    fake = FakeTime()
    semu.add_fault("run", "reset_after")
    semu.add_fault("live_status", "status", code=503)
    frame = pd.DataFrame({"company_name": ["Acme", "Globex"]})
    with (
        Client(api_key=SENTINEL, base_url=semu.base_url, sleep=fake.sleep, clock=fake.clock) as c,
        Ledger(tmp_path / "ledger") as ledger,
    ):
        sixtyfour_frames.enrich(frame, COMPANY_WF, client=c, ledger=ledger, progress=False)
    names = {record.name.split(".")[0] for record in caplog.records}
    assert {"httpx", "httpcore", "sixtyfour_frames"} <= names
    texts = [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    assert [text for text in texts if SENTINEL in text] == []
    assert SENTINEL not in caplog.text


# ================================================================ G37 redirects


class _Redirector:
    """A server that answers 307 to another origin for every request (and records them)."""

    def __init__(self, target: str) -> None:
        self.requests: list[dict[str, str]] = []

        async def redirect(request: Request) -> Response:
            self.requests.append(dict(request.headers))
            location = (
                target + request.url.path + (f"?{request.url.query}" if request.url.query else "")
            )
            return Response(status_code=307, headers={"location": location})

        routes = [Route("/{path:path}", redirect, methods=["GET", "POST"])]
        self.server = ThreadServer(Starlette(routes=routes), "127.0.0.1", 0, threading.Event())

    def __enter__(self) -> _Redirector:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_G37_a_redirect_to_another_origin_is_not_followed(semu: Emulator, kind: str) -> None:
    fake = FakeTime()
    with _Redirector(semu.base_url) as redirector:
        either = Either(kind, redirector.server.base_url, fake)
        try:
            with pytest.raises(APIError) as listing:
                either.call("list_runs")
            with pytest.raises(APIError) as starting:
                either.call("run_workflow", COMPANY_WF, webhook_payload=[{"company_name": "x"}])
        finally:
            either.close()
    for error in (listing.value, starting.value):
        assert error.status == 307 and "not followed" in str(error)
        assert semu.base_url.replace("http://", "") in str(error)  # where it wanted to go
    assert semu.requests() == []  # the other origin never saw a request, let alone the key
    assert len(redirector.requests) == 2  # one attempt each: a redirect is not retried
    assert all(r.get("x-api-key") == SENTINEL for r in redirector.requests)
    assert fake.sleeps == []


# ================================================================ G38 signed URLs


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_G38_signed_url_downloads_carry_no_credentials(semu: Emulator, kind: str) -> None:
    either = Either(kind, semu.base_url, FakeTime())
    semu.add_fault("download_links", "expire_url")  # the refused fetch carries nothing either
    try:
        started = either.call("run_workflow", COMPANY_WF, webhook_payload=fm.companies(120))
        either.call("wait", started.job_id)
        assert either.call("download_results", started.job_id).num_rows == 120
    finally:
        either.close()
    files = semu.requests("file")
    assert len(files) == 2  # the expired URL, then the fresh one
    for request in files:
        assert request.header("x-api-key") is None and request.header("authorization") is None
        assert SENTINEL not in repr(request.headers)
    assert semu.ledger()["file_requests_with_credentials"] == 0
    assert all(r.header("x-api-key") == SENTINEL for r in semu.requests("download_links"))


# ================================================================ G39 TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


class _HttpsEmulator:
    """The emulator's own ASGI app (``build_app``) under uvicorn with a certificate from ``ca``.

    ``Emulator`` has no TLS option, so this runs the same app the way ``Emulator`` does (a bound
    socket, uvicorn on a thread), with ``ssl_certfile``/``ssl_keyfile``.
    """

    def __init__(self, ca: trustme.CA, home: Path) -> None:
        pem = home / "server.pem"
        ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
            str(pem)
        )
        self.state = EmulatorState(Settings(api_key=SENTINEL), system_clock)
        self._shutdown = threading.Event()
        config = uvicorn.Config(
            build_app(self.state, self._shutdown),
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            ssl_certfile=str(pem),
            ssl_keyfile=str(pem),
        )
        self._sock = bind("127.0.0.1", 0)
        self.base_url = base_url_of(self._sock).replace("http://", "https://")
        self._server = _Uvicorn(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> _HttpsEmulator:
        self._thread.start()
        assert self._server.ready.wait(10), "the HTTPS emulator did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._shutdown.set()
        self._server.request_exit()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture(scope="module")
def https_emulator(
    ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_HttpsEmulator]:
    with _HttpsEmulator(ca, tmp_path_factory.mktemp("tls")) as server:
        yield server


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_G39_tls_is_verified_by_default_and_fails_without_the_ca(
    https_emulator: _HttpsEmulator, kind: str
) -> None:
    fake = FakeTime()
    # verify=True, the default: the system's trust store, which does not know the test CA.
    either = Either(kind, https_emulator.base_url, fake, verify=True)
    requests_before = len(https_emulator.state.requests())
    try:
        with pytest.raises(TransportError) as caught:
            either.call("run_workflow", COMPANY_WF, webhook_payload=[{"company_name": "x"}])
    finally:
        either.close()
    error = caught.value
    assert "TLS verification failed" in str(error) and "verify=" in str(error)
    assert not error.sent  # the handshake failed: nothing reached the API
    assert fake.sleeps == []  # and a certificate problem is not retried
    assert len(https_emulator.state.requests()) == requests_before
    assert SENTINEL not in str(error) + repr(error)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_G39_tls_passes_with_the_ca_in_an_ssl_context(
    https_emulator: _HttpsEmulator, ca: trustme.CA, kind: str
) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    either = Either(kind, https_emulator.base_url, FakeTime(), verify=context)
    try:
        started = either.call("run_workflow", COMPANY_WF, webhook_payload=fm.companies(120))
        either.call("wait", started.job_id)
        table = either.call("download_results", started.job_id)  # an https signed URL too
    finally:
        either.close()
    assert table.num_rows == 120
    files = [r for r in https_emulator.state.requests() if r.route == "file"]
    assert files and not any(r.carried_credentials for r in files)


def test_G39_no_silent_verify_false_in_the_library() -> None:
    forbidden = ("verify=False", "CERT_NONE", "check_hostname = False", "_create_unverified")
    found = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in SRC.rglob("*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if any(word in line for word in forbidden)
    ]
    assert found == []


# ================================================================ G40 a missing key


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Any socket opened in the test fails it (and is recorded)."""
    opened: list[tuple[Any, ...]] = []

    class NoSocket(socket.socket):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            opened.append(args)
            raise AssertionError("a socket was opened before the configuration was checked")

    monkeypatch.setattr(socket, "socket", NoSocket)
    return opened


@pytest.mark.parametrize("value", [None, "", "   "])
def test_G40_a_missing_key_fails_before_any_socket_opens(
    monkeypatch: pytest.MonkeyPatch, no_sockets: list[tuple[Any, ...]], value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("SIXTYFOUR_API_KEY", raising=False)
    else:
        monkeypatch.setenv("SIXTYFOUR_API_KEY", value)
    with pytest.raises(ConfigurationError, match="SIXTYFOUR_API_KEY"):
        Client()
    with pytest.raises(ConfigurationError, match="SIXTYFOUR_API_KEY"):
        AsyncClient()
    frame = pd.DataFrame({"company_name": ["Acme"]})
    with pytest.raises(ConfigurationError, match="SIXTYFOUR_API_KEY"):
        sixtyfour_frames.enrich(frame, COMPANY_WF, progress=False)
    assert no_sockets == []


def test_G40_the_environment_is_read_and_an_explicit_key_wins(
    monkeypatch: pytest.MonkeyPatch, semu: Emulator
) -> None:
    monkeypatch.setenv("SIXTYFOUR_API_KEY", SENTINEL)
    monkeypatch.setenv("SIXTYFOUR_BASE_URL", semu.base_url)
    with Client(verify=fm.TLS) as from_env:
        assert from_env.settings.api_key.reveal() == SENTINEL
        assert from_env.base_url == semu.base_url
        from_env.list_runs()
    monkeypatch.setenv("SIXTYFOUR_API_KEY", "sk-wrong")
    with Client(api_key=SENTINEL, verify=fm.TLS) as explicit:
        explicit.list_runs()
    assert [r.header("x-api-key") for r in semu.requests("runs")] == [SENTINEL, SENTINEL]
    with pytest.raises(sixtyfour_frames.AuthenticationError), Client(verify=fm.TLS) as wrong:
        wrong.list_runs()  # the env var's wrong key, with no explicit one


def test_G40_a_rejected_key_is_not_echoed_in_the_error(semu: Emulator) -> None:
    with (
        Client(api_key="sk-wrong-" + SENTINEL, base_url=semu.base_url, verify=fm.TLS) as client,
        pytest.raises(sixtyfour_frames.AuthenticationError) as caught,
    ):
        client.list_runs()
    assert caught.value.status == 401 and "SIXTYFOUR_API_KEY" in str(caught.value)
    assert SENTINEL not in str(caught.value) + repr(caught.value)
