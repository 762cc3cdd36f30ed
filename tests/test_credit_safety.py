"""Credits are never wasted (issue 5): the emulator's charge ledger is the oracle.

Every scenario asserts how many runs the emulator created and how many rows it charged, and what
the client's ledger recorded: the same call twice, a SIGKILL at each of the eight crash points of
``notes/reliability.md`` §7 F followed by a re-run, two processes at once, the row cache, lost
responses with and without Idempotency-Key support, Ctrl-C, refresh/cache, concurrency limits,
413 splitting and ``attach``.

The crash tests run ``tests/crash_child.py`` in subprocesses against the one (thread-mode)
emulator of the test session; everything else runs in-process with injected time.
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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import polars as pl
import pytest

import sixtyfour_frames
from sixtyfour_frames import (
    AmbiguousSubmitError,
    Client,
    EnrichInterrupted,
)
from sixtyfour_frames._ledger import Ledger, SubmissionState
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


# --------------------------------------------------------------------------- helpers


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


def eventually(check: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """For state that another thread or process changes: wait for it, briefly, in real time."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached within the deadline")
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


# --------------------------------------------------------------------------- 1. the same call twice


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


# --------------------------------------------------------------------------- 2. crash and resume


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
STALL_SECONDS = 0.5  # long enough to kill the child inside the request, short for the re-run


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
    assert died == -signal.SIGKILL
    assert not child.output.exists()
    eventually(lambda: emu.ledger()["runs_created"] == crash.runs_at_crash)
    assert bool(temp_files(child.home)) == crash.torn_write
    states, stored = ledger_at_crash(child.home, tmp_path / "copy")
    assert (states, stored) == (sorted(crash.states_at_crash), crash.stored_at_crash)

    resumed = child.run_ok()

    assert_paid_once_per_chunk(emu, child.home)
    pd.testing.assert_frame_equal(resumed, reference)
    assert temp_files(child.home) == []  # the torn write was cleaned up, nothing new left
    assert_faults_consumed(emu)


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
