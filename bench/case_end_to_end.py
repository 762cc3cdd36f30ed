"""Case 3: end to end against the emulator, with a known server time per row.

16,000 distinct rows of the 8-column frame are enriched with the emulator's built-in
``company_enrichment`` workflow (a webhook source block and one enrichment block) in 16 chunks
of 1,000 records, at most 4 runs at a time, in real time, against an emulator in a child process
(so that its own work does not compete with the client for the GIL, as a remote server would
not). The emulator's ``pace`` is chosen so
that each run takes 2 s on the server (``pace × rows × blocks``), so the server's own processing
time for the whole call is 16 runs × 2 s ÷ 4 concurrent = 8 s: no client could finish sooner.

Figures:

* wall time of the ``enrich`` call ÷ that processing time (goal ≤ 1.10). The processing time is
  computed from the runs' own ``started_at`` / ``completed_at`` (live status) as
  Σ run durations ÷ concurrency, and checked against ``pace × rows × blocks ÷ concurrency``;
* HTTP requests per run (the emulator's request ledger, per route);
* the delay between a run completing on the server (its ``completed_at``) and its rows being
  stored in the ledger (a ``Ledger`` subclass notes the time ``store_results`` returns), and
  between the last completion and ``enrich`` returning the joined frame.

Poll interval: a fixed ``poll=0.1`` s. Detecting a completion takes half an interval on average,
once per wave of 4 runs, so 0.1 s costs about 4 × 0.05 s = 0.2 s (2.5 %) of the 10 % budget and
leaves the rest to the client's own work, which is what this case measures; it means about 20
status requests per 2-s run. The default schedule (2 s, ×1.5 per poll, up to 10 s) is also run
in the full benchmark, for information, because that is what users get.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from _common import (
    Goal,
    fmt_int,
    fmt_ratio,
    fmt_seconds,
    make_pandas,
    print_goals,
    print_table,
    subheading,
)

import sixtyfour_frames as sf
from sixtyfour_frames._ledger import Ledger
from sixtyfour_frames._poll import PollSchedule
from sixtyfour_frames.emulator import Emulator

CASE = "3. end to end"
ROWS = 16_000
CHUNK_SIZE = 1_000
CONCURRENCY = 4
BLOCKS = 2  # company_enrichment: the webhook source, then the enrichment block
SERVER_SECONDS = 8.0  # the emulator's own processing time for the whole call
PACE = SERVER_SECONDS * CONCURRENCY / (ROWS * BLOCKS)  # seconds per row per block: 1 ms
POLL = 0.1
MAX_WALL_RATIO = 1.10
WORKFLOW = "company_enrichment"


class TimedLedger(Ledger):
    """A ledger that notes when each run's rows were stored (wall clock, like the emulator's)."""

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        self.stored_at: dict[str, float] = {}

    def store_results(self, job_id: str, table: pa.Table) -> Path:
        path = super().store_results(job_id, table)
        self.stored_at.setdefault(job_id, time.time())
        return path


@dataclass(frozen=True)
class Outcome:
    label: str
    wall: float
    first_post: float  # seconds from the call's start to the emulator receiving the first POST
    runs: int
    blocks: int
    processing: float  # Σ run durations ÷ concurrency, from the runs' timestamps
    processing_by_pace: float  # pace × rows × blocks ÷ concurrency
    server_span: float  # first run queued → last run completed
    requests: dict[str, int]
    store_delays: list[float]
    refill_delays: list[float]  # a run completed → the POST that took its slot was received
    last_to_return: float
    rows_out: int
    timings: dict[str, float]

    @property
    def requests_per_run(self) -> float:
        return sum(self.requests.values()) / self.runs

    @property
    def ratio(self) -> float:
        return self.wall / self.processing


def _epoch(text: str | None) -> float:
    if text is None:
        raise RuntimeError("a completed run has no timestamp")
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def measure(label: str, poll: PollSchedule | float | None) -> Outcome:
    frame = make_pandas(ROWS, seed=3)
    workflow = Emulator.workflow_id(WORKFLOW)
    with (
        Emulator(pace=PACE, mode="subprocess") as emu,
        tempfile.TemporaryDirectory(prefix="sf-bench-") as home,
        TimedLedger(Path(home) / "ledger") as ledger,
        sf.Client(api_key=emu.api_key, base_url=emu.base_url) as client,
    ):
        started_wall = time.time()
        started = time.perf_counter()
        job = sf.start(
            frame,
            workflow,
            client=client,
            ledger=ledger,
            chunk_size=CHUNK_SIZE,
            max_concurrent_runs=CONCURRENCY,
            progress=False,
            poll=poll,
        )
        out = job.result()
        wall = time.perf_counter() - started
        returned_wall = time.time()
        books = emu.ledger()
        posts = emu.requests("run")
        runs = emu.runs()
        # Only now (the request counts are taken) ask for each run's own timestamps.
        statuses = [client.live_status(run.job_id) for run in runs]
    durations = [_epoch(s.completed_at) - _epoch(s.started_at) for s in statuses]
    completed = {s.run_id: _epoch(s.completed_at) for s in statuses}
    delays = [ledger.stored_at[job_id] - done for job_id, done in completed.items()]
    requests = {route: count for route, count in books["requests"].items() if count}
    # The k-th completion frees the slot that the (k + concurrency)-th POST takes.
    finishes = sorted(completed.values())
    arrivals = sorted(post.time for post in posts)
    refills = [
        arrival - finish for finish, arrival in zip(finishes, arrivals[CONCURRENCY:], strict=False)
    ]
    return Outcome(
        label=label,
        wall=wall,
        first_post=posts[0].time - started_wall,
        runs=len(runs),
        blocks=statuses[0].total_blocks,
        processing=sum(durations) / CONCURRENCY,
        processing_by_pace=PACE * ROWS * statuses[0].total_blocks / CONCURRENCY,
        server_span=max(completed.values()) - min(run.queued_at for run in runs),
        requests=requests,
        store_delays=delays,
        refill_delays=refills,
        last_to_return=returned_wall - max(completed.values()),
        rows_out=len(out),
        timings=dict(job.report.timings),
    )


def _delays(values: Sequence[float]) -> str:
    return f"{fmt_seconds(statistics.median(values))} / {fmt_seconds(max(values))}"


def _requests(outcome: Outcome) -> str:
    return ", ".join(
        f"{route} {count / outcome.runs:.1f}" for route, count in outcome.requests.items()
    )


def run(quick: bool) -> list[Goal]:
    outcomes = [measure(f"poll={POLL} s", POLL)]
    if not quick:
        outcomes.append(measure("info: default poll schedule", None))
    main = outcomes[0]
    subheading(
        f"{CASE} — {fmt_int(ROWS)} rows × 8 columns, {main.runs} runs of {fmt_int(CHUNK_SIZE)}, "
        f"{CONCURRENCY} at a time, {main.blocks} blocks, pace {PACE * 1e3:g} ms/row/block "
        f"({fmt_seconds(PACE * CHUNK_SIZE * main.blocks)} per run)"
    )
    figures: list[tuple[str, Any]] = [
        ("wall time of the call (start → joined frame)", lambda o: fmt_seconds(o.wall)),
        (
            "emulator processing time (Σ run durations ÷ concurrency)",
            lambda o: fmt_seconds(o.processing),
        ),
        (
            "  check: pace × rows × blocks ÷ concurrency",
            lambda o: fmt_seconds(o.processing_by_pace),
        ),
        ("wall ÷ processing time (goal ≤ 1.10)", lambda o: fmt_ratio(o.ratio)),
        ("call start → first POST received", lambda o: fmt_seconds(o.first_post)),
        ("server span (first run queued → last completed)", lambda o: fmt_seconds(o.server_span)),
        ("HTTP requests per run", lambda o: f"{o.requests_per_run:.1f}"),
        ("  per route, per run", _requests),
        (
            "run completed on server → rows stored (median / max)",
            lambda o: _delays(o.store_delays),
        ),
        (
            "run completed → next chunk's POST received (median / max)",
            lambda o: _delays(o.refill_delays),
        ),
        ("last run completed → enrich() returned", lambda o: fmt_seconds(o.last_to_return)),
        (
            "client phases (report.timings)",
            lambda o: ", ".join(f"{k} {fmt_seconds(v)}" for k, v in o.timings.items()),
        ),
        ("rows in the returned frame", lambda o: fmt_int(o.rows_out)),
    ]
    rows = [[name, *(str(show(o)) for o in outcomes)] for name, show in figures]
    print_table(["figure", *(o.label for o in outcomes)], rows)
    goals = [
        Goal(
            CASE,
            f"wall ÷ emulator processing time (poll={POLL} s)",
            main.ratio,
            MAX_WALL_RATIO,
        )
    ]
    print_goals(goals)
    return goals
