"""Case 5: dedup and cache — the rows the server charges for.

A frame in which 75 % of the rows are duplicates (each distinct record appears 4 times,
shuffled) is enriched against the emulator (pace 0), then the same call is made again with the
same ledger, then once more with the same rows as a Polars frame. The emulator's charge ledger
(``rows_charged``: input rows of every created run) says what each call cost. Baseline: sending
every row, as a hand-written loop over the frame does, charges every row.

Goals: the first call is charged exactly the distinct records (charged ÷ distinct ≤ 1.00), and
the re-run is charged 0 rows.

Sizes above 100,000 rows are capped at 100,000: the emulator builds every run's output in Python,
so 1,000,000 rows through it would take minutes and measure the emulator, not the library.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    Goal,
    fmt_int,
    fmt_rows,
    fmt_seconds,
    make_pandas,
    print_goals,
    print_table,
    subheading,
    to_polars,
    with_duplicates,
)

import sixtyfour_frames as sf
from sixtyfour_frames._ledger import Ledger
from sixtyfour_frames.emulator import Emulator

CASE = "5. dedup and cache"
COPIES = 4  # each record 4 times: 75 % of the rows are duplicates
MAX_ROWS = 100_000
POLL = 0.02  # pace 0: a run is complete at its first status poll
WORKFLOW = "company_enrichment"


@dataclass(frozen=True)
class Call:
    label: str
    rows: int
    charged: int
    runs: int
    seconds: float
    rows_with_values: int


def _enrich(
    label: str, frame: Any, emu: Emulator, client: sf.Client, ledger: Ledger, n_rows: int
) -> Call:
    import time

    before = emu.ledger()
    started = time.perf_counter()
    job = sf.start(
        frame,
        Emulator.workflow_id(WORKFLOW),
        client=client,
        ledger=ledger,
        progress=False,
        poll=POLL,
    )
    out = job.result()
    seconds = time.perf_counter() - started
    after = emu.ledger()
    values = out["domain"]
    filled = int(values.notna().sum()) if hasattr(values, "notna") else n_rows - values.null_count()
    return Call(
        label,
        n_rows,
        after["rows_charged"] - before["rows_charged"],
        after["runs_created"] - before["runs_created"],
        seconds,
        filled,
    )


def run_size(n_rows: int) -> list[Goal]:
    distinct = n_rows // COPIES
    frame = with_duplicates(make_pandas(distinct, seed=5), COPIES)
    with (
        Emulator(mode="subprocess") as emu,
        tempfile.TemporaryDirectory(prefix="sf-bench-") as home,
        Ledger(Path(home) / "ledger") as ledger,
        sf.Client(api_key=emu.api_key, base_url=emu.base_url) as client,
    ):
        calls = [
            _enrich("first call, pandas", frame, emu, client, ledger, len(frame)),
            _enrich("re-run, same frame", frame, emu, client, ledger, len(frame)),
            _enrich(
                "re-run, same rows as a Polars frame",
                to_polars(frame),
                emu,
                client,
                ledger,
                len(frame),
            ),
        ]
    subheading(
        f"{CASE} — {fmt_rows(len(frame))}, {fmt_int(distinct)} distinct records "
        f"({100 * (1 - distinct / len(frame)):.0f} % duplicates)"
    )
    rows = [
        [
            c.label,
            fmt_int(c.rows),
            fmt_int(c.charged),
            fmt_int(c.runs),
            f"{c.charged / c.rows:.0%}",
            fmt_int(c.rows_with_values),
            fmt_seconds(c.seconds),
        ]
        for c in calls
    ]
    rows.append(["baseline: every row sent (no dedup, no cache)", fmt_int(len(frame))] + [""] * 5)
    rows[-1][2] = fmt_int(len(frame))
    rows[-1][4] = "100%"
    print_table(
        ["call", "rows", "rows charged", "runs", "charged ÷ rows", "rows enriched", "time"], rows
    )
    first, rerun, polars_rerun = calls
    goals = [
        Goal(
            CASE,
            f"{fmt_rows(len(frame))}: rows charged ÷ distinct records, first call",
            first.charged / distinct,
            1.0,
        ),
        Goal(
            CASE, f"{fmt_rows(len(frame))}: rows charged on re-run", rerun.charged, 0, unit="rows"
        ),
        Goal(
            CASE,
            f"{fmt_rows(len(frame))}: rows charged on re-run as Polars",
            polars_rerun.charged,
            0,
            unit="rows",
        ),
    ]
    print_goals(goals)
    return goals


def run(sizes: Sequence[int]) -> list[Goal]:
    goals: list[Goal] = []
    for n_rows in sorted({min(n, MAX_ROWS) for n in sizes}):
        goals += run_size(n_rows)
    return goals
