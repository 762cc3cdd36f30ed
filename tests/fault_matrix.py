"""The fault matrix of reliability.md §7: one function per scenario, shared by tests and the soak.

Each scenario plans its faults (the emulator's fault plans, or :mod:`tests.fault_proxy` for faults
below HTTP), drives the client or the orchestrator over real loopback sockets, asserts what §7
expects, and ends with :meth:`Env.finish`, which checks the books (every planned fault consumed,
runs and rows charged as expected) and returns an :class:`Outcome` with the figures that
``scripts/soak.py`` reports: faults planned and experienced, duplicate runs, rows charged twice,
paid results lost, key leaks, attempts per request, the peak request rate and leaked connections.

``tests/test_faults.py`` runs every scenario once (seed 0: the documented fault counts); the soak
runs the matrix again with random seeds, which vary fault counts, kinds and orders within each
scenario's meaning (:meth:`Env.pick`). Time is fake (:class:`HookedTime`) except where a real
read timeout is the point (a stall), and those waits are a fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import math
import os
import pickle
import random
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from unittest import mock

import httpx
import numpy as np
import pandas as pd
import polars as pl

import sixtyfour_frames
from sixtyfour_frames import (
    AmbiguousSubmitError,
    AsyncClient,
    BadRequestError,
    Client,
    IdempotencyConflictError,
    InsufficientCreditsError,
    JoinError,
    NotFoundError,
    RateLimitError,
    ResultDownloadError,
    RunCancelledError,
    RunFailedError,
    SerializationError,
    ServerError,
    SixtyfourError,
    TransportError,
    WaitTimeoutError,
    _http,
)
from sixtyfour_frames._enrich import EnrichInterrupted
from sixtyfour_frames._errors import (
    AuthenticationError,
    LedgerError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RequestValidationError,
)
from sixtyfour_frames._ledger import Ledger, SubmissionState
from sixtyfour_frames._report import RunReport
from sixtyfour_frames._retry import RateLimiter, RetryPolicy
from sixtyfour_frames.emulator import Emulator, assert_faults_consumed
from tests.conftest import Api, FakeTime
from tests.fault_proxy import FaultProxy

E = TypeVar("E", bound=BaseException)
S = SubmissionState
BOTH = ("sync", "async")
SYNC = ("sync",)
ASYNC = ("async",)
COMPANY_WF = Emulator.workflow_id("company_enrichment")
FILTER_WF = Emulator.workflow_id("filter_companies")
ROW_KEY = "__sixtyfour_row"
DEFAULT_POLICY = RetryPolicy()
RATE_LIMIT_PER_MINUTE = 500  # the documented API limit the client must stay under
LOGGERS = ("sixtyfour_frames", "httpx", "httpcore")
# What httpx builds for verify=True, built once: loading the CA bundle costs ~0.1 s per client.
TLS = httpx.create_ssl_context()


# ---------------------------------------------------------------- data helpers


def companies(count: int, start: int = 0, tag: str = "Company") -> list[dict[str, Any]]:
    return [{"company_name": f"{tag} {i}", "country": "US"} for i in range(start, start + count)]


def company_frame(count: int, start: int = 0, tag: str = "Company") -> pd.DataFrame:
    return pd.DataFrame({"company_name": [f"{tag} {i}" for i in range(start, start + count)]})


def run_keys(emu: Emulator) -> list[str]:
    return [r.header("idempotency-key") or "" for r in emu.requests("run")]


def set_status(status: str) -> Callable[[bytes], bytes]:
    """A proxy rewrite: report ``status`` as the run's overall status."""

    def rewrite(body: bytes) -> bytes:
        data = json.loads(body)
        data["overall_status"] = status
        return json.dumps(data).encode()

    return rewrite


def rewrite_fields(**changes: Any) -> Callable[[bytes], bytes]:
    """A proxy rewrite of a live status: set fields; a value of ``...`` removes the field."""

    def rewrite(body: bytes) -> bytes:
        data = json.loads(body)
        for name, value in changes.items():
            if value is ...:
                data.pop(name, None)
            else:
                data[name] = value
        return json.dumps(data).encode()

    return rewrite


def duplicate_first_item(body: bytes) -> bytes:
    """A proxy rewrite of a list: the first item again at the end (a list read across a shift)."""
    items = json.loads(body)
    return json.dumps(items + items[:1]).encode()


def drop_last_records(count: int) -> Callable[[bytes], bytes]:
    """A proxy rewrite of a CSV file: well-formed, but ``count`` records short."""

    def rewrite(body: bytes) -> bytes:
        rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows[:-count])
        return out.getvalue().encode()

    return rewrite


def cut_mid_record(body: bytes) -> bytes:
    """A proxy rewrite of a CSV file: cut inside a quoted multi-line value (unparseable)."""
    text = body.decode("utf-8")
    quote = text.index('"', len(text) // 3)
    return text[: quote + 2].encode()


def detect_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook: a repeated key in one object is a silent data loss; fail on it."""
    keys = [key for key, _ in pairs]
    duplicates = {key for key in keys if keys.count(key) > 1}
    if duplicates:
        raise AssertionError(f"duplicate keys on the wire: {sorted(duplicates)}")
    return dict(pairs)


# ---------------------------------------------------------------- time, counters, capture


class HookedTime(FakeTime):
    """Fake time whose sleeps can trigger test actions first (bring a proxy up, press Ctrl-C…)."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks: list[Callable[[float], None]] = []
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        for hook in list(self.hooks):
            hook(seconds)
        with self._lock:
            super().sleep(seconds)


class Instruments:
    """Counts the attempts of every logical request and when each API request was let out.

    It wraps the client's own decision points (each ``_Decider`` is one logical request; each
    ``RateLimiter.reserve`` one API attempt), so nothing about the traffic is inferred.
    """

    def __init__(self) -> None:
        self.deciders: list[Any] = []
        self.slots: list[tuple[int, float]] = []  # (limiter id, when the attempt was let out)
        self._patches: list[Any] = []

    def __enter__(self) -> Instruments:
        deciders, slots = self.deciders, self.slots
        original_init = _http._Decider.__init__
        original_reserve = RateLimiter.reserve

        def init(decider: Any, ctx: Any, call: Any) -> None:
            original_init(decider, ctx, call)
            deciders.append(decider)

        def reserve(limiter: RateLimiter) -> float:
            wait = original_reserve(limiter)
            slots.append((id(limiter), limiter._clock() + wait))
            return wait

        self._patches = [
            mock.patch.object(_http._Decider, "__init__", init),
            mock.patch.object(RateLimiter, "reserve", reserve),
        ]
        for patch in self._patches:
            patch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for patch in reversed(self._patches):
            patch.stop()
        self._patches = []

    def attempts(self) -> list[int]:
        return [len(d.attempts) for d in self.deciders if d.attempts]

    def peak_per_minute(self, limiter: RateLimiter | None = None) -> int:
        by_limiter: dict[int, list[float]] = {}
        for owner, when in self.slots:
            if limiter is None or owner == id(limiter):
                by_limiter.setdefault(owner, []).append(when)
        return max((_peak_in_window(times, 60.0) for times in by_limiter.values()), default=0)


def _peak_in_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    peak, start = 0, 0
    for end, when in enumerate(ordered):
        while ordered[start] <= when - window:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


class _Capture(logging.Handler):
    """Keeps the text of every record (message, args, traceback) for the key-leak scan."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        self.texts += [message, repr(record.args)]
        if record.exc_info:
            self.texts.append("".join(traceback.format_exception(*record.exc_info)))


# ---------------------------------------------------------------- outcome


@dataclass
class Outcome:
    """The figures of one scenario run."""

    scenario: str
    kind: str
    seed: int
    faults_planned: int = 0
    faults_experienced: int = 0
    runs_expected: int | None = None
    runs_created: int = 0
    rows_expected: int | None = None
    rows_charged: int = 0
    rows_paid: int = 0  # output rows of our completed runs
    rows_delivered: int = 0  # of those, rows handed to the caller
    posts_after_validation_failure: int = 0
    key_leaks: list[str] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    peak_per_minute: int = 0
    leaked_connections: int = 0
    survived: bool = True
    failure: str = ""
    seconds: float = 0.0

    @property
    def duplicate_runs(self) -> int:
        expected = self.runs_created if self.runs_expected is None else self.runs_expected
        return max(0, self.runs_created - expected)

    @property
    def rows_charged_twice(self) -> int:
        expected = self.rows_charged if self.rows_expected is None else self.rows_expected
        return max(0, self.rows_charged - expected)

    @property
    def paid_results_lost(self) -> int:
        return max(0, self.rows_paid - self.rows_delivered)

    def problems(self) -> list[str]:
        """Every figure that misses its target (empty when the scenario met them all)."""
        checks = {
            "faults not experienced": self.faults_planned - self.faults_experienced,
            "duplicate runs": self.duplicate_runs,
            "rows charged twice": self.rows_charged_twice,
            "paid results lost": self.paid_results_lost,
            "POSTs after a validation failure": self.posts_after_validation_failure,
            "key leaks": len(self.key_leaks),
            "leaked connections": self.leaked_connections,
            "attempts above max_retries + 1": sum(
                1 for n in self.attempts if n > DEFAULT_POLICY.max_retries + 1
            ),
            "requests per minute above the limit": max(
                0, self.peak_per_minute - RATE_LIMIT_PER_MINUTE
            ),
        }
        found = [f"{name}: {value}" for name, value in checks.items() if value]
        found += [f"key leak in {where}" for where in self.key_leaks]
        return found


def assert_figures(outcome: Outcome) -> None:
    problems = outcome.problems()
    assert not problems, f"{outcome.scenario} ({outcome.kind}): {problems}"


# ---------------------------------------------------------------- the environment


class Env:
    """Everything one scenario run needs, and the books it is judged by.

    ``emu`` is the emulator in use (reset by the caller); ``keyless`` starts (or returns) an
    emulator with Idempotency-Keys switched off and the same API key. Clients, ledgers and
    proxies made here are closed by :meth:`close`, which also checks for leaked connections and
    scans for the API key everywhere it must never appear.
    """

    def __init__(
        self,
        emu: Emulator,
        kind: str,
        home: Path,
        *,
        seed: int = 0,
        keyless: Callable[[], Emulator] | None = None,
        scenario: str = "",
    ) -> None:
        self.emu = emu
        self.kind = kind
        self.home = home
        self.seed = seed
        self.rng = random.Random(seed)
        self.time = HookedTime()
        self.scenario = scenario
        self.errors: list[BaseException] = []
        self.delivered = 0
        self.foreign: set[str] = set()  # runs started by "another client" in the scenario
        self.planned = 0
        self.posts_after_validation_failure = 0
        self.report: RunReport | None = None
        self._keyless = keyless
        self._emulators = [emu]
        self._apis: list[Api] = []
        self._clients: list[Client] = []
        self._http: list[httpx.Client] = []
        self._ledgers: list[Ledger] = []
        self._proxies: list[FaultProxy] = []
        self._ledger_count = 0
        self._closed: Outcome | None = None
        self._started = time.perf_counter()
        self._expected_runs: int | None = None
        self._expected_rows: int | None = None
        self._consumed_elsewhere = 0
        self.instruments = Instruments().__enter__()
        self.capture = _Capture()
        self._levels = {name: logging.getLogger(name).level for name in LOGGERS}
        logging.getLogger().addHandler(self.capture)
        for name in LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)

    # ---- choices ------------------------------------------------------------------------------

    def pick(self, canonical: Any, *alternatives: Any) -> Any:
        """Seed 0 takes the documented value; other seeds pick among equivalent variants."""
        return canonical if self.seed == 0 else self.rng.choice((canonical, *alternatives))

    # ---- things to test with ------------------------------------------------------------------

    def use_keyless(self) -> Emulator:
        """Switch to the emulator that ignores Idempotency-Keys (reset)."""
        if self._keyless is None:
            raise RuntimeError("this environment has no keyless emulator")
        emu = self._keyless()
        emu.reset()
        self.emu = emu
        if emu not in self._emulators:
            self._emulators.append(emu)
        return emu

    def api(self, **options: Any) -> Api:
        """A client of this run's kind (sync or async) behind one interface, on fake time."""
        api = Api(self.kind, self.emu, self.time, **{"seed": self.seed, "verify": TLS, **options})
        self._apis.append(api)
        return api

    def client(self, **options: Any) -> Client:
        """A sync client (the orchestrator's), on fake time unless ``sleep``/``clock`` are given."""
        settings: dict[str, Any] = {
            "api_key": self.emu.api_key,
            "base_url": self.emu.base_url,
            "sleep": self.time.sleep,
            "clock": self.time.clock,
            "seed": self.seed,
            "verify": TLS,
            **options,
        }
        client = Client(**settings)
        self._clients.append(client)
        return client

    def http_client(self, **options: Any) -> httpx.Client:
        http = httpx.Client(verify=TLS, **options)
        self._http.append(http)
        return http

    def ledger_home(self) -> Path:
        self._ledger_count += 1
        return self.home / f"ledger-{self._ledger_count}"

    def ledger(self, home: Path | None = None) -> Ledger:
        ledger = Ledger(home or self.ledger_home())
        self._ledgers.append(ledger)
        return ledger

    def proxy(self) -> FaultProxy:
        proxy = FaultProxy(self.emu.base_url).start()
        self._proxies.append(proxy)
        return proxy

    # ---- faults ---------------------------------------------------------------------------------

    def fault(self, route: str, kind: str, times: int = 1, **params: Any) -> None:
        self.emu.add_fault(route, kind, times, **params)
        self.planned += times

    def proxy_fault(self, proxy: FaultProxy, kind: str, times: int = 1, **params: Any) -> None:
        proxy.add(kind, times, **params)
        self.planned += times

    def end_open_plan(self) -> None:
        """For a plan that stands for "fail every request" (a bound, not a count): keep what was
        consumed, forget the rest. Resets the emulator, so only for scenarios without runs."""
        consumed = len(self.emu.faults_consumed())
        self.planned -= sum(f["remaining"] for f in self.emu.faults_pending())
        self.emu.reset()
        self._consumed_elsewhere += consumed

    # ---- driving ------------------------------------------------------------------------------

    def expect(self, error: type[E], fn: Callable[..., object], *args: Any, **kwargs: Any) -> E:
        """Call ``fn`` and return the ``error`` it must raise (kept for the key-leak scan)."""
        try:
            fn(*args, **kwargs)
        except error as exc:
            self.errors.append(exc)
            return exc
        raise AssertionError(f"{error.__name__} was not raised by {fn}")

    def enrich(
        self,
        frame: Any,
        workflow_id: str = COMPANY_WF,
        *,
        client: Client,
        ledger: Ledger,
        **options: Any,
    ) -> Any:
        """``enrich`` with an explicit client and ledger; counts the rows delivered."""
        options.setdefault("progress", False)
        job = sixtyfour_frames.start(frame, workflow_id, client=client, ledger=ledger, **options)
        try:
            out = job.result()
        finally:
            self.report = job.report
        self.delivered += job.report.rows_matched + job.report.output_extra
        return out

    def collect(self, api: Api, job_id: str, *, wait: bool = True) -> int:
        """Wait for a run and download its final result, as a caller would; returns its rows."""
        if wait:
            api.wait(job_id)
        rows = int(api.download_results(job_id).num_rows)
        self.delivered += rows
        return rows

    # ---- books --------------------------------------------------------------------------------

    def finish(self, *, runs: int, rows: int) -> Outcome:
        """Check the books (faults, runs, rows) and return the figures of this run."""
        self._expected_runs, self._expected_rows = runs, rows
        for emu in self._emulators:
            assert_faults_consumed(emu)
        for proxy in self._proxies:
            proxy.assert_consumed()
        outcome = self.close()
        assert outcome.runs_created == runs, f"{outcome.runs_created} runs created, not {runs}"
        assert outcome.rows_charged == rows, f"{outcome.rows_charged} rows charged, not {rows}"
        return outcome

    def close(self, *, failure: str = "") -> Outcome:
        """Release everything and compute the figures (safe to call twice)."""
        if self._closed is not None:
            return self._closed
        leaked = sum(_busy_connections(api.client) for api in self._apis)
        leaked += sum(_busy_connections(client) for client in self._clients)
        errors: list[str] = []
        for closer in self._closers():
            try:
                closer()
            except Exception as exc:  # a close that fails is itself a finding
                errors.append(f"{type(exc).__name__}: {exc}")
        leaked += sum(proxy.wait_idle() for proxy in self._proxies)
        for proxy in self._proxies:
            proxy.stop()
        self.instruments.__exit__()
        logging.getLogger().removeHandler(self.capture)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        outcome = self._figures(leaked, failure or "; ".join(errors))
        self._closed = outcome
        return outcome

    def _closers(self) -> Iterator[Callable[[], None]]:
        yield from (api.close for api in self._apis)
        yield from (client.close for client in self._clients)
        yield from (http.close for http in self._http)
        yield from (ledger.close for ledger in self._ledgers)

    def _figures(self, leaked: int, failure: str) -> Outcome:
        runs = [run for emu in self._emulators for run in emu.runs()]
        ours = [run for run in runs if run.job_id not in self.foreign]
        theirs = [run for run in runs if run.job_id in self.foreign]
        books = [emu.ledger() for emu in self._emulators]  # the emulator's charge ledger
        consumed = self._consumed_elsewhere
        consumed += sum(len(emu.faults_consumed()) for emu in self._emulators)
        consumed += sum(len(proxy.consumed()) for proxy in self._proxies)
        return Outcome(
            scenario=self.scenario,
            kind=self.kind,
            seed=self.seed,
            faults_planned=self.planned,
            faults_experienced=consumed,
            runs_expected=self._expected_runs,
            runs_created=sum(b["runs_created"] for b in books) - len(theirs),
            rows_expected=self._expected_rows,
            rows_charged=sum(b["rows_charged"] for b in books) - sum(r.rows_in for r in theirs),
            rows_paid=sum(run.rows_out or 0 for run in ours if run.status == "completed"),
            rows_delivered=self.delivered,
            posts_after_validation_failure=self.posts_after_validation_failure,
            key_leaks=self._key_leaks(),
            attempts=self.instruments.attempts(),
            peak_per_minute=self.instruments.peak_per_minute(),
            leaked_connections=leaked,
            survived=not failure,
            failure=failure,
            seconds=time.perf_counter() - self._started,
        )

    def _key_leaks(self) -> list[str]:
        """Where the API key shows up although it must not: logs, errors, files, other hosts."""
        keys = {emu.api_key for emu in self._emulators}
        found: list[str] = []

        def scan(where: str, text: str | bytes) -> None:
            data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
            if any(key.encode() in data for key in keys):
                found.append(where)

        for text in self.capture.texts:
            scan("a log record", text)
        for error in _with_causes(self.errors):
            scan(f"str/repr of {type(error).__name__}", str(error) + repr(error))
            with contextlib.suppress(Exception):
                scan(f"pickle of {type(error).__name__}", pickle.dumps(error))
        for client in [api.client for api in self._apis] + list(self._clients):
            scan("repr of a client", repr(client) + repr(client.settings))
        for path in self.home.rglob("*"):
            if path.is_file():
                scan(f"ledger file {path.name}", path.read_bytes())
        for emu in self._emulators:
            found += ["a file-host request"] * emu.ledger()["file_requests_with_credentials"]
        return found


def _with_causes(errors: Sequence[BaseException]) -> Iterator[BaseException]:
    for error in errors:
        seen: BaseException | None = error
        while seen is not None:
            yield seen
            seen = seen.__cause__ or seen.__context__


def _busy_connections(client: Client | AsyncClient) -> int:
    """Pooled connections still checked out by a request: each one a leaked connection."""
    http = client._session._client
    pool = getattr(getattr(http, "_transport", None), "_pool", None)
    connections = getattr(pool, "connections", [])
    return sum(1 for c in connections if not c.is_idle() and not c.is_closed())


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Scenario:
    code: str  # the §7 number, e.g. "A01"
    name: str
    run: Callable[[Env], Outcome]
    kinds: tuple[str, ...]
    soak: bool  # False for the slow ones (subprocesses), run by the test suite only
    known_bug: str = ""  # set while the scenario fails on a bug outside the client's files
    seeded: bool = True  # False when no seed changes what it does: the soak runs it once


MATRIX: dict[str, Scenario] = {}


def scenario(
    code: str,
    kinds: tuple[str, ...] = BOTH,
    *,
    soak: bool = True,
    known_bug: str = "",
    seeded: bool = True,
) -> Callable[[Callable[[Env], Outcome]], Callable[[Env], Outcome]]:
    def register(fn: Callable[[Env], Outcome]) -> Callable[[Env], Outcome]:
        MATRIX[fn.__name__] = Scenario(code, fn.__name__, fn, kinds, soak, known_bug, seeded)
        return fn

    return register


def backoff_ok(sleeps: Sequence[float], *, rate_limited: bool = False) -> bool:
    """Each delay lies within the policy's jitter bounds for its retry number."""
    policy = DEFAULT_POLICY
    base, cap = (
        (policy.rate_limit_delay, policy.rate_limit_max_delay)
        if rate_limited
        else (policy.base_delay, policy.max_delay)
    )
    for retry, slept in enumerate(sleeps, start=1):
        ceiling = min(cap, base * 2.0 ** (retry - 1))
        if not ceiling / 2 <= slept <= ceiling:
            return False
    return True


# ================================================================ A. submitting a run


@scenario("A01")
def a01_503_twice_then_200(env: Env) -> Outcome:
    api = env.api()
    failures = env.pick(2, 1, 3, 4)
    env.fault("run", "status", times=failures, code=env.pick(503, 500, 502, 504))
    started = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    sleeps = list(env.time.sleeps)
    assert run_keys(env.emu) == [started.idempotency_key] * (failures + 1)
    assert not started.already_started
    assert len(sleeps) == failures and backoff_ok(sleeps), sleeps
    env.collect(api, started.job_id)
    return env.finish(runs=1, rows=3)


@scenario("A02")
def a02_commit_then_reset(env: Env) -> Outcome:
    api = env.api()
    env.fault("run", "reset_after")
    first = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    assert first.already_started  # the replay of the run the first attempt created
    assert run_keys(env.emu) == [first.idempotency_key] * 2
    # The same at the TCP level: the proxy forwards the POST, then resets instead of answering.
    proxy = env.proxy()
    via_proxy = env.api(base_url=proxy.base_url)
    env.proxy_fault(proxy, "reset_after", path="/workflows/run")
    second = via_proxy.run_workflow(COMPANY_WF, webhook_payload=companies(2, start=10))
    assert second.already_started
    assert env.emu.ledger()["idempotent_replays"] == 2
    env.collect(api, first.job_id)
    env.collect(api, second.job_id)
    return env.finish(runs=2, rows=5)


@scenario("A03")
def a03_commit_then_stall_past_the_read_timeout(env: Env) -> Outcome:
    # The proxy forwards the POST and holds the answer past the client's read timeout; the retry
    # replays. (The emulator-side stall, where the retry meets a 409 first, is
    # tests/test_client.py::test_a_stall_past_the_read_timeout_is_retried_with_the_same_key.)
    proxy = env.proxy()
    api = env.api(base_url=proxy.base_url, timeout=0.25)
    env.proxy_fault(proxy, "stall", path="/workflows/run", seconds=env.pick(0.6, 0.4, 0.8))
    started = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    assert started.already_started
    assert run_keys(env.emu) == [started.idempotency_key] * 2
    env.collect(api, started.job_id)
    return env.finish(runs=1, rows=3)


@scenario("A04")
def a04_truncated_or_malformed_200(env: Env) -> Outcome:
    proxy = env.proxy()
    api = env.api(base_url=proxy.base_url)
    env.proxy_fault(proxy, "truncate", path="/workflows/run", bytes=env.pick(10, 0, 1, 30))
    first = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    env.fault("run", "malformed_json")
    second = api.run_workflow(COMPANY_WF, webhook_payload=companies(2, start=10))
    assert first.already_started and second.already_started
    assert env.emu.ledger()["idempotent_replays"] == 2
    env.collect(api, first.job_id)
    env.collect(api, second.job_id)
    return env.finish(runs=2, rows=5)


@scenario("A04", SYNC)
def a04_unreadable_answers_until_the_retries_run_out(env: Env) -> Outcome:
    """Every attempt answers 200 with a garbled body: the run exists; it is adopted, not re-paid."""
    client, ledger = env.client(max_retries=1), env.ledger()
    env.fault("run", "malformed_json", times=2)
    env.enrich(company_frame(3), client=client, ledger=ledger)
    (submission,) = ledger.submissions(include_superseded=True)
    assert submission.state is S.COMPLETED
    assert submission.job_id == env.emu.runs()[0].job_id
    return env.finish(runs=1, rows=3)


@scenario("A05")
def a05_reset_before_read(env: Env) -> Outcome:
    api = env.api()
    resets = env.pick(1, 2, 3)
    env.fault("run", "reset_before", times=resets)
    started = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    assert not started.already_started
    assert run_keys(env.emu) == [started.idempotency_key] * (resets + 1)
    env.collect(api, started.job_id)
    return env.finish(runs=1, rows=3)


@scenario("A06")
def a06_connection_refused_then_up(env: Env) -> Outcome:
    proxy = env.proxy()
    api = env.api(base_url=proxy.base_url)
    refusals = env.pick(2, 1, 3)
    env.proxy_fault(proxy, "refuse", times=refusals)

    def refused(_: float) -> None:
        proxy.note_refused()  # each refused attempt is followed by one backoff sleep

    env.time.hooks.append(refused)
    started = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    assert not started.already_started
    assert len(env.emu.requests("run")) == 1 and len(env.time.sleeps) == refusals
    env.collect(api, started.job_id)
    return env.finish(runs=1, rows=3)


@scenario("A06", SYNC)
def a06_intent_is_journaled_before_the_first_attempt(env: Env) -> Outcome:
    proxy = env.proxy()
    client, ledger = env.client(base_url=proxy.base_url), env.ledger()
    env.proxy_fault(proxy, "refuse", times=2)
    journal_at_refusals: list[list[tuple[SubmissionState, str]]] = []

    def on_sleep(_: float) -> None:
        if proxy.pending():
            subs = ledger.submissions()
            journal_at_refusals.append([(s.state, s.idempotency_key) for s in subs])
        proxy.note_refused()

    env.time.hooks.append(on_sleep)
    env.enrich(company_frame(3), client=client, ledger=ledger)
    (sent_key,) = run_keys(env.emu)
    assert journal_at_refusals == [[(S.INTENT, sent_key)]] * 2
    return env.finish(runs=1, rows=3)


def _ambiguous_post_without_keys(env: Env, frame: pd.DataFrame) -> tuple[Client, Ledger, str]:
    """Keys off; the POST creates a run, the answer is lost, and the retry never arrives; the
    runs list fails too, so the submission stays AMBIGUOUS (and nothing is resent)."""
    env.use_keyless()
    client, ledger = env.client(max_retries=1), env.ledger()
    env.fault("run", "reset_after")
    env.fault("run", "reset_before")
    env.fault("runs", "status", times=2, code=503)
    env.expect(AmbiguousSubmitError, env.enrich, frame, client=client, ledger=ledger)
    (submission,) = ledger.submissions(include_superseded=True)
    assert submission.state is S.AMBIGUOUS
    assert run_keys(env.emu) == [submission.idempotency_key] * 2  # no fresh-key resubmit
    assert env.emu.ledger()["runs_created"] == 1
    return client, ledger, submission.idempotency_key


@scenario("A07", SYNC)
def a07_keys_disabled_ambiguous_then_adopted_on_resume(env: Env) -> Outcome:
    frame = company_frame(3)
    client, ledger, _ = _ambiguous_post_without_keys(env, frame)
    out = env.enrich(frame, client=client, ledger=ledger)  # resume: the list finds one run
    (run,) = env.emu.runs()
    (submission,) = ledger.submissions()
    assert submission.state is S.COMPLETED and submission.job_id == run.job_id
    assert len(env.emu.requests("run")) == 2  # adopted, not resent
    assert out["domain"].notna().all()  # its _sf_row ids matched ours (verified on download)
    return env.finish(runs=1, rows=3)


@scenario("A07", SYNC)
def a07_two_unexplained_runs_raise_with_candidates(env: Env) -> Outcome:
    frame = company_frame(3)
    client, ledger, _ = _ambiguous_post_without_keys(env, frame)
    ours = env.emu.runs()[0].job_id
    other = env.client().run_workflow(COMPANY_WF, webhook_payload=companies(2, tag="Other"))
    env.foreign.add(other.job_id)
    error = env.expect(AmbiguousSubmitError, env.enrich, frame, client=client, ledger=ledger)
    assert set(error.candidates) == {ours, other.job_id}
    assert ledger.submissions()[0].state is S.AMBIGUOUS
    # The person resolves it by hand: the run is theirs, and its rows are still there.
    env.delivered += client.download_results(ours).num_rows
    return env.finish(runs=1, rows=3)


@scenario("A08")
def a08_409_in_flight_then_replay(env: Env) -> Outcome:
    api = env.api()
    conflicts = env.pick(1, 2, 3)
    in_progress = {"detail": "A request with this Idempotency-Key is in progress"}
    env.fault("run", "status", times=conflicts, code=409, body=in_progress)
    started = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    assert run_keys(env.emu) == [started.idempotency_key] * (conflicts + 1)
    env.collect(api, started.job_id)
    return env.finish(runs=1, rows=3)


@scenario("A08", SYNC)
def a08_two_concurrent_sends_with_one_key(env: Env) -> Outcome:
    """The first send is held by the server; the second meets 409, backs off, then replays."""
    first_client = env.client()
    second_client = env.client(
        sleep=time.sleep, clock=time.monotonic, retry_policy=RetryPolicy(base_delay=0.1)
    )
    env.fault("run", "latency", seconds=0.4)
    key = f"a08-{uuid.uuid4()}"
    payload = companies(3)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            first_client.run_workflow, COMPANY_WF, webhook_payload=payload, idempotency_key=key
        )
        _wait_until(lambda: len(env.emu.requests("run")) == 1)
        second = second_client.run_workflow(
            COMPANY_WF, webhook_payload=payload, idempotency_key=key
        )
        started = first.result(timeout=10)
    assert second.job_id == started.job_id and second.already_started
    assert len(env.emu.requests("run")) >= 3  # at least one 409 before the replay
    env.delivered += first_client.download_results(started.job_id).num_rows
    return env.finish(runs=1, rows=3)


@scenario("A09")
def a09_same_key_different_body(env: Env) -> Outcome:
    api = env.api()
    key = f"a09-{uuid.uuid4()}"
    first = api.run_workflow(COMPANY_WF, webhook_payload=companies(3), idempotency_key=key)
    changed = companies(3, start=1)  # the frame was mutated between attempts
    error = env.expect(
        IdempotencyConflictError,
        api.run_workflow,
        COMPANY_WF,
        webhook_payload=changed,
        idempotency_key=key,
    )
    assert error.status in (400, 409, 422) and "Idempotency-Key" in str(error)
    assert len(env.emu.requests("run")) == 2  # not retried
    if env.kind == "sync":  # the journal freezes the body at intent time
        ledger = env.ledger()
        intent: dict[str, Any] = {
            "fingerprint": "f",
            "workflow_id": COMPANY_WF,
            "scope": "s",
            "record_keys": ["k"],
        }
        ledger.record_intent(body_sha256="a" * 64, **intent)
        env.expect(LedgerError, ledger.record_intent, body_sha256="b" * 64, **intent)
    env.collect(api, first.job_id)
    return env.finish(runs=1, rows=3)


ERROR_SHAPES: tuple[Callable[[str], Any], ...] = (
    lambda d: {"detail": d},
    lambda d: {"detail": [{"loc": ["body", "webhook_payload"], "msg": d, "type": "value_error"}]},
    lambda d: {"error": "Bad Request", "message": d},
    lambda d: {"error": {"code": "bad_request", "message": d}},
)
FINAL_STATUSES: tuple[tuple[int, type[SixtyfourError]], ...] = (
    (400, BadRequestError),
    (401, AuthenticationError),
    (402, InsufficientCreditsError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (413, PayloadTooLargeError),
    (422, RequestValidationError),
)


@scenario("A10")
def a10_final_statuses_are_not_retried(env: Env) -> Outcome:
    api = env.api()
    for number, (code, error_class) in enumerate(FINAL_STATUSES):
        detail = f"planned {code}"
        env.fault("run", "status", code=code, body=ERROR_SHAPES[number % len(ERROR_SHAPES)](detail))
        error = env.expect(error_class, api.run_workflow, COMPANY_WF, webhook_payload=companies(2))
        assert isinstance(error, sixtyfour_frames.APIError)
        assert error.status == code and detail in str(error) and not error.maybe_acted_before
    assert len(env.emu.requests("run")) == len(FINAL_STATUSES)  # one attempt each
    assert env.time.sleeps == []
    return env.finish(runs=0, rows=0)


@scenario("A10", SYNC)
def a10_final_statuses_journal_failed_no_run(env: Env) -> Outcome:
    client, ledger = env.client(), env.ledger()
    for number, (code, error_class) in enumerate(FINAL_STATUSES):
        if code == 413:
            continue  # the orchestrator splits a chunk the API calls too large: see below
        frame = company_frame(2, start=10 * number)
        env.fault("run", "status", code=code, body=ERROR_SHAPES[number % 4](f"planned {code}"))
        env.expect(error_class, env.enrich, frame, client=client, ledger=ledger)
    states = [s.state for s in ledger.submissions(include_superseded=True)]
    assert states == [S.FAILED_NO_RUN] * (len(FINAL_STATUSES) - 1)
    assert len(env.emu.requests("run")) == len(FINAL_STATUSES) - 1
    # 413: one attempt, journaled FAILED_NO_RUN, then the halves are sent as two runs.
    env.fault("run", "status", code=413, body={"detail": "Request Entity Too Large"})
    env.enrich(company_frame(4, start=100), client=client, ledger=ledger)
    states = [s.state for s in ledger.submissions(include_superseded=True)]
    assert states.count(S.FAILED_NO_RUN) == len(FINAL_STATUSES) and states.count(S.COMPLETED) == 2
    return env.finish(runs=2, rows=4)


@scenario("A10")
def a10_a_4xx_after_an_ambiguous_attempt_may_hide_a_run(env: Env) -> Outcome:
    api = env.api()
    env.fault("run", "reset_after")
    env.fault("run", "status", code=env.pick(402, 400), body={"detail": "Insufficient balance"})
    error = env.expect(
        sixtyfour_frames.APIError, api.run_workflow, COMPANY_WF, webhook_payload=companies(3)
    )
    assert error.maybe_acted_before  # a run may exist: not "FAILED_NO_RUN"
    (run,) = env.emu.runs()
    env.collect(api, run.job_id)
    return env.finish(runs=1, rows=3)


@scenario("A10", SYNC)
def a10_a_4xx_after_an_ambiguous_attempt_is_resolved_not_failed(env: Env) -> Outcome:
    client, ledger = env.client(), env.ledger()
    env.fault("run", "reset_after")
    env.fault("run", "status", code=env.pick(402, 400), body={"detail": "Insufficient balance"})
    env.enrich(company_frame(3), client=client, ledger=ledger)
    (submission,) = ledger.submissions(include_superseded=True)  # never FAILED_NO_RUN
    assert submission.state is S.COMPLETED and submission.job_id == env.emu.runs()[0].job_id
    return env.finish(runs=1, rows=3)


@scenario("A11")
def a11_429_backoff_retry_after_and_its_cap(env: Env) -> Outcome:
    api = env.api()
    limited = env.pick(3, 1, 2)
    env.fault("run", "status", times=limited, code=429)
    first = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    assert backoff_ok(env.time.sleeps, rate_limited=True), env.time.sleeps
    env.fault("run", "status", code=429, retry_after="2")
    second = api.run_workflow(COMPANY_WF, webhook_payload=companies(1, start=10))
    assert env.time.sleeps[-1] == 2.0
    env.fault("run", "status", code=429, retry_after_ms="1500")
    third = api.run_workflow(COMPANY_WF, webhook_payload=companies(1, start=20))
    assert env.time.sleeps[-1] == 1.5
    # Above the ceiling: give up at once with the rate-limit error and the job it concerns.
    budget = api.client._session._ctx.budget
    tokens = budget.tokens
    env.fault("live_status", "status", code=429, retry_after="100000")
    error = env.expect(RateLimitError, api.live_status, first.job_id)
    assert error.job_id == first.job_id and error.retry_after == 100000.0
    assert budget.tokens == tokens  # a retry not made costs no budget
    assert len(env.emu.requests("live_status")) == 1
    for started in (first, second, third):
        env.collect(api, started.job_id)
    return env.finish(runs=3, rows=5)


@scenario("A11", SYNC)
def a11_a_retry_after_above_the_cap_keeps_the_intent(env: Env) -> Outcome:
    client, ledger = env.client(), env.ledger()
    env.fault("run", "status", code=429, retry_after="100000")
    env.expect(RateLimitError, env.enrich, company_frame(3), client=client, ledger=ledger)
    (submission,) = ledger.submissions()
    assert submission.state is S.INTENT  # not processed: the same key goes out next time
    env.enrich(company_frame(3), client=client, ledger=ledger)
    assert run_keys(env.emu) == [submission.idempotency_key] * 2
    return env.finish(runs=1, rows=3)


MALFORMED_RETRY_AFTER = ("inf", "nan", "-10", "Fri, 01 Jan 100000 00:00:00 GMT", "")


@scenario("A12")
def a12_malformed_retry_after(env: Env) -> Outcome:
    api, once = env.api(), env.api(max_retries=0)
    jobs = []
    for number, value in enumerate(MALFORMED_RETRY_AFTER):
        env.fault("run", "status", code=429, retry_after=value)
        before = len(env.time.sleeps)
        jobs.append(api.run_workflow(COMPANY_WF, webhook_payload=companies(1, start=number)))
        assert backoff_ok(env.time.sleeps[before:], rate_limited=True)  # our own backoff
        env.fault("run", "status", code=429, retry_after=value)
        error = env.expect(
            RateLimitError, once.run_workflow, COMPANY_WF, webhook_payload=companies(1)
        )
        assert error.status == 429 and "Rate limit exceeded" in str(error)  # not masked
        assert error.retry_after is None
    for started in jobs:
        env.collect(api, started.job_id)
    return env.finish(runs=len(MALFORMED_RETRY_AFTER), rows=len(MALFORMED_RETRY_AFTER))


STORM = 50
BUDGET_ATTEMPTS = STORM + 500 // 5  # one attempt each, plus what the retry budget pays for


def _storm(
    env: Env,
    run: Callable[..., Any],
    keys: Sequence[str],
    loop: asyncio.AbstractEventLoop | None = None,
) -> list[BaseException]:
    """50 concurrent submits (tasks on ``loop`` when given, else threads); what each raised."""
    payloads = [companies(1, start=i, tag="Storm") for i in range(len(keys))]
    if loop is not None:

        async def everyone() -> list[Any]:
            calls = (
                run(COMPANY_WF, webhook_payload=p, idempotency_key=k)
                for p, k in zip(payloads, keys, strict=True)
            )
            return await asyncio.gather(*calls, return_exceptions=True)

        results = loop.run_until_complete(everyone())
    else:
        with ThreadPoolExecutor(len(keys)) as pool:
            futures = [
                pool.submit(run, COMPANY_WF, webhook_payload=p, idempotency_key=k)
                for p, k in zip(payloads, keys, strict=True)
            ]
            results = [f.exception() or f.result() for f in futures]
    errors = [r for r in results if isinstance(r, BaseException)]
    env.errors += errors
    return errors


def _drain_planned_503s(env: Env, count: int) -> None:
    """Consume planned 503s on the run route with bare POSTs (a 503 creates no run)."""
    with httpx.Client(base_url=env.emu.base_url, headers=env.emu.headers) as raw:
        for _ in range(count):
            reply = raw.post("/workflows/run", params={"workflow_id": COMPANY_WF}, json={})
            assert reply.status_code == 503, reply.text


@scenario("A13")
def a13_retry_budget_bounds_a_storm(env: Env) -> Outcome:
    api = env.api()
    loop = api._loop if env.kind == "async" else None
    keys = [f"a13-{i}-{uuid.uuid4()}" for i in range(STORM)]
    env.fault("run", "status", times=BUDGET_ATTEMPTS, code=503)
    errors = _storm(env, api.client.run_workflow, keys, loop)
    assert len(errors) == STORM, errors[:3]
    assert all(isinstance(e, ServerError | TransportError) for e in errors), errors[:3]
    sent = len(env.emu.requests("run"))
    # ≤ 50 + 500/5, not 50 × 6. Under load a pooled keep-alive connection can fail on write
    # before the server sees the attempt: the budget still pays for that retry, so the server
    # may count a few less; those planned 503s are then drained below, not left to the recovery.
    assert STORM <= sent <= BUDGET_ATTEMPTS, (sent, BUDGET_ATTEMPTS)
    _drain_planned_503s(env, BUDGET_ATTEMPTS - sent)
    # Recovered: each caller retries with its own key; no duplicates.
    started = _storm(env, api.client.run_workflow, keys, loop)
    assert started == []
    for run in env.emu.runs():
        env.collect(api, run.job_id, wait=False)  # finished at once (the emulator's pace is 0)
    return env.finish(runs=STORM, rows=STORM)


# Seed-independent in effect (exact counts by design): the client-level storm above carries the
# interleavings that seeds vary, so the soak plays this slower one once.
@scenario("A13", SYNC, seeded=False)
def a13_a_storm_through_the_journal_ends_ambiguous_then_resolves(env: Env) -> Outcome:
    client, ledger = env.client(), env.ledger()
    frames = [company_frame(1, start=i, tag="Storm") for i in range(STORM)]
    # 1. The storm drains the client's retry budget (50 + 100 attempts, not 300).
    env.fault("run", "status", times=BUDGET_ATTEMPTS, code=503)
    keys = [f"drain-{i}" for i in range(STORM)]
    assert len(_storm(env, client.run_workflow, keys)) == STORM
    # 2. Still down: each submit gets one attempt, a 503 after sending, and the runs list fails
    #    too, so every submission ends AMBIGUOUS with a clear error.
    env.fault("run", "status", times=STORM, code=503)
    env.fault("runs", "status", times=STORM, code=503)
    with ThreadPoolExecutor(STORM) as pool:
        futures = [pool.submit(env.enrich, frame, client=client, ledger=ledger) for frame in frames]
        errors = [f.exception() for f in futures]
    env.errors += [e for e in errors if e is not None]
    assert all(isinstance(e, AmbiguousSubmitError) for e in errors), errors[:3]
    assert {s.state for s in ledger.submissions()} == {S.AMBIGUOUS}
    assert len(ledger.submissions()) == STORM
    ambiguous_keys = {s.idempotency_key for s in ledger.submissions()}
    # 3. Recovered: resolving every submission starts each run once, with its own key. (One
    #    call with one record per chunk finds the same 50 submissions: chunks are content-named.)
    everything = pd.concat(frames, ignore_index=True)
    env.enrich(everything, client=client, ledger=ledger, chunk_size=1, max_concurrent_runs=STORM)
    assert {run.idempotency_key for run in env.emu.runs()} == ambiguous_keys
    assert {s.state for s in ledger.submissions()} == {S.COMPLETED}
    return env.finish(runs=STORM, rows=STORM)


@scenario("A13", SYNC)
def a13_a_persistent_outage_is_not_resubmitted_forever(env: Env) -> Outcome:
    client, ledger = env.client(), env.ledger()
    rounds = 3  # §3.3 allows a fresh-key resubmit once no run is proven; not an endless loop
    attempts = rounds * (DEFAULT_POLICY.max_retries + 1)
    env.fault("run", "status", times=attempts, code=503)

    def guard(_: float) -> None:
        if len(env.emu.requests("run")) > attempts:
            raise AssertionError(f"more than {attempts} POSTs while the API is down")

    env.time.hooks.append(guard)
    env.expect(SixtyfourError, env.enrich, company_frame(1), client=client, ledger=ledger)
    env.end_open_plan()
    return env.finish(runs=0, rows=0)


@scenario("A14", SYNC)
def a14_ctrl_c_during_the_post_keeps_the_intent(env: Env) -> Outcome:
    fired: list[str] = []

    def interrupt_once(path: str) -> None:
        if path == "/workflows/run" and path not in fired:
            fired.append(path)
            raise KeyboardInterrupt

    committed = env.http_client(
        event_hooks={"response": [lambda response: interrupt_once(response.request.url.path)]}
    )
    client, ledger = env.client(http_client=committed), env.ledger()
    frame = company_frame(3)
    error = env.expect(
        EnrichInterrupted, env.enrich, frame, client=client, ledger=ledger, on_interrupt="detach"
    )
    (submission,) = ledger.submissions()
    assert submission.state is S.INTENT and run_keys(env.emu) == [submission.idempotency_key]
    assert env.emu.ledger()["runs_created"] == 1 and isinstance(error, KeyboardInterrupt)
    env.enrich(frame, client=client, ledger=ledger)  # resumes: the same key replays the run
    assert env.emu.ledger()["idempotent_replays"] == 1
    # Ctrl-C before the request left: nothing on the server, the same key goes out next time.
    fired.clear()
    unsent = env.http_client(
        event_hooks={"request": [lambda request: interrupt_once(request.url.path)]}
    )
    other, frame2 = env.client(http_client=unsent), company_frame(2, start=10)
    env.expect(
        EnrichInterrupted, env.enrich, frame2, client=other, ledger=ledger, on_interrupt="detach"
    )
    assert env.emu.ledger()["runs_created"] == 1
    env.enrich(frame2, client=client, ledger=ledger)
    return env.finish(runs=2, rows=5)


@scenario("A14", SYNC)
def a14_ctrl_c_during_the_post_cancels_the_run_it_started(env: Env) -> Outcome:
    fired: list[bool] = []

    def interrupt_once(response: httpx.Response) -> None:
        if response.request.url.path == "/workflows/run" and not fired:
            fired.append(True)
            raise KeyboardInterrupt

    http = env.http_client(event_hooks={"response": [interrupt_once]})
    client, ledger = env.client(http_client=http), env.ledger()
    env.fault("run", "stall_run")  # still running when the interrupt is handled
    error = env.expect(
        EnrichInterrupted, env.enrich, company_frame(3), client=client, ledger=ledger
    )
    (run,) = env.emu.runs()
    assert run.job_id in str(error) and error.cancelled
    assert env.emu.ledger()["runs_cancelled"] == 1
    return env.finish(runs=1, rows=3)


@scenario("A14", ASYNC)
def a14_task_cancelled_during_commit_then_stall(env: Env) -> Outcome:
    api = env.api()
    assert isinstance(api.client, AsyncClient)
    env.fault("run", "stall", seconds=0.4)
    key = f"a14-{uuid.uuid4()}"
    payload = companies(3)

    async def cancel_mid_post() -> None:
        assert isinstance(api.client, AsyncClient)
        task = asyncio.ensure_future(
            api.client.run_workflow(COMPANY_WF, webhook_payload=payload, idempotency_key=key)
        )
        while env.emu.ledger()["runs_created"] == 0:  # the server committed the run
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()

    api._loop.run_until_complete(cancel_mid_post())
    # The next call resumes with the same key: 409 while the first is held, then the replay.
    patient = env.api(real_sleep=True, retry_policy=RetryPolicy(base_delay=0.1))
    started = patient.run_workflow(COMPANY_WF, webhook_payload=payload, idempotency_key=key)
    assert started.already_started
    # aenrich: cancelling the task acts like Ctrl-C; with "detach" the run is kept and re-attached.
    client, ledger = env.client(), env.ledger()
    env.fault("run", "stall", seconds=0.4)
    env.fault("run", "stall_run")  # keeps polling, where the cancellation is noticed
    frame = company_frame(2, start=10)
    loop = asyncio.new_event_loop()
    try:

        async def cancel_aenrich() -> None:
            task = asyncio.ensure_future(
                sixtyfour_frames.aenrich(
                    frame, COMPANY_WF, client=client, ledger=ledger, on_interrupt="detach"
                )
            )
            while env.emu.ledger()["runs_created"] < 2:
                await asyncio.sleep(0.01)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        loop.run_until_complete(cancel_aenrich())
        loop.run_until_complete(loop.shutdown_default_executor())  # the worker thread ends
    finally:
        loop.close()
    (submission,) = ledger.submissions()
    assert submission.state is S.SUBMITTED
    env.emu.release(submission.job_id or "")
    env.enrich(frame, client=client, ledger=ledger)
    assert env.report is not None and env.report.runs[0].source == "reattached"
    env.collect(patient, started.job_id)
    return env.finish(runs=2, rows=5)


@scenario("A15")
def a15_keep_alive_race(env: Env) -> Outcome:
    proxy = env.proxy()
    api = env.api(base_url=proxy.base_url)
    api.list_runs()  # leaves a kept-alive connection in the pool
    env.proxy_fault(proxy, "close_on_reuse")
    started = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    assert not started.already_started
    assert len(env.emu.requests("run")) == 1  # the first attempt never arrived; the retry did
    assert env.instruments.attempts()[-1] == 2
    env.collect(api, started.job_id)
    return env.finish(runs=1, rows=3)


# ================================================================ B. polling


def _status_burst(env: Env) -> None:
    burst: list[tuple[str, dict[str, Any]]] = [
        ("status", {"code": 500}),
        ("status", {"code": 502}),
        ("stall", {"seconds": 0.6}),  # past the read timeout
        ("reset_before", {}),
        ("reset_after", {}),
    ]
    if env.seed:
        env.rng.shuffle(burst)
    for kind, params in burst:
        env.fault("live_status", kind, **params)


@scenario("B16")
def b16_a_burst_of_poll_failures(env: Env) -> Outcome:
    api = env.api(timeout=0.3)
    started = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    _status_burst(env)
    assert api.wait(started.job_id).overall_status == "completed"
    assert len(env.emu.requests("run")) == 1  # never resubmitted
    env.collect(api, started.job_id)
    return env.finish(runs=1, rows=3)


@scenario("B16", SYNC)
def b16_a_burst_of_poll_failures_during_enrich(env: Env) -> Outcome:
    client, ledger = env.client(timeout=0.3), env.ledger()
    env.fault("run", "stall_run")  # so that polling meets the burst before completion
    job = sixtyfour_frames.start(
        company_frame(3), COMPANY_WF, client=client, ledger=ledger, progress=False
    )
    _status_burst(env)
    env.emu.release(job.run_ids[0])
    job.result()
    env.delivered += job.report.rows_matched
    assert len(ledger.submissions()) == 1 and len(env.emu.requests("run")) == 1
    return env.finish(runs=1, rows=3)


@scenario("B17")
def b17_404_right_after_create(env: Env) -> Outcome:
    api = env.api()
    started = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    env.fault("live_status", "status", times=env.pick(2, 1, 3), code=404)
    assert api.wait(started.job_id).overall_status == "completed"
    # Past the grace window (15 s of polling at 2, 3, 4.5, 6.75 s) a 404 is an error.
    second = api.run_workflow(COMPANY_WF, webhook_payload=companies(2, start=10))
    env.fault("live_status", "status", times=5, code=404)
    env.expect(NotFoundError, api.wait, second.job_id)
    env.collect(api, started.job_id)
    env.collect(api, second.job_id)
    return env.finish(runs=2, rows=5)


@scenario("B17", SYNC)
def b17_404_right_after_create_during_enrich(env: Env) -> Outcome:
    client, ledger = env.client(), env.ledger()
    env.fault("live_status", "status", times=2, code=404)
    env.enrich(company_frame(3), client=client, ledger=ledger)
    return env.finish(runs=1, rows=3)


STATUS_PATH = "/workflows/runs/"


@scenario("B18")
def b18_unknown_and_misspelt_statuses(env: Env) -> Outcome:
    proxy = env.proxy()
    api = env.api(base_url=proxy.base_url)
    env.fault("run", "stall_run")
    held = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    env.proxy_fault(proxy, "rewrite", path=STATUS_PATH, body=set_status("RUNNING"))
    assert api.live_status(held.job_id).overall_status == "running"
    # Unknown: not terminal, warned about, bounded by the deadline (5 polls in 20 s at 5 s).
    env.proxy_fault(proxy, "rewrite", times=5, path=STATUS_PATH, body=set_status("paused"))
    error = env.expect(WaitTimeoutError, api.wait, held.job_id, timeout=20, poll=5.0)
    assert error.last_status == "paused"
    assert any("unknown status 'paused'" in m for m in env.capture.messages)
    # The two spellings of cancelled, in any case.
    assert api.cancel_run(held.job_id).status == "cancelled"
    env.fault("live_status", "canceled_spelling")
    env.expect(RunCancelledError, api.wait, held.job_id)
    env.proxy_fault(proxy, "rewrite", path=STATUS_PATH, body=set_status("CANCELED"))
    env.expect(RunCancelledError, api.wait, held.job_id)
    # The new terminal status: timeout.
    done = api.run_workflow(COMPANY_WF, webhook_payload=companies(2, start=10))
    env.proxy_fault(proxy, "rewrite", path=STATUS_PATH, body=set_status("timeout"))
    failed = env.expect(RunFailedError, api.wait, done.job_id)
    assert failed.status_reason == "the run timed out on the server"
    env.collect(api, done.job_id)
    return env.finish(runs=2, rows=5)


REGRESSING_STATUSES: tuple[Callable[[bytes], bytes], ...] = (
    rewrite_fields(overall_status="running", overall_progress_percentage=60.0),
    rewrite_fields(
        overall_status="queued",
        overall_progress_percentage=10.0,
        blocks="not-a-list",
        brand_new_field={"x": 1},
        last_updated=...,
        total_blocks=...,
        current_block=...,
    ),
    lambda body: json.dumps({"run_id": json.loads(body)["run_id"]}).encode(),
)


@scenario("B19")
def b19_status_regresses_and_fields_change(env: Env) -> Outcome:
    proxy = env.proxy()
    api = env.api(base_url=proxy.base_url)
    started = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    for rewrite in REGRESSING_STATUSES:
        env.proxy_fault(proxy, "rewrite", path=STATUS_PATH, body=rewrite)
    seen: list[str] = []
    api.wait(started.job_id, on_status=lambda s: seen.append(s.overall_status))
    assert seen == ["running", "queued", "", "completed"]
    env.collect(api, started.job_id)
    return env.finish(runs=1, rows=3)


@scenario("B19", SYNC)
def b19_progress_never_goes_backwards(env: Env) -> Outcome:
    proxy = env.proxy()
    client, ledger = env.client(base_url=proxy.base_url), env.ledger()
    for rewrite in REGRESSING_STATUSES:
        env.proxy_fault(proxy, "rewrite", path=STATUS_PATH, body=rewrite)
    done: list[float] = []
    env.enrich(
        company_frame(3), client=client, ledger=ledger, progress=lambda s: done.append(s.rows_done)
    )
    assert done == sorted(done) and done[-1] == 3
    return env.finish(runs=1, rows=3)


@scenario("B20")
def b20_the_wait_deadline_does_not_cancel(env: Env) -> Outcome:
    api = env.api()
    env.fault("run", "stall_run")
    started = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    error = env.expect(WaitTimeoutError, api.wait, started.job_id, timeout=30)
    assert error.job_id == started.job_id and env.emu.ledger()["runs_cancelled"] == 0
    env.emu.release(started.job_id)
    env.collect(api, started.job_id)
    return env.finish(runs=1, rows=3)


@scenario("B20", SYNC)
def b20_a_timed_out_enrich_keeps_its_run_and_resumes(env: Env) -> Outcome:
    client, ledger = env.client(), env.ledger()
    env.fault("run", "stall_run")
    frame = company_frame(3)
    error = env.expect(
        WaitTimeoutError, env.enrich, frame, client=client, ledger=ledger, timeout=30
    )
    (submission,) = ledger.submissions()
    assert submission.state is S.SUBMITTED and str(submission.job_id) in str(error)
    assert env.emu.ledger()["runs_cancelled"] == 0
    env.emu.release(submission.job_id or "")
    env.enrich(frame, client=client, ledger=ledger)
    assert env.report is not None and env.report.runs[0].source == "reattached"
    return env.finish(runs=1, rows=3)


@scenario("B21")
def b21_poll_cadence_and_the_request_rate(env: Env) -> Outcome:
    api = env.api()
    env.fault("run", "stall_run")
    started = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    env.expect(WaitTimeoutError, api.wait, started.job_id, timeout=120)
    sleeps = env.time.sleeps
    assert sleeps[:5] == [2.0, 3.0, 4.5, 6.75, 10.0] and max(sleeps) <= 10.0
    assert len(env.emu.requests("live_status")) == len(sleeps) + 1
    env.emu.release(started.job_id)
    env.collect(api, started.job_id)
    # The client-side limiter: at most 30 requests in any minute, however fast the caller asks.
    limited = env.api(requests_per_minute=30)
    for _ in range(75):
        limited.list_runs()
    limiter = limited.client._session._ctx.limiter
    assert env.instruments.peak_per_minute(limiter) == 30
    return env.finish(runs=1, rows=3)


@scenario("B21", SYNC)
def b21_many_concurrent_runs_stay_under_the_rate_limit(env: Env) -> Outcome:
    runs = 15
    client, ledger = env.client(requests_per_minute=60), env.ledger()
    env.fault("run", "stall_run", times=runs)
    frame = company_frame(runs)
    options: dict[str, Any] = {"chunk_size": 1, "max_concurrent_runs": runs, "poll": 1.0}
    env.expect(
        WaitTimeoutError, env.enrich, frame, client=client, ledger=ledger, timeout=90, **options
    )
    # 15 runs polled every second would be 900 requests a minute without the limiter.
    assert len(env.emu.requests("live_status")) > runs
    assert env.instruments.peak_per_minute(client._session._ctx.limiter) <= 60
    for run in env.emu.runs():
        env.emu.release(run.job_id)
    env.enrich(frame, client=client, ledger=ledger, **options)
    return env.finish(runs=runs, rows=runs)


# ================================================================ C. cancel


@scenario("C22")
def c22_cancel_an_active_run(env: Env) -> Outcome:
    api = env.api()
    env.fault("run", "stall_run")
    started = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    assert api.cancel_run(started.job_id).status == "cancelled"  # the wire says "canceled"
    polls = len(env.emu.requests("live_status"))
    env.expect(RunCancelledError, api.wait, started.job_id)
    assert len(env.emu.requests("live_status")) == polls + 1  # polling ends at once
    # Policy: partial results are never fetched behind the caller's back; none exist here.
    assert api.download_links(started.job_id) == []
    assert env.emu.ledger()["runs_cancelled"] == 1
    return env.finish(runs=1, rows=3)


@scenario("C22", SYNC)
def c22_cancel_an_enrich_call(env: Env) -> Outcome:
    client, ledger = env.client(), env.ledger()
    env.fault("run", "stall_run")
    job = sixtyfour_frames.start(
        company_frame(3), COMPANY_WF, client=client, ledger=ledger, progress=False
    )
    assert job.cancel() == job.run_ids
    env.expect(RunCancelledError, job.result)
    assert ledger.submissions()[0].state is S.CANCELLED
    assert env.emu.ledger()["runs_cancelled"] == 1
    return env.finish(runs=1, rows=3)


@scenario("C23")
def c23_cancel_after_completion(env: Env) -> Outcome:
    api = env.api()
    started = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    api.wait(started.job_id)
    assert api.cancel_run(started.job_id).status == "completed"
    env.delivered += api.download_results(started.job_id).num_rows  # still downloaded
    assert env.emu.ledger()["runs_cancelled"] == 0
    return env.finish(runs=1, rows=3)


@scenario("C23", SYNC)
def c23_cancel_after_completion_during_enrich(env: Env) -> Outcome:
    client, ledger = env.client(), env.ledger()
    frame = company_frame(3)
    job = sixtyfour_frames.start(frame, COMPANY_WF, client=client, ledger=ledger, progress=False)
    job.cancel()  # the run finished on the server before the cancel arrived
    out = job.result()
    env.delivered += job.report.rows_matched
    assert out["domain"].notna().all() and ledger.submissions()[0].state is S.COMPLETED
    env.enrich(frame, client=client, ledger=ledger)  # served from the ledger, not paid again
    return env.finish(runs=1, rows=3)


@scenario("C24")
def c24_cancel_with_a_lost_answer(env: Env) -> Outcome:
    api = env.api()
    env.fault("run", "stall_run", times=2)
    first = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
    second = api.run_workflow(COMPANY_WF, webhook_payload=companies(2, start=10))
    env.fault("cancel", env.pick("reset_after", "reset_before"))
    assert api.cancel_run(first.job_id).status == "cancelled"
    env.fault("cancel", "malformed_json")
    assert api.cancel_run(second.job_id).status == "cancelled"
    assert len(env.emu.requests("cancel")) == 4  # each retried once
    assert env.emu.ledger()["runs_cancelled"] == 2  # one state change per run
    return env.finish(runs=2, rows=5)


@scenario("C25", SYNC)
def c25_ctrl_c_while_polling(env: Env) -> Outcome:
    client, ledger = env.client(), env.ledger()
    armed: list[bool] = []

    def ctrl_c_once_submitted(_: float) -> None:
        subs = ledger.submissions()
        if armed and subs and subs[0].state is S.SUBMITTED:
            armed.clear()
            raise KeyboardInterrupt

    env.time.hooks.append(ctrl_c_once_submitted)
    # on_interrupt="cancel" (the default): cancelled on the server, journaled, named.
    env.fault("run", "stall_run")
    armed.append(True)
    error = env.expect(
        EnrichInterrupted, env.enrich, company_frame(3), client=client, ledger=ledger
    )
    (job_id,) = error.run_ids
    assert error.cancelled and job_id in str(error)
    assert env.emu.ledger()["runs_cancelled"] == 1 and ledger.submissions()[0].state is S.CANCELLED
    # on_interrupt="detach": the run goes on and the message says how to attach.
    env.fault("run", "stall_run")
    armed.append(True)
    frame = company_frame(2, start=10)
    detached = env.expect(
        EnrichInterrupted, env.enrich, frame, client=client, ledger=ledger, on_interrupt="detach"
    )
    (kept,) = detached.run_ids
    assert not detached.cancelled and kept in str(detached) and "attach(" in str(detached)
    assert env.emu.ledger()["runs_cancelled"] == 1
    env.emu.release(kept)
    env.enrich(frame, client=client, ledger=ledger)
    assert env.report is not None and env.report.runs[0].source == "reattached"
    return env.finish(runs=2, rows=5)


SIGTERM_CHILD = """
import sys
import pandas as pd
import sixtyfour_frames
from sixtyfour_frames import Client
from sixtyfour_frames._ledger import Ledger

home, workflow_id, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with Client() as client, Ledger(home) as ledger:  # the key comes from SIXTYFOUR_API_KEY
    frame = pd.DataFrame({"company_name": names})
    sixtyfour_frames.enrich(
        frame, workflow_id, client=client, ledger=ledger, progress=False, poll=0.05
    )
"""


@scenario("C25", SYNC, soak=False)
def c25_sigterm_while_polling_is_not_intercepted(env: Env) -> Outcome:
    env.fault("run", "stall_run")
    home = env.ledger_home()
    names = [f"Company {i}" for i in range(3)]
    child_env = {
        **os.environ,
        "SIXTYFOUR_API_KEY": env.emu.api_key,
        "SIXTYFOUR_BASE_URL": env.emu.base_url,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_CHILD, str(home), COMPANY_WF, *names],
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_until(lambda: len(env.emu.requests("live_status")) >= 2, timeout=60)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == -signal.SIGTERM, stderr.decode()[-2000:]
    ledger = env.ledger(home)
    (submission,) = ledger.submissions()
    assert submission.state is S.SUBMITTED and env.emu.ledger()["runs_cancelled"] == 0
    env.emu.release(submission.job_id or "")
    env.enrich(pd.DataFrame({"company_name": names}), client=env.client(), ledger=ledger)
    assert env.report is not None and env.report.runs[0].source == "reattached"
    return env.finish(runs=1, rows=3)


# ================================================================ D. list and reconcile


@scenario("D26")
def d26_a_list_with_a_failure_and_a_duplicate(env: Env) -> Outcome:
    proxy = env.proxy()
    api = env.api(base_url=proxy.base_url)
    jobs = [api.run_workflow(COMPANY_WF, webhook_payload=companies(1, start=i)) for i in range(3)]
    env.fault("runs", "status", code=env.pick(500, 502, 503))
    env.proxy_fault(
        proxy, "rewrite", path="/workflows/runs?", status=200, body=duplicate_first_item
    )
    listed = api.list_runs(workflow_id=COMPANY_WF)
    assert sorted(r.job_id for r in listed) == sorted(j.job_id for j in jobs)
    for started in jobs:
        env.collect(api, started.job_id)
    return env.finish(runs=3, rows=3)


@scenario("D26", SYNC)
def d26_reconciliation_is_unchanged_by_list_faults(env: Env) -> Outcome:
    env.use_keyless()
    proxy = env.proxy()
    client, ledger = env.client(base_url=proxy.base_url, max_retries=1), env.ledger()
    env.fault("run", "reset_after")
    env.fault("run", "reset_before")
    env.fault("runs", "status", code=500)
    env.proxy_fault(
        proxy, "rewrite", path="/workflows/runs?", status=200, body=duplicate_first_item
    )
    env.enrich(company_frame(3), client=client, ledger=ledger)  # the one run is adopted
    (submission,) = ledger.submissions()
    assert submission.state is S.COMPLETED and submission.job_id == env.emu.runs()[0].job_id
    return env.finish(runs=1, rows=3)


def _foreign_run_in_the_window(env: Env, rows: list[dict[str, Any]]) -> tuple[Client, Ledger]:
    env.use_keyless()
    client, ledger = env.client(max_retries=1), env.ledger()
    other = env.client().run_workflow(COMPANY_WF, webhook_payload=rows)
    env.foreign.add(other.job_id)
    env.fault("run", "reset_before", times=2)  # our POST: sent, never acted on, outcome unknown
    return client, ledger


@scenario("D27", SYNC)
def d27_another_clients_run_is_never_adopted(env: Env) -> Outcome:
    foreign_rows = [{"company_name": "Other Co", ROW_KEY: "k" + "f" * 20}]  # another user's key
    client, ledger = _foreign_run_in_the_window(env, foreign_rows)
    frame = company_frame(3)
    env.expect(JoinError, env.enrich, frame, client=client, ledger=ledger)
    # Calling again must not pretend: either our records get their own run, or it raises again.
    try:
        out = env.enrich(frame, client=client, ledger=ledger)
    except SixtyfourError as error:
        env.errors.append(error)
        return env.finish(runs=0, rows=0)
    assert out["domain"].notna().all(), "the foreign run was adopted: our rows got nothing"
    return env.finish(runs=1, rows=3)


@scenario("D27", SYNC)
def d27_an_unverifiable_run_is_not_adopted(env: Env) -> Outcome:
    client, ledger = _foreign_run_in_the_window(env, [{"company_name": "Other Co"}])
    error = env.expect(SixtyfourError, env.enrich, company_frame(3), client=client, ledger=ledger)
    (submission,) = ledger.submissions()
    # Whatever the fix, the run it cannot verify is not recorded as this chunk's results, and
    # the error says why (not "the workflow dropped the row key", which it did not).
    assert submission.state is not S.COMPLETED, f"adopted blindly: {error!r}"
    assert isinstance(error, AmbiguousSubmitError) or "adopted" in str(error), repr(error)
    return env.finish(runs=0, rows=0)


# ================================================================ E. results download


def _finished(api: Api, rows: int = 120, workflow_id: str = COMPANY_WF, **options: Any) -> str:
    started = api.run_workflow(workflow_id, webhook_payload=companies(rows), **options)
    api.wait(started.job_id)
    return str(started.job_id)


@scenario("E28")
def e28_truncated_downloads(env: Env) -> Outcome:
    api = env.api()
    job_id = _finished(api)
    cuts = env.pick(2, 1, 3)
    env.fault("file", "truncate", times=cuts, bytes=env.pick(200, 0, 5000))
    assert api.download_results(job_id).num_rows == 120
    assert env.emu.ledger()["files_truncated"] == cuts
    # A short body that is still well-formed CSV, then one cut inside a quoted value.
    proxy = env.proxy()
    via_proxy = env.api(base_url=proxy.base_url)
    env.proxy_fault(proxy, "rewrite", path="/files/", body=drop_last_records(env.pick(10, 1, 60)))
    env.proxy_fault(proxy, "rewrite", path="/files/", body=cut_mid_record)
    table = via_proxy.download_results(job_id)
    assert table.num_rows == 120 and table.column("company_name")[119].as_py() == "Company 119"
    env.delivered += table.num_rows
    return env.finish(runs=1, rows=120)


@scenario("E28", SYNC)
def e28_truncated_downloads_during_enrich(env: Env) -> Outcome:
    client, ledger = env.client(), env.ledger()
    env.fault("file", "truncate", times=2, bytes=300)
    out = env.enrich(company_frame(120), client=client, ledger=ledger)
    assert out["domain"].notna().all()
    assert not [p for p in ledger.home.rglob("*") if ".tmp" in p.name]  # renamed atomically
    return env.finish(runs=1, rows=120)


@scenario("E29")
def e29_expired_or_missing_urls(env: Env) -> Outcome:
    api = env.api()
    job_id = _finished(api)
    kinds = ["expire_url", "null_url"]
    if env.seed:
        env.rng.shuffle(kinds)
    for kind in kinds:
        env.fault("download_links", kind)
        assert api.download_results(job_id).num_rows == 120
    env.delivered += 120
    refused = [r for r in env.emu.requests("file") if not r.carried_credentials]
    assert len(env.emu.requests("file")) == len(refused) == 3  # 1 expired (403), 2 whole
    assert len(env.emu.requests("download_links")) == 4
    return env.finish(runs=1, rows=120)


@scenario("E30")
def e30_files_inline_results_and_formats(env: Env) -> Outcome:
    api = env.api()
    several = _finished(api, 40, FILTER_WF)
    files = api.download_links(several)
    blocks = [f.block_number for f in files]
    assert len(files) >= 2 and blocks == sorted(blocks)  # block order
    final = api.download_results(several)
    assert final.num_rows == files[-1].row_count  # the last block is the workflow's output
    env.delivered += final.num_rows
    inline = _finished(api, 3)
    before = len(env.emu.requests("file"))
    assert env.collect(api, inline) == 3 and len(env.emu.requests("file")) == before
    big = _finished(api, save_json=True)
    env.fault("file", "bom")
    table = api.download_results(big)
    assert table.column_names[0] == "company_name"  # the BOM is not part of the first name
    assert any("\n" in (d or "") for d in table.column("description").to_pylist())
    as_json = api.download_results(big, format="json")
    assert as_json.column("description").to_pylist() == table.column("description").to_pylist()
    env.delivered += table.num_rows
    env.expect(BadRequestError, api.download_results, inline, format="json")  # no save_json
    env.fault("run", "stall_run")
    held = api.run_workflow(COMPANY_WF, webhook_payload=companies(2, start=500))
    assert api.download_links(held.job_id) == []
    env.expect(ResultDownloadError, api.download_results, held.job_id)
    env.emu.release(held.job_id)
    env.collect(api, held.job_id)
    return env.finish(runs=4, rows=40 + 3 + 120 + 2)


def _reorder_drop_and_add(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stranger = {**rows[0], ROW_KEY: "k" + "0" * 20, "company_name": "Never Sent"}
    return [{**row, "score": len(row["company_name"])} for row in [*rows[:0:-1], stranger]]


def _fail_every_third_row(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**row, "email": None, "error": "no email found"}
        if number % 3 == 0
        else {**row, "email": f"person{number}@example.com", "error": None}
        for number, row in enumerate(rows)
    ]


@scenario("E31", SYNC)
def e31_results_reordered_missing_and_extra(env: Env) -> Outcome:
    workflow_id = env.emu.add_workflow("e31_reorder_drop_add", [_reorder_drop_and_add])
    client, ledger = env.client(), env.ledger()
    frame = company_frame(10)
    out = env.enrich(frame, workflow_id, client=client, ledger=ledger)
    report = env.report
    assert report is not None
    assert (report.rows_matched, report.rows_missing, report.output_extra) == (9, 1, 1)
    assert report.rows_matched + report.rows_missing == len(frame)
    assert out["company_name"].tolist() == frame["company_name"].tolist()  # caller order
    scores = out["score"].tolist()
    assert pd.isna(scores[0]) and scores[1:] == [len(n) for n in frame["company_name"][1:]]
    return env.finish(runs=1, rows=10)


@scenario("E32", SYNC)
def e32_per_row_failures_are_kept(env: Env) -> Outcome:
    workflow_id = env.emu.add_workflow("e32_row_failures", [_fail_every_third_row])
    client, ledger = env.client(), env.ledger()
    out = env.enrich(company_frame(9), workflow_id, client=client, ledger=ledger, errors="keep")
    assert len(out) == 9  # no row dropped
    assert out["error"].tolist()[::3] == ["no email found"] * 3
    assert out["email"].isna().sum() == 3 and set(out["sixtyfour_status"]) == {"ok"}
    return env.finish(runs=1, rows=9)


# ================================================================ H. bad input


@dataclass(frozen=True)
class Case:
    """One row of the §6 table: a frame, and either its exact wire form or a rejection."""

    name: str
    frame: Callable[[], Any]
    column: str | None = None  # the rejected column (None: a frame-level rejection)
    wire: Callable[[list[dict[str, Any]], str], None] | None = None  # checks records, raw body
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rejected(self) -> bool:
        return self.wire is None


def _with_names(count: int, **columns: Any) -> pd.DataFrame:
    return pd.DataFrame({"company_name": [f"Company {i}" for i in range(count)], **columns})


def _values(column: str, *expected: Any) -> Callable[[list[dict[str, Any]], str], None]:
    def check(records: list[dict[str, Any]], body: str) -> None:
        got = [record[column] for record in records]
        assert got == list(expected), (got, expected)
        for value, want in zip(got, expected, strict=True):
            assert type(value) is type(want), (value, want)

    return check


def _text(*fragments: str) -> Callable[[list[dict[str, Any]], str], None]:
    def check(records: list[dict[str, Any]], body: str) -> None:
        missing = [f for f in fragments if f not in body]
        assert not missing, (missing, body[:500])

    return check


def _all(*checks: Callable[[list[dict[str, Any]], str], None]) -> Callable[..., None]:
    def check(records: list[dict[str, Any]], body: str) -> None:
        for one in checks:
            one(records, body)

    return check


class _Opaque:
    pass


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


SERIALIZER_CASES: tuple[Case, ...] = (
    Case(
        "missing values are null",
        lambda: _with_names(4, x=pd.Series([np.nan, None, pd.NA, pd.NaT], dtype=object)),
        wire=_values("x", None, None, None, None),
    ),
    Case(
        "polars null and NaN are null",
        lambda: pl.DataFrame({"company_name": ["a", "b"], "x": [None, float("nan")]}),
        wire=_values("x", None, None),
    ),
    Case("+inf is rejected", lambda: _with_names(2, x=[1.0, math.inf]), column="x"),
    Case("-inf is rejected", lambda: _with_names(2, x=[-math.inf, 1.0]), column="x"),
    Case(
        "polars inf is rejected",
        lambda: pl.DataFrame({"company_name": ["a"], "x": [math.inf]}),
        column="x",
    ),
    Case(
        "floats round-trip",
        lambda: _with_names(4, x=[0.1 + 0.2, 1e-12, -0.0, 1 / 3]),
        wire=_all(
            _values("x", 0.1 + 0.2, 1e-12, -0.0, 1 / 3),
            _text("0.30000000000000004", "1e-12", "-0.0", "0.3333333333333333"),
        ),
    ),
    Case(
        "float32 as float32",
        lambda: _with_names(1, x=np.array([0.1], dtype=np.float32)),
        wire=_values("x", 0.1),  # not 0.10000000149011612
    ),
    Case(
        "numpy ints and bools",
        lambda: _with_names(2, n=np.array([5, -7], dtype=np.int64), b=np.array([True, False])),
        wire=_all(_values("n", 5, -7), _values("b", True, False)),
    ),
    Case(
        "ints above 2**53 stay exact",
        lambda: _with_names(1, n=[2**53 + 1]),
        wire=_all(_values("n", 2**53 + 1), _text("9007199254740993")),
    ),
    Case(
        "decimals as exact strings",
        lambda: _with_names(1, d=[Decimal("1.10")]),
        wire=_values("d", "1.10"),
    ),
    Case("a NaN decimal is rejected", lambda: _with_names(1, d=[Decimal("NaN")]), column="d"),
    Case(
        "tz-aware datetimes keep their offset",
        lambda: _with_names(1, t=[pd.Timestamp("2024-01-01 12:00", tz="America/New_York")]),
        wire=_values("t", "2024-01-01T12:00:00.000000-05:00"),
    ),
    Case(
        "naive datetimes are rejected",
        lambda: _with_names(1, t=[pd.Timestamp("2024-01-01 12:00")]),
        column="t",
    ),
    Case(
        "naive datetimes as UTC on request",
        lambda: _with_names(1, t=[pd.Timestamp("2024-01-01 12:00")]),
        wire=_values("t", "2024-01-01T12:00:00.000000+00:00"),
        options={"naive_datetimes": "utc"},
    ),
    Case(
        "nanoseconds are kept",
        lambda: _with_names(2, t=[pd.Timestamp("2024-01-01 12:00:00.123456789", tz="UTC"), pd.NaT]),
        wire=_values("t", "2024-01-01T12:00:00.123456789+00:00", None),
    ),
    Case(
        "timedeltas and dates",
        lambda: _with_names(
            1, td=[timedelta(hours=26, seconds=0.5)], d=pd.Series([date(2024, 1, 1)], dtype=object)
        ),
        wire=_all(_values("td", "PT93600.5S"), _values("d", "2024-01-01")),
    ),
    Case(
        "polars durations and dates",
        lambda: pl.DataFrame(
            {"company_name": ["a"], "td": [timedelta(seconds=1)], "d": [date(2024, 1, 1)]}
        ),
        wire=_all(_values("td", "PT1S"), _values("d", "2024-01-01")),
    ),
    Case("periods are rejected", lambda: _with_names(1, p=[pd.Period("2024-01")]), column="p"),
    Case(
        "intervals are rejected",
        lambda: _with_names(1, i=pd.Series([pd.Interval(0, 1)], dtype=object)),
        column="i",
    ),
    Case(
        "int categories stay ints",
        lambda: _with_names(3, c=pd.Categorical([1, 2, None])),
        wire=_values("c", 1, 2, None),
    ),
    Case(
        "nested lists, dicts and arrays",
        lambda: _with_names(1, v=pd.Series([{"a": [1, 2], "b": np.array([3, 4])}], dtype=object)),
        wire=_values("v", {"a": [1, 2], "b": [3, 4]}),
    ),
    Case(
        "polars lists and structs",
        lambda: pl.DataFrame({"company_name": ["a"], "v": [[1, 2]], "s": [{"x": 1}]}),
        wire=_all(_values("v", [1, 2]), _values("s", {"x": 1})),
    ),
    Case(
        "nesting deeper than 32 is rejected",
        lambda: _with_names(1, v=pd.Series([_nested(40)], dtype=object)),
        column="v",
    ),
    Case(
        "bytes are rejected",
        lambda: _with_names(1, b=pd.Series([b"\xff"], dtype=object)),
        column="b",
    ),
    Case(
        "polars binary is rejected",
        lambda: pl.DataFrame({"company_name": ["a"], "b": [b"\xff"]}),
        column="b",
    ),
    Case(
        "lone surrogates are rejected",
        lambda: _with_names(1, s=pd.Series(["bad \ud800 text"], dtype=object)),
        column="s",
    ),
    Case(
        "NUL and emoji go as UTF-8",
        lambda: _with_names(1, s=["a\x00b 🚀"]),
        wire=_all(_values("s", "a\x00b 🚀"), _text("\\u0000", "🚀")),
    ),
    Case("complex is rejected", lambda: _with_names(1, z=[1 + 2j]), column="z"),
    Case("sets are rejected", lambda: _with_names(1, z=pd.Series([{1}], dtype=object)), column="z"),
    Case(
        "objects are rejected",
        lambda: _with_names(1, z=pd.Series([_Opaque()], dtype=object)),
        column="z",
    ),
    Case(
        "non-string column names are stringified",
        lambda: pd.DataFrame({"company_name": ["a"], 0: [7]}),
        wire=_values("0", 7),
    ),
    Case(
        "0 and '0' collide",
        lambda: pd.DataFrame({"company_name": ["a"], 0: [1], "0": [2]}),
        column="0",
    ),
    Case(
        "duplicate column names are rejected",
        lambda: pd.DataFrame([["a", 1, 2]], columns=["company_name", "x", "x"]),
        column="x",
    ),
    Case(
        "a duplicate MultiIndex index is fine",
        lambda: pd.DataFrame(
            {"company_name": ["a", "b", "c"]},
            index=pd.MultiIndex.from_tuples([("x", 1), ("x", 1), ("y", 2)]),
        ),
        wire=_values("company_name", "a", "b", "c"),
    ),
    Case(
        "MultiIndex columns are rejected",
        lambda: pd.DataFrame(
            [["a", 1]], columns=pd.MultiIndex.from_tuples([("company_name", ""), ("x", "y")])
        ),
    ),
    Case("an empty frame is rejected", lambda: _with_names(0)),
    Case(
        "zero columns and some rows are rejected",
        lambda: pd.DataFrame(index=range(3)),
    ),
    Case(
        "mixed object columns go value by value",
        lambda: _with_names(5, m=pd.Series([1, "a", 2.5, None, True], dtype=object)),
        wire=_values("m", 1, "a", 2.5, None, True),
    ),
    Case(
        "a LazyFrame is collected",
        lambda: pl.DataFrame({"company_name": ["a", "b"]}).lazy(),
        wire=_values("company_name", "a", "b"),
    ),
)


def h41_serializer_case(env: Env, case: Case) -> None:
    """One table row through ``enrich``: either the exact wire form or an error, and no POST."""
    client, ledger = env.client(), env.ledger()
    posts_before = len(env.emu.requests("run"))
    if case.rejected:
        error = env.expect(
            SerializationError,
            env.enrich,
            case.frame(),
            client=client,
            ledger=ledger,
            **case.options,
        )
        if case.column is not None:
            assert error.column == case.column, (case.name, error.column, str(error))
        env.posts_after_validation_failure += len(env.emu.requests("run")) - posts_before
        return
    assert case.wire is not None
    env.enrich(case.frame(), client=client, ledger=ledger, **case.options)
    request = env.emu.requests("run")[-1]
    body = request.body.decode("utf-8")
    records = json.loads(body, object_pairs_hook=detect_duplicate_keys)["webhook_payload"]
    case.wire(records, body)


@scenario("H41", SYNC, seeded=False)
def h41_the_serializer_table(env: Env) -> Outcome:
    for case in SERIALIZER_CASES:
        h41_serializer_case(env, case)
    runs = sum(1 for case in SERIALIZER_CASES if not case.rejected)
    rows = sum(len(_eager(case.frame())) for case in SERIALIZER_CASES if not case.rejected)
    return env.finish(runs=runs, rows=rows)


def _eager(frame: Any) -> Any:
    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame


def _random_doubles(rng: random.Random, count: int) -> list[float]:
    specials = [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1 + 0.2]
    bits = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(count)]
    return specials + [value for value in bits if math.isfinite(value)]


def _same_double(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b)


@scenario("H42", SYNC)
def h42_round_trip_with_duplicate_key_detection(env: Env) -> Outcome:
    doubles = _random_doubles(env.rng, 40)
    big_ints = [env.rng.randrange(-(2**63), 2**63) for _ in doubles]
    texts = [
        "".join(chr(env.rng.choice([65, 0xE9, 0x4E2D, 0x1F680])) for _ in range(5)) for _ in doubles
    ]
    names = [f"Company {i}" for i in range(len(doubles))]
    frames = [
        pd.DataFrame({"company_name": names, "x": doubles, "n": big_ints, "s": texts}),
        pl.DataFrame({"company_name": names, "x": doubles, "n": big_ints, "s": texts}),
    ]
    client = env.client()
    for frame in frames:
        env.enrich(frame, client=client, ledger=env.ledger())
        body = env.emu.requests("run")[-1].body.decode("utf-8")
        records = json.loads(body, object_pairs_hook=detect_duplicate_keys)["webhook_payload"]
        assert all(_same_double(r["x"], x) for r, x in zip(records, doubles, strict=True))
        assert [r["n"] for r in records] == big_ints and [r["s"] for r in records] == texts
    return env.finish(runs=2, rows=2 * len(doubles))


LARGE_ROWS = 10_000
LARGE_CHUNK = 2_500


@scenario("H43", SYNC, seeded=False)
def h43_a_large_frame_in_chunks_resumes_only_what_is_missing(env: Env) -> Outcome:
    frame = pd.DataFrame(
        {
            "company_name": [f"Company {i}" for i in range(LARGE_ROWS)],
            "n": range(LARGE_ROWS),
            "x": [i / 7 for i in range(LARGE_ROWS)],
        }
    )
    posts: list[str] = []

    def ctrl_c_at_the_third_post(request: httpx.Request) -> None:
        if request.url.path == "/workflows/run":
            posts.append(request.url.path)
            if len(posts) == 3:
                raise KeyboardInterrupt  # killed mid-way, before the third chunk left

    http = env.http_client(event_hooks={"request": [ctrl_c_at_the_third_post]})
    interrupted, ledger = env.client(http_client=http), env.ledger()
    started = time.perf_counter()
    options: dict[str, Any] = {"chunk_size": LARGE_CHUNK, "on_interrupt": "detach"}
    env.expect(EnrichInterrupted, env.enrich, frame, client=interrupted, ledger=ledger, **options)
    states = sorted(s.state for s in ledger.submissions())
    assert states == sorted([S.SUBMITTED, S.SUBMITTED, S.INTENT]), states  # each chunk journaled
    out = env.enrich(frame, client=env.client(), ledger=ledger, **options)
    elapsed = time.perf_counter() - started
    assert env.report is not None
    assert env.report.rows_reattached == 2 * LARGE_CHUNK + LARGE_CHUNK  # two runs + the intent
    assert env.report.rows_sent == LARGE_CHUNK  # only the chunk never started
    assert len(env.emu.requests("run")) == 4 and out["domain"].notna().all()
    assert elapsed < 60, f"{LARGE_ROWS} rows took {elapsed:.1f} s"
    return env.finish(runs=LARGE_ROWS // LARGE_CHUNK, rows=LARGE_ROWS)


# ================================================================ I. the oracle


_CONTRACT_PATHS: tuple[tuple[str, str, str], ...] = (
    ("POST", r"^/workflows/run$", "/workflows/run"),
    ("GET", r"^/workflows/runs$", "/workflows/runs"),
    ("GET", r"^/workflows/runs/[^/]+/live_status$", "/workflows/runs/{run_id}/live_status"),
    (
        "GET",
        r"^/workflows/runs/[^/]+/results/download-links$",
        "/workflows/runs/{run_id}/results/download-links",
    ),
    ("POST", r"^/workflows/cancel$", "/workflows/cancel"),
)


def _contract_template(method: str, path: str) -> str | None:
    for wanted, pattern, template in _CONTRACT_PATHS:
        if wanted == method and re.match(pattern, path):
            return template
    return None


@scenario("I44")
def i44_every_answer_the_client_reads_matches_the_contract(env: Env) -> Outcome:
    from tests.emulator._support import Schemas

    schemas = Schemas()
    checked: list[str] = []

    def validate(response: httpx.Response) -> None:
        template = _contract_template(response.request.method, response.request.url.path)
        if template is not None and response.status_code == 200:
            schemas.check_response(template, response.request.method, response.json())
            checked.append(template)

    async def async_hook(response: httpx.Response) -> None:
        await response.aread()
        validate(response)

    def sync_hook(response: httpx.Response) -> None:
        response.read()
        validate(response)

    if env.kind == "async":
        http: Any = httpx.AsyncClient(verify=TLS, event_hooks={"response": [async_hook]})
    else:
        http = env.http_client(event_hooks={"response": [sync_hook]})
    api = env.api(http_client=http)
    try:
        env.fault("run", "stall_run")
        held = api.run_workflow(COMPANY_WF, webhook_payload=companies(3))
        api.live_status(held.job_id)
        api.cancel_run(held.job_id)
        started = api.run_workflow(COMPANY_WF, webhook_payload=companies(120))
        api.list_runs(workflow_id=COMPANY_WF)
        env.collect(api, started.job_id)
    finally:
        if env.kind == "async":
            api._loop.run_until_complete(http.aclose())
    assert set(checked) == {template for _, _, template in _CONTRACT_PATHS}
    return env.finish(runs=2, rows=123)


# The moto-style double run (I45) is a test of its own: tests/test_faults.py runs these
# scenarios again against a subprocess emulator.
DOUBLE_RUN = (
    "a01_503_twice_then_200",
    "a02_commit_then_reset",
    "a05_reset_before_read",
    "a11_429_backoff_retry_after_and_its_cap",
    "b17_404_right_after_create",
    "c24_cancel_with_a_lost_answer",
    "e29_expired_or_missing_urls",
)


# ---------------------------------------------------------------- helpers


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the scenario's precondition")
        time.sleep(0.01)


def play(fn: Callable[[Env], Outcome], env: Env) -> Outcome:
    """Run one scenario; on failure the environment is still closed (and the error re-raised)."""
    try:
        return fn(env)
    finally:
        env.close()


class Playground:
    """What the soak needs to run the matrix outside pytest: emulators and a scratch directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.emu = Emulator(seed=0, api_key="FAKE_SECRET-" + uuid.uuid4().hex)
        self._keyless: Emulator | None = None

    def __enter__(self) -> Playground:
        self.emu.start()
        return self

    def keyless(self) -> Emulator:
        if self._keyless is None:
            self._keyless = Emulator(idempotency=False, api_key=self.emu.api_key).start()
        return self._keyless

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.emu.stop()
        if self._keyless is not None:
            self._keyless.stop()


def soak_case(playground: Playground, entry: Scenario, kind: str, seed: int, index: int) -> Outcome:
    """One scenario run for the soak: never raises; a failure is an outcome."""
    playground.emu.reset()
    home = playground.home / f"{index:05d}-{entry.name}-{kind}"
    home.mkdir(parents=True)
    env = Env(
        playground.emu,
        kind,
        home,
        seed=seed,
        keyless=playground.keyless,
        scenario=entry.name,
    )
    try:
        return entry.run(env)
    except (Exception, EnrichInterrupted) as error:  # a plain Ctrl-C still stops the soak
        lines = traceback.format_exception_only(type(error), error)
        return env.close(failure="".join(lines).strip()[:500] or type(error).__name__)
    finally:
        env.close()


__all__ = [
    "BOTH",
    "MATRIX",
    "SERIALIZER_CASES",
    "Case",
    "Env",
    "Outcome",
    "Playground",
    "Scenario",
    "assert_figures",
    "h41_serializer_case",
    "play",
    "soak_case",
]
