"""Credits are never wasted: the emulator's charge ledger is the oracle.

Every scenario asserts how many runs the emulator created and how many rows it charged, and what
the client's ledger recorded:

1. the same call twice (pandas and Polars);
2. a SIGKILL at each of the eight crash points of ``notes/reliability.md`` §7 F, then a re-run;
3. two processes starting the same call at once; a crash in the middle of a refresh;
4. the row cache (10,000 rows, 2,500 distinct, then 100 new ones);
5. responses lost after the run was created, with and without Idempotency-Key support, another
   client's runs in the reconcile window, a persistent outage;
6. Ctrl-C (cancel and detach policies, during polling, while starting runs, during the POST) and
   async cancellation; a cancel that loses the race against completion;
7. ``cache=False`` / ``refresh=True``, ``max_concurrent_runs``, a 413 split, ``attach``;
8. a call that ends in an error still closes the client and ledger it opened.

The crash scenarios run ``tests/crash_child.py`` in child processes (forked by its ``--serve``
mode, so each starts in milliseconds) against the session's thread-mode emulator, each with its
own ledger home. Everything else runs in-process with injected time.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pandas as pd
import polars as pl
import pytest

import sixtyfour_frames
from sixtyfour_frames import (
    AmbiguousSubmitError,
    Client,
    EnrichInterrupted,
    JoinError,
)
from sixtyfour_frames._ledger import Ledger, SubmissionState
from sixtyfour_frames._payload import ROW_KEY
from sixtyfour_frames._progress import ProgressSnapshot
from sixtyfour_frames.emulator import Emulator, assert_faults_consumed
from tests import crash_child
from tests.conftest import FakeTime

S = SubmissionState
WF = Emulator.workflow_id("company_enrichment")
CHILD_SCRIPT = Path(__file__).with_name("crash_child.py")
CHILD_TIMEOUT_S = 60.0
CHUNKS = -(-crash_child.ROWS // crash_child.CHUNK_SIZE)  # ceil: runs one clean call makes
TEMP_GLOB = ".tmp-*"  # the ledger's temp files (``_ledger_files.TEMP_PREFIX``)


# --- helpers -------------------------------------------------------------------------------------


def names(n: int, prefix: str = "Company") -> list[str]:
    return [f"{prefix} {i:05d}" for i in range(n)]


def frame_of(kind: str, data: dict[str, list[Any]]) -> Any:
    return pd.DataFrame(data) if kind == "pandas" else pl.DataFrame(data)


def as_pandas(frame: Any) -> pd.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    return frame


def charges(emu: Emulator) -> tuple[int, int]:
    books = emu.ledger()
    return books["runs_created"], books["rows_charged"]


def eventually(
    check: Callable[[], bool], *, timeout: float = 5.0, seen: Callable[[], object] = str
) -> None:
    """For state that another thread or process changes: wait for it, briefly, in real time.
    ``seen()`` describes the state in the failure message."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {timeout} s; the state was: {seen()}")
        time.sleep(0.01)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger") as book:
        yield book


@pytest.fixture
def client(emu: Emulator, fake_time: FakeTime) -> Iterator[Client]:
    with Client(
        api_key=emu.api_key, base_url=emu.base_url, sleep=fake_time.sleep, clock=fake_time.clock
    ) as c:
        yield c


@pytest.fixture(params=["pandas", "polars"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def enrich_kwargs(client: Client, ledger: Ledger, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("progress", False)
    kwargs.setdefault("columns", ["company_name"])
    return {"client": client, "ledger": ledger, **kwargs}


# --- 1. the same call twice ----------------------------------------------------------------------


def test_the_same_call_twice_pays_once(
    kind: str, emu: Emulator, client: Client, ledger: Ledger
) -> None:
    frame = frame_of(kind, {"company_name": names(30), "rank": list(range(30))})
    first = frame.sixtyfour.enrich(WF, **enrich_kwargs(client, ledger, chunk_size=20))
    assert charges(emu) == (2, 30)
    again = sixtyfour_frames.start(frame, WF, **enrich_kwargs(client, ledger, chunk_size=20))
    second = again.result()
    assert charges(emu) == (2, 30)  # nothing paid again
    assert again.report.rows_sent == 0 and again.report.rows_cached == 30
    pd.testing.assert_frame_equal(as_pandas(first), as_pandas(second))
    assert as_pandas(second)["domain"].notna().all()


# --- 2. crash and resume -------------------------------------------------------------------------


@dataclass(frozen=True)
class Crash:
    """One §7 F kill point: a named crash point in the library, or a kill from outside.

    The ``*_at_crash`` fields say where the child died: runs the emulator created, the states the
    client's ledger recorded, result files it stored, and whether a torn temp file is left.
    """

    label: str
    point: str | None = None  # SIXTYFOUR_FRAMES_CRASH_AT
    route: str | None = None  # else: SIGKILL the child once this route received a request,
    # held there by a ``stall`` fault so that the kill lands inside the request
    runs_at_crash: int = 0
    states_at_crash: tuple[SubmissionState, ...] = ()
    stored_at_crash: int = 0
    torn_write: bool = False


BOTH_SUBMITTED = (S.SUBMITTED,) * CHUNKS
CRASHES = [
    Crash("a_after_intent", point="after_intent", states_at_crash=(S.INTENT,)),
    Crash("b_post_sent", route="run", runs_at_crash=1, states_at_crash=(S.INTENT,)),
    Crash("c_after_response", point="after_response", runs_at_crash=1, states_at_crash=(S.INTENT,)),
    Crash(
        "d_during_polling",
        point="during_polling",
        runs_at_crash=CHUNKS,
        states_at_crash=BOTH_SUBMITTED,
    ),
    Crash(
        "e_before_download",
        point="before_download",
        runs_at_crash=CHUNKS,
        states_at_crash=BOTH_SUBMITTED,
    ),
    Crash("f_mid_download", route="file", runs_at_crash=CHUNKS, states_at_crash=BOTH_SUBMITTED),
    Crash(
        "g_after_download",
        point="after_download",
        runs_at_crash=CHUNKS,
        states_at_crash=BOTH_SUBMITTED,
        stored_at_crash=1,
    ),
    Crash(
        "h_mid_result_write",
        point="mid_result_write",
        runs_at_crash=CHUNKS,
        states_at_crash=BOTH_SUBMITTED,
        torn_write=True,
    ),
]
STALL_SECONDS = 1.0  # long enough to kill the child inside the request, short for the re-run


class ForkServer:
    """``crash_child.py --serve``: imports everything once, then forks one child per call."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(CHILD_SCRIPT), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def start(self, args: list[str], env: dict[str, str], log: Path) -> int:
        return int(self._ask({"start": args, "env": env, "log": str(log)})["pid"])

    def wait(self, pid: int, timeout: float = CHILD_TIMEOUT_S) -> int:
        """The child's return code (negative: the signal that killed it)."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._send({"wait": pid})
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)  # unblock the server; the test fails below
        answer = self._read()
        assert ready, f"child {pid} did not finish within {timeout} s"
        return int(answer["returncode"])

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=CHILD_TIMEOUT_S)
        assert self._process.stdout is not None
        self._process.stdout.close()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self._send(request)
        return self._read()

    def _send(self, request: dict[str, Any]) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        assert line, "the fork server died"
        answer: dict[str, Any] = json.loads(line)
        return answer


@pytest.fixture(scope="module")
def fork_server() -> Iterator[ForkServer]:
    server = ForkServer()
    yield server
    server.close()


@dataclass
class Child:
    """Runs ``crash_child.py`` (forked by the server) against the emulator with its own ledger."""

    server: ForkServer
    emu: Emulator
    home: Path
    output: Path

    @property
    def log(self) -> Path:
        return self.home.with_name("child.log")

    def env(self, crash_at: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIXTYFOUR_")}
        env.update(
            SIXTYFOUR_API_KEY=self.emu.api_key,
            SIXTYFOUR_BASE_URL=self.emu.base_url,
            SIXTYFOUR_FRAMES_HOME=str(self.home),
        )
        if crash_at is not None:
            env["SIXTYFOUR_FRAMES_CRASH_AT"] = crash_at
        return env

    def start(self, *extra: str, output: Path | None = None, crash_at: str | None = None) -> int:
        args = [str(output or self.output), WF, *extra]
        return self.server.start(args, self.env(crash_at), self.log)

    def run(self, *extra: str, crash_at: str | None = None) -> int:
        return self.server.wait(self.start(*extra, crash_at=crash_at))

    def run_ok(self, *extra: str) -> pd.DataFrame:
        assert self.run(*extra) == 0, self.log_text()
        return pd.read_parquet(self.output)

    def wait_ok(self, pid: int) -> None:
        assert self.server.wait(pid) == 0, self.log_text()

    def kill_when(self, pid: int, arrived: Callable[[], bool]) -> int:
        """SIGKILL child ``pid`` as soon as ``arrived()``; its return code."""
        try:
            eventually(arrived, timeout=CHILD_TIMEOUT_S)
        finally:
            os.kill(pid, signal.SIGKILL)
        return self.server.wait(pid)

    def kill_inside(self, route: str, *extra: str) -> int:
        """Start the child; SIGKILL it once ``route`` has received a request from it."""
        seen = len(self.emu.requests(route))
        pid = self.start(*extra)
        return self.kill_when(pid, lambda: len(self.emu.requests(route)) > seen)

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def child(fork_server: ForkServer, emu: Emulator, tmp_path: Path) -> Child:
    return Child(fork_server, emu, tmp_path / "home", tmp_path / "out.parquet")


@pytest.fixture(scope="module")
def reference(
    fork_server: ForkServer, shared_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> pd.DataFrame:
    """The child's output from a clean, uninterrupted run (its own ledger home)."""
    where = tmp_path_factory.mktemp("reference")
    clean = Child(fork_server, shared_emulator, where / "home", where / "out.parquet").run_ok()
    assert clean["domain"].notna().all() and len(clean) == crash_child.ROWS
    return clean


def temp_files(home: Path) -> list[Path]:
    return sorted(home.rglob(TEMP_GLOB))


def assert_paid_once_per_chunk(emu: Emulator, home: Path) -> None:
    """1 run and 1 charge per chunk on the server; the client's ledger agrees, run for run."""
    assert charges(emu) == (CHUNKS, crash_child.ROWS)
    server_runs = {run.job_id for run in emu.runs()}
    with Ledger(home) as book:
        every = book.submissions(include_superseded=True)
        assert len(every) == CHUNKS  # no retired intent, no second key for any chunk
        assert {s.state for s in every} == {S.COMPLETED}
        assert {s.job_id for s in every} == server_runs
        assert all(book.has_results(job_id) for job_id in server_runs)


def ledger_at_crash(home: Path, scratch: Path) -> tuple[list[SubmissionState], int]:
    """States and stored result files as the crash left them, read from a copy of the ledger
    (opening a ledger cleans up torn writes, and that is the re-run's job)."""
    shutil.copytree(home, scratch)
    with Ledger(scratch) as book:
        subs = book.submissions(include_superseded=True)
        stored = sum(book.has_results(s.job_id) for s in subs if s.job_id)
        return sorted(s.state for s in subs), stored


@pytest.mark.parametrize("crash", CRASHES, ids=[c.label for c in CRASHES])
def test_a_crash_at_any_point_then_a_rerun_pays_once_per_chunk(
    crash: Crash, child: Child, emu: Emulator, reference: pd.DataFrame, tmp_path: Path
) -> None:
    if crash.point is not None:
        died = child.run(crash_at=crash.point)
    else:
        assert crash.route is not None
        emu.add_fault(crash.route, "stall", seconds=STALL_SECONDS)
        died = child.kill_inside(crash.route)
    assert died == -signal.SIGKILL, child.log_text()
    assert not child.output.exists()
    # A killed child's last request may still be in the server's hands: let it settle.
    eventually(lambda: charges(emu)[0] >= crash.runs_at_crash, seen=lambda: charges(emu))
    assert charges(emu)[0] == crash.runs_at_crash
    assert bool(temp_files(child.home)) == crash.torn_write
    states, stored = ledger_at_crash(child.home, tmp_path / "copy")
    assert (states, stored) == (sorted(crash.states_at_crash), crash.stored_at_crash)

    resumed = child.run_ok()

    assert_paid_once_per_chunk(emu, child.home)
    pd.testing.assert_frame_equal(resumed, reference)
    assert temp_files(child.home) == []  # the torn write was cleaned up, nothing new left
    assert_faults_consumed(emu)


# --- 3. two processes; a crash during a refresh --------------------------------------------------


def test_two_processes_starting_the_same_call_pay_once(
    child: Child, emu: Emulator, reference: pd.DataFrame, tmp_path: Path
) -> None:
    # Slow POSTs keep the first process inside its per-chunk lock while the other one arrives.
    emu.add_fault("run", "latency", times=CHUNKS, seconds=STALL_SECONDS)
    outputs = [tmp_path / "first.parquet", tmp_path / "second.parquet"]
    pids = [child.start(output=out) for out in outputs]
    for pid in pids:
        child.wait_ok(pid)
    assert_paid_once_per_chunk(emu, child.home)
    assert emu.ledger()["requests"]["run"] == CHUNKS  # the second process never POSTed
    for out in outputs:
        pd.testing.assert_frame_equal(pd.read_parquet(out), reference)


def test_a_refresh_interrupted_by_a_crash_does_not_pay_a_third_time(
    child: Child, emu: Emulator, reference: pd.DataFrame
) -> None:
    child.run_ok()
    assert charges(emu) == (CHUNKS, crash_child.ROWS)
    # One run at a time: the refresh's first chunk runs and completes; the second chunk's POST is
    # held and the process killed there (its refresh run created but never recorded).
    emu.add_fault("run", "latency", seconds=0.0)
    emu.add_fault("run", "stall", seconds=STALL_SECONDS)
    seen = len(emu.requests("run"))
    pid = child.start("--refresh", "--max-concurrent-runs", "1")
    died = child.kill_when(pid, lambda: len(emu.requests("run")) == seen + 2)
    assert died == -signal.SIGKILL
    eventually(lambda: charges(emu) == (2 * CHUNKS, 2 * crash_child.ROWS))

    refreshed = child.run_ok("--refresh", "--max-concurrent-runs", "1")

    assert charges(emu) == (2 * CHUNKS, 2 * crash_child.ROWS)  # paid twice, never three times
    pd.testing.assert_frame_equal(refreshed, reference)
    assert_faults_consumed(emu)


# --- 4. the row cache ----------------------------------------------------------------------------


def test_the_row_cache_pays_only_for_records_never_enriched(
    kind: str, emu: Emulator, client: Client, ledger: Ledger
) -> None:
    distinct = names(2_500)
    rows = [distinct[i % len(distinct)] for i in range(10_000)]
    first = sixtyfour_frames.start(
        frame_of(kind, {"company_name": rows}), WF, **enrich_kwargs(client, ledger)
    )
    before = as_pandas(first.result())
    assert charges(emu) == (1, 2_500)
    assert (first.report.rows_in, first.report.rows_unique, first.report.rows_sent) == (
        10_000,
        2_500,
        2_500,
    )

    snapshots: list[ProgressSnapshot] = []
    bigger = frame_of(kind, {"company_name": rows + names(100, prefix="Newco")})
    second = sixtyfour_frames.start(
        bigger, WF, **enrich_kwargs(client, ledger, progress=snapshots.append)
    )
    after = as_pandas(second.result())

    assert charges(emu) == (2, 2_600)  # exactly the 100 new records
    report = second.report
    assert (report.rows_cached, report.rows_sent) == (2_500, 100)
    assert report.cached_from_runs == tuple(first.run_ids)
    assert "2500 from the ledger" in report.summary()
    assert snapshots and all(s.rows_cached == 2_500 and s.rows_total == 100 for s in snapshots)
    assert after["domain"].notna().all()
    pd.testing.assert_frame_equal(after.iloc[:10_000], before)  # the same values as paid for


def test_rows_whose_stored_results_were_deleted_are_fetched_again_not_paid_again(
    emu: Emulator, client: Client, ledger: Ledger
) -> None:
    frame = pd.DataFrame({"company_name": names(10)})
    first = sixtyfour_frames.start(frame, WF, **enrich_kwargs(client, ledger))
    first.result()
    (job_id,) = first.run_ids
    ledger.result_path(job_id).unlink()  # e.g. a user cleaning up disk space
    again = sixtyfour_frames.start(frame, WF, **enrich_kwargs(client, ledger))
    out = again.result()
    assert charges(emu) == (1, 10)  # the run is downloaded again from the server, not re-run
    assert emu.ledger()["requests"]["download_links"] == 2
    assert (again.report.rows_cached, again.report.cached_from_runs) == (0, ())
    assert again.report.rows_reattached == 10 and out["domain"].notna().all()


# --- 5. lost responses ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_response_lost_after_the_run_was_created_adopts_that_run(
    mode: str, emu: Emulator, client: Client, ledger: Ledger
) -> None:
    emu.add_fault("run", "reset_after")
    frame = pd.DataFrame({"company_name": names(10)})
    kwargs = enrich_kwargs(client, ledger)
    if mode == "sync":
        out = sixtyfour_frames.enrich(frame, WF, **kwargs)
    else:
        out = asyncio.run(sixtyfour_frames.aenrich(frame, WF, **kwargs))

    assert charges(emu) == (1, 10)
    assert emu.ledger()["idempotent_replays"] == 1
    posts = emu.requests("run")
    keys = {post.header("idempotency-key") for post in posts}
    assert len(posts) == 2 and len(keys) == 1  # the retry replayed the same key
    (run,) = emu.runs()
    sub = ledger.by_job_id(run.job_id)
    assert sub is not None and sub.state is S.COMPLETED and sub.already_started is True
    assert keys == {sub.idempotency_key}
    assert out["domain"].notna().all()
    assert_faults_consumed(emu)


@pytest.fixture
def keyless() -> Iterator[Emulator]:
    """An API that ignores Idempotency-Key: only the runs list can tell what a POST did."""
    with Emulator(idempotency=False) as emulator:
        yield emulator


@pytest.fixture
def keyless_client(keyless: Emulator, fake_time: FakeTime) -> Iterator[Client]:
    with Client(
        api_key=keyless.api_key,
        base_url=keyless.base_url,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
    ) as c:
        yield c


def lose_the_response_then_fail_every_retry(emu: Emulator, client: Client) -> None:
    """The first POST creates a run and loses its answer; every retry gets a 503."""
    emu.add_fault("run", "reset_after")
    emu.add_fault("run", "status", times=client.settings.max_retries, code=503)


def test_without_keys_a_lost_response_is_resolved_through_the_runs_list(
    keyless: Emulator, keyless_client: Client, ledger: Ledger
) -> None:
    lose_the_response_then_fail_every_retry(keyless, keyless_client)
    frame = pd.DataFrame({"company_name": names(10)})
    job = sixtyfour_frames.start(frame, WF, **enrich_kwargs(keyless_client, ledger))
    out = job.result()

    assert charges(keyless) == (1, 10)
    (run,) = keyless.runs()
    assert job.run_ids == [run.job_id]  # the one unexplained run was adopted
    assert keyless.ledger()["requests"]["runs"] >= 1
    (sub,) = ledger.submissions(include_superseded=True)
    assert (sub.state, sub.job_id, sub.already_started) == (S.COMPLETED, run.job_id, True)
    assert out["domain"].notna().all()
    assert_faults_consumed(keyless)


def test_without_keys_two_unexplained_runs_are_never_guessed(
    keyless: Emulator, keyless_client: Client, ledger: Ledger
) -> None:
    someone_else = httpx.post(
        f"{keyless.base_url}/workflows/run",
        params={"workflow_id": WF},
        headers=keyless.headers,
        json={"webhook_payload": [{"company_name": "Someone Else Inc"}]},
    )
    someone_else.raise_for_status()
    other = someone_else.json()["job_id"]
    lose_the_response_then_fail_every_retry(keyless, keyless_client)
    frame = pd.DataFrame({"company_name": names(10)})
    kwargs = enrich_kwargs(keyless_client, ledger)

    with pytest.raises(AmbiguousSubmitError) as caught:
        sixtyfour_frames.enrich(frame, WF, **kwargs)

    (ours,) = {run.job_id for run in keyless.runs()} - {other}
    assert set(caught.value.candidates) == {ours, other}
    assert charges(keyless) == (2, 11)  # the other client's run and the lost one; no resubmit
    (sub,) = ledger.submissions(include_superseded=True)
    assert (sub.state, sub.job_id) == (S.AMBIGUOUS, None)
    posts = keyless.ledger()["requests"]["run"]
    with pytest.raises(AmbiguousSubmitError):  # asking again still guesses nothing, sends nothing
        sixtyfour_frames.enrich(frame, WF, **kwargs)
    assert charges(keyless) == (2, 11)
    assert keyless.ledger()["requests"]["run"] == posts
    assert_faults_consumed(keyless)


def test_another_clients_run_is_never_taken_for_ours(
    keyless: Emulator, keyless_client: Client, ledger: Ledger
) -> None:
    # Another sixtyfour-frames user runs the same workflow; our POST is lost before the server
    # read it, so the only unexplained run in the list is theirs.
    theirs = httpx.post(
        f"{keyless.base_url}/workflows/run",
        params={"workflow_id": WF},
        headers=keyless.headers,
        json={"webhook_payload": [{"company_name": "Someone Else Inc", ROW_KEY: "their-key"}]},
    )
    theirs.raise_for_status()
    keyless.add_fault("run", "reset_before")
    keyless.add_fault("run", "status", times=keyless_client.settings.max_retries, code=503)
    frame = pd.DataFrame({"company_name": names(10)})
    kwargs = enrich_kwargs(keyless_client, ledger)

    with pytest.raises(JoinError, match="another client's run"):
        sixtyfour_frames.enrich(frame, WF, **kwargs)
    assert charges(keyless) == (1, 1)  # theirs only: ours was never created
    (sub,) = ledger.submissions(include_superseded=True)
    assert (sub.state, sub.job_id) == (S.FAILED, theirs.json()["job_id"])

    out = sixtyfour_frames.enrich(frame, WF, **kwargs)  # pays for our records, once
    assert charges(keyless) == (2, 11)
    assert out["domain"].notna().all()
    assert_faults_consumed(keyless)


def test_a_persistent_outage_is_not_resubmitted_forever(
    keyless: Emulator, keyless_client: Client, ledger: Ledger
) -> None:
    # Every POST answers 503 after it was sent, and the runs list proves that no run exists:
    # a new key may be tried (§3.3), but not round after round.
    attempts = keyless_client.settings.max_retries + 1
    keyless.add_fault("run", "status", times=10 * attempts, code=503)
    frame = pd.DataFrame({"company_name": names(3)})
    with pytest.raises(sixtyfour_frames.ServerError):
        sixtyfour_frames.enrich(frame, WF, **enrich_kwargs(keyless_client, ledger))
    assert len(keyless.requests("run")) == 2 * attempts  # the first key, and one fresh key
    assert charges(keyless) == (0, 0)
    states = [sub.state for sub in ledger.submissions(include_superseded=True)]
    assert states == [S.FAILED_NO_RUN, S.FAILED_NO_RUN]


# --- 6. Ctrl-C -----------------------------------------------------------------------------------


def interrupt_when(
    condition: Callable[[ProgressSnapshot], bool], error: type[BaseException] = KeyboardInterrupt
) -> Callable[[ProgressSnapshot], None]:
    """A progress callback that presses Ctrl-C (or crashes) at the first snapshot matching."""

    def callback(snapshot: ProgressSnapshot) -> None:
        if condition(snapshot):
            raise error

    return callback


def polling(snapshot: ProgressSnapshot) -> bool:
    return "running" in snapshot.runs.values()


def submitting(snapshot: ProgressSnapshot) -> bool:
    return len(snapshot.runs) == 1


@pytest.mark.parametrize(
    ("moment", "runs"), [(polling, 2), (submitting, 1)], ids=["polling", "submitting"]
)
def test_ctrl_c_cancels_the_calls_runs_on_the_server(
    moment: Callable[[ProgressSnapshot], bool],
    runs: int,
    emu: Emulator,
    client: Client,
    ledger: Ledger,
) -> None:
    emu.add_fault("run", "stall_run", times=runs)  # the runs are still going when Ctrl-C comes
    frame = pd.DataFrame({"company_name": names(20)})
    with pytest.raises(EnrichInterrupted) as caught:
        sixtyfour_frames.enrich(
            frame,
            WF,
            **enrich_kwargs(client, ledger, chunk_size=10, progress=interrupt_when(moment)),
        )

    interrupted = caught.value
    assert isinstance(interrupted, KeyboardInterrupt) and interrupted.cancelled
    server = emu.runs()
    assert charges(emu) == (runs, 10 * runs)  # a chunk not yet sent is not sent after Ctrl-C
    assert set(interrupted.run_ids) == {run.job_id for run in server}
    assert all(run.job_id in str(interrupted) for run in server)
    assert emu.ledger()["runs_cancelled"] == runs
    assert {run.status for run in server} == {"cancelled"}
    assert {sub.state for sub in ledger.submissions()} == {S.CANCELLED}
    assert_faults_consumed(emu)


def test_ctrl_c_with_detach_leaves_the_runs_going_and_a_rerun_reattaches(
    emu: Emulator, client: Client, ledger: Ledger
) -> None:
    emu.add_fault("run", "stall_run", times=2)
    frame = pd.DataFrame({"company_name": names(20)})
    options = {"chunk_size": 10, "on_interrupt": "detach"}
    with pytest.raises(EnrichInterrupted) as caught:
        sixtyfour_frames.enrich(
            frame, WF, **enrich_kwargs(client, ledger, progress=interrupt_when(polling), **options)
        )

    assert not caught.value.cancelled and "attach(" in str(caught.value)
    assert emu.ledger()["runs_cancelled"] == 0
    assert {run.status for run in emu.runs()} == {"running"}
    for run in emu.runs():
        emu.release(run.job_id)
    job = sixtyfour_frames.start(frame, WF, **enrich_kwargs(client, ledger, **options))
    out = job.result()
    assert charges(emu) == (2, 20)  # 0 new runs
    assert sorted(job.run_ids) == sorted(caught.value.run_ids)
    assert {run.source for run in job.report.runs} == {"reattached"}
    assert job.report.rows_reattached == 20 and out["domain"].notna().all()
    assert_faults_consumed(emu)


def test_cancelling_aenrich_cancels_the_runs_like_ctrl_c(
    emu: Emulator, client: Client, ledger: Ledger
) -> None:
    emu.add_fault("run", "stall_run", times=2)
    frame = pd.DataFrame({"company_name": names(20)})

    async def cancel_once_both_runs_exist() -> None:
        task = asyncio.create_task(
            sixtyfour_frames.aenrich(frame, WF, **enrich_kwargs(client, ledger, chunk_size=10))
        )
        while len(emu.runs()) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_once_both_runs_exist())  # returns once the worker thread has finished
    assert emu.ledger()["runs_cancelled"] == 2
    assert {run.status for run in emu.runs()} == {"cancelled"}
    assert charges(emu) == (2, 20)


def press_ctrl_c_when(arrived: Callable[[], bool]) -> threading.Thread:
    """A real SIGINT to this process (what Ctrl-C sends) once ``arrived()``, from a thread."""

    def watch() -> None:
        eventually(arrived, timeout=CHILD_TIMEOUT_S)
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def test_ctrl_c_during_the_post_cancels_the_run_it_started(
    emu: Emulator, client: Client, ledger: Ledger
) -> None:
    # The POST creates a run (held at block 2), then its answer is held back: Ctrl-C lands
    # while the request is in flight, before the job id is known.
    emu.add_fault("run", "stall", seconds=2.0)
    emu.add_fault("run", "stall_run")
    frame = pd.DataFrame({"company_name": names(10)})
    watcher = press_ctrl_c_when(lambda: bool(emu.requests("run")))
    with pytest.raises(EnrichInterrupted) as caught:
        sixtyfour_frames.enrich(frame, WF, **enrich_kwargs(client, ledger))
    watcher.join()

    (run,) = emu.runs()
    assert caught.value.run_ids == (run.job_id,)
    assert emu.ledger()["runs_cancelled"] == 1 and run.status == "cancelled"
    (sub,) = ledger.submissions()
    assert (sub.state, sub.job_id) == (S.CANCELLED, run.job_id)
    assert_faults_consumed(emu)


def test_cancelling_a_run_that_already_finished_keeps_its_paid_rows(
    emu: Emulator, client: Client, ledger: Ledger
) -> None:
    frame = pd.DataFrame({"company_name": names(10)})
    job = sixtyfour_frames.start(frame, WF, **enrich_kwargs(client, ledger))
    assert job.cancel() == []  # pace 0: it completed before the cancel arrived
    out = job.result()
    assert out["domain"].notna().all() and emu.ledger()["runs_cancelled"] == 0
    assert [sub.state for sub in ledger.submissions()] == [S.COMPLETED]
    sixtyfour_frames.enrich(frame, WF, **enrich_kwargs(client, ledger))
    assert charges(emu) == (1, 10)


# --- 7. options ----------------------------------------------------------------------------------


def test_cache_false_pays_every_time_and_refresh_pays_again_once(
    emu: Emulator, client: Client, ledger: Ledger
) -> None:
    frame = pd.DataFrame({"company_name": names(10)})

    def call(**options: Any) -> sixtyfour_frames.EnrichJob:
        job = sixtyfour_frames.start(frame, WF, **enrich_kwargs(client, ledger, **options))
        job.result()
        return job

    call()
    call()
    assert charges(emu) == (1, 10)
    call(cache=False)
    assert charges(emu) == (2, 20)  # cache=False: rows enriched before are not reused
    refresh = call(refresh=True)
    assert charges(emu) == (3, 30)
    assert refresh.report.rows_cached == 0 and refresh.report.rows_sent == 10
    after = call()
    assert charges(emu) == (3, 30)  # the refreshed rows are the cache now
    assert after.report.cached_from_runs == tuple(refresh.run_ids)


class Crashed(BaseException):
    """The process 'dies' here: nothing in the library handles it (unlike Ctrl-C)."""


def first_run_completed(snapshot: ProgressSnapshot) -> bool:
    return len(snapshot.runs) == 1 and "completed" in snapshot.runs.values()


def second_run_started(snapshot: ProgressSnapshot) -> bool:
    return len(snapshot.runs) == 2


@pytest.mark.parametrize(
    "moment",
    [first_run_completed, second_run_started],
    ids=["before_the_second_intent", "second_run_in_flight"],
)
def test_rerunning_an_interrupted_refresh_pays_for_each_chunk_once(
    moment: Callable[[ProgressSnapshot], bool], emu: Emulator, client: Client, ledger: Ledger
) -> None:
    frame = pd.DataFrame({"company_name": names(20)})
    options = {"chunk_size": 10, "max_concurrent_runs": 1}
    sixtyfour_frames.enrich(frame, WF, **enrich_kwargs(client, ledger, **options))
    assert charges(emu) == (2, 20)
    with pytest.raises(Crashed):
        sixtyfour_frames.enrich(
            frame,
            WF,
            **enrich_kwargs(
                client, ledger, refresh=True, progress=interrupt_when(moment, Crashed), **options
            ),
        )

    job = sixtyfour_frames.start(
        frame, WF, **enrich_kwargs(client, ledger, refresh=True, **options)
    )
    job.result()
    assert charges(emu) == (4, 40)  # the first call and one refresh: never a third payment
    refreshed = {run.job_id for run in emu.runs()[2:]}
    assert set(job.run_ids) == refreshed
    again = sixtyfour_frames.start(
        frame, WF, **enrich_kwargs(client, ledger, refresh=True, **options)
    )
    again.result()
    assert charges(emu) == (6, 60)  # a new refresh, once the last one finished, pays again


def max_runs_open(emu: Emulator) -> int:
    """Most runs in progress at once: from its creation to the poll that saw it finish.

    A finished run waiting for its download no longer occupies a slot: the next chunk may
    start while it downloads.
    """
    requests = emu.requests()
    created = iter(run.job_id for run in emu.runs())
    opened: dict[str, int] = {}
    last_poll: dict[str, int] = {}
    for index, request in enumerate(requests):
        if request.route == "run":
            opened[next(created)] = index
        elif request.route == "live_status":
            last_poll[request.path.split("/")[3]] = index  # /workflows/runs/{id}/live_status
    spans = [(start, last_poll.get(job, start)) for job, start in opened.items()]
    return max(sum(1 for s, e in spans if s <= i <= e) for i in range(len(requests)))


def test_max_concurrent_runs_is_respected(emu: Emulator, client: Client, ledger: Ledger) -> None:
    frame = pd.DataFrame({"company_name": names(50)})
    job = sixtyfour_frames.start(
        frame, WF, **enrich_kwargs(client, ledger, chunk_size=10, max_concurrent_runs=2)
    )
    out = job.result()
    assert charges(emu) == (5, 50)
    assert max_runs_open(emu) == 2
    assert out["domain"].notna().all()


def test_a_413_splits_the_chunk_and_still_returns_every_row(
    emu: Emulator, client: Client, ledger: Ledger
) -> None:
    emu.add_fault("run", "status", code=413)
    frame = pd.DataFrame({"company_name": names(20)})
    job = sixtyfour_frames.start(frame, WF, **enrich_kwargs(client, ledger))
    out = job.result()

    assert charges(emu) == (2, 20)
    assert sorted(run.rows_in for run in emu.runs()) == [10, 10]
    assert len(emu.requests("run")) == 3  # the refused POST (not retried), then the two halves
    assert job.report.rows_matched == 20 and out["domain"].notna().all()
    states = sorted(sub.state for sub in ledger.submissions(include_superseded=True))
    assert states == sorted([S.FAILED_NO_RUN, S.COMPLETED, S.COMPLETED])
    sixtyfour_frames.enrich(frame, WF, **enrich_kwargs(client, ledger))
    assert charges(emu) == (2, 20)
    assert_faults_consumed(emu)


def test_attach_from_a_fresh_ledger_picks_up_runs_started_elsewhere(
    emu: Emulator, client: Client, tmp_path: Path
) -> None:
    frame = pd.DataFrame({"company_name": names(30), "rank": list(range(30))})
    with Ledger(tmp_path / "elsewhere") as elsewhere, Ledger(tmp_path / "here") as here:
        started = sixtyfour_frames.start(
            frame, WF, **enrich_kwargs(client, elsewhere, chunk_size=20)
        )
        assert charges(emu) == (2, 30) and len(started.run_ids) == 2

        table = sixtyfour_frames.attach(started.run_ids, client=client, ledger=here)
        out = sixtyfour_frames.attach(
            started.run_ids,
            frame,
            WF,
            client=client,
            ledger=here,
            columns=["company_name"],
            progress=False,
        )
        assert charges(emu) == (2, 30)  # nothing paid again
        assert table.num_rows == 30
        pd.testing.assert_frame_equal(out, started.result())


# --- 8. every ending closes what the call opened -------------------------------------------------


class TrackedLedger(Ledger):
    opened: ClassVar[list[TrackedLedger]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed = False
        TrackedLedger.opened.append(self)

    def close(self) -> None:
        self.closed = True
        super().close()


class TrackedClient(Client):
    opened: ClassVar[list[TrackedClient]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed = False
        TrackedClient.opened.append(self)

    def close(self) -> None:
        self.closed = True
        super().close()


# start() after a failed run is not here: it returns the job, whose holder may still wait() or
# resume() it with the same client and ledger.
@pytest.mark.parametrize(
    ("entry", "ending"), [("enrich", "run_failed"), ("enrich", "ctrl_c"), ("start", "ctrl_c")]
)
def test_a_call_that_ends_in_an_error_closes_what_it_opened(
    entry: str, ending: str, emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIXTYFOUR_API_KEY", emu.api_key)
    monkeypatch.setenv("SIXTYFOUR_BASE_URL", emu.base_url)
    monkeypatch.setenv("SIXTYFOUR_FRAMES_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(TrackedLedger, "opened", [])
    monkeypatch.setattr(TrackedClient, "opened", [])
    monkeypatch.setattr("sixtyfour_frames._enrich.Ledger", TrackedLedger)
    monkeypatch.setattr("sixtyfour_frames._enrich.Client", TrackedClient)
    frame = pd.DataFrame({"company_name": names(5)})
    if ending == "run_failed":
        call = {"workflow_id": Emulator.workflow_id("failing"), "progress": False}
        expected: type[BaseException] = sixtyfour_frames.RunFailedError
    else:  # Ctrl-C while the runs are being started: start() raises, no job to close later
        call = {"workflow_id": WF, "progress": interrupt_when(lambda snapshot: True)}
        expected = EnrichInterrupted
    with pytest.raises(expected):
        getattr(sixtyfour_frames, entry)(frame, **call)
    opened = TrackedLedger.opened + TrackedClient.opened
    assert len(opened) == 2 and all(thing.closed for thing in opened)
