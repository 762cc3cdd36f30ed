"""Case 4: peak memory (RSS growth) of an enrich call, over the payload's size in bytes.

Each measurement runs in a fresh child process (this file with ``--child``), so that nothing the
parent allocated counts. The child builds its frame (and, for the pipeline, reads the result CSV
the parent wrote) first, then resets the kernel's peak-RSS mark (``echo 5 > /proc/self/clear_refs``, Linux), reads
its RSS, runs the measured call and reads the peak again: the growth is the peak during the call
minus the RSS before it. On Linux the peak is read as ``VmHWM`` from ``/proc/self/status``, the
process's own high-water mark: ``ru_maxrss`` is the same mark but also keeps the peak of the
process image before ``exec`` (a forked copy of the parent, hundreds of MB here) and of exited
threads, neither of which ``clear_refs`` resets. Where the peak cannot be reset (not Linux), the
growth is ``ru_maxrss`` after minus ``ru_maxrss`` before, which can only under-state it (the
table marks it ``≥``).

Two measurements, each for the pandas and the Polars frame:

* **enrich**: ``sixtyfour_frames.enrich`` against the emulator (pace 0, in its own child
  process so that its memory is not counted), default chunking (5,000 records) and concurrency.
  The emulator builds every run's output in Python and takes about 4–5 minutes for 1,000,000
  rows on a 2-CPU machine, so this runs at most :data:`ENRICH_MAX_ROWS` rows (≈ 1 minute);
* **payload + join**: the same work without HTTP, at the full size: ``build_payload`` →
  the request body of every chunk → ``parse_result`` of the whole result CSV (case 2's file, made
  by the parent and read by the child before the measurement) → ``join_results``.

The ratio is RSS growth ÷ the payload's size (the bytes of every record sent, as JSON).
Goal: ≤ 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    Goal,
    fmt_bytes,
    fmt_ratio,
    fmt_rows,
    fmt_seconds,
    make_pandas,
    print_goals,
    print_table,
    request_bytes,
    subheading,
    to_polars,
)

CASE = "4. peak memory"
ENRICH_MAX_ROWS = 200_000
MIN_GOAL_ROWS = 100_000
MAX_GROWTH_RATIO = 2.0
POLL = 0.02
KINDS = ("pandas", "polars")


# ---------------------------------------------------------------------------------------------
# The child
# ---------------------------------------------------------------------------------------------


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes (None where there is no such file)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(field + r":\s+(\d+) kB", status)
    return int(found.group(1)) * 1024 if found else None


def _rss_bytes() -> int | None:
    return _status_bytes("VmRSS")


def _peak_bytes() -> int:
    """The process's peak RSS since start or the last reset (``ru_maxrss`` without /proc)."""
    peak = _status_bytes("VmHWM")
    return peak if peak is not None else _maxrss_bytes()


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _frame(kind: str, n_rows: int) -> Any:
    frame = make_pandas(n_rows)
    return to_polars(frame) if kind == "polars" else frame


def child_enrich(kind: str, n_rows: int) -> dict[str, Any]:
    import sixtyfour_frames as sf
    from sixtyfour_frames._ledger import Ledger
    from sixtyfour_frames._payload import build_payload
    from sixtyfour_frames.emulator import Emulator

    frame = _frame(kind, n_rows)
    with (
        Emulator(mode="subprocess") as emu,
        tempfile.TemporaryDirectory(prefix="sf-bench-") as home,
        Ledger(Path(home) / "ledger") as ledger,
        sf.Client(api_key=emu.api_key, base_url=emu.base_url) as client,
    ):
        workflow = Emulator.workflow_id("company_enrichment")
        gc.collect()
        reset = _reset_peak()
        before = _rss_bytes() if reset else None
        peak_before = _peak_bytes()
        started = time.perf_counter()
        out = sf.enrich(frame, workflow, client=client, ledger=ledger, progress=False, poll=POLL)
        seconds = time.perf_counter() - started
        peak = _peak_bytes()
        runs = emu.ledger()["runs_created"]
    rows_out = len(out)
    del out
    gc.collect()
    payload_bytes = request_bytes(build_payload(frame))
    return {
        "reset": reset,
        "before": before if before is not None else peak_before,
        "peak": peak,
        "payload_bytes": payload_bytes,
        "seconds": seconds,
        "runs": runs,
        "rows_out": rows_out,
    }


def child_pipeline(kind: str, n_rows: int, csv_path: Path) -> dict[str, Any]:
    from sixtyfour_frames._join import join_results
    from sixtyfour_frames._payload import build_payload
    from sixtyfour_frames._results import parse_result

    frame = _frame(kind, n_rows)
    data = csv_path.read_bytes()  # made by the parent: no setup garbage for the call to reuse
    gc.collect()
    reset = _reset_peak()
    before = _rss_bytes() if reset else None
    peak_before = _peak_bytes()
    started = time.perf_counter()
    payload = build_payload(frame)
    payload_bytes = request_bytes(payload)
    table = parse_result(data, "csv")
    joined, _ = join_results(
        frame, table, row_keys=payload.row_key_array, sent_columns=payload.columns
    )
    seconds = time.perf_counter() - started
    peak = _peak_bytes()
    return {
        "reset": reset,
        "before": before if before is not None else peak_before,
        "peak": peak,
        "payload_bytes": payload_bytes,
        "seconds": seconds,
        "runs": 0,
        "rows_out": len(joined),
    }


def child_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=("enrich", "pipeline"), required=True)
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--csv", type=Path, help="the result CSV (pipeline only)")
    args = parser.parse_args(argv)
    if args.child == "enrich":
        outcome = child_enrich(args.kind, args.rows)
    else:
        outcome = child_pipeline(args.kind, args.rows, args.csv)
    print(json.dumps(outcome))
    return 0


# ---------------------------------------------------------------------------------------------
# The parent
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    label: str
    kind: str
    n_rows: int
    reset: bool
    before: int
    peak: int
    payload_bytes: int
    seconds: float
    runs: int

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.before)

    @property
    def ratio(self) -> float:
        return self.growth / self.payload_bytes


def write_result_csv(n_rows: int, path: Path) -> None:
    """The result CSV of case 2 for the ``n_rows`` test frame, written to ``path``."""
    from case_results import result_csv, result_table

    from sixtyfour_frames._payload import build_payload

    frame = to_polars(make_pandas(n_rows))
    path.write_bytes(result_csv(result_table(frame, build_payload(frame).row_keys)))


def measure(
    what: str, label: str, kind: str, n_rows: int, csv_path: Path | None = None
) -> Measurement:
    command = [
        sys.executable,
        str(BENCH_DIR / "case_memory.py"),
        f"--child={what}",
        f"--kind={kind}",
        f"--rows={n_rows}",
    ]
    if csv_path is not None:
        command.append(f"--csv={csv_path}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {what} child failed:\n{done.stderr}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return Measurement(
        label=label,
        kind=kind,
        n_rows=n_rows,
        reset=bool(data["reset"]),
        before=int(data["before"]),
        peak=int(data["peak"]),
        payload_bytes=int(data["payload_bytes"]),
        seconds=float(data["seconds"]),
        runs=int(data["runs"]),
    )


def run(sizes: Sequence[int]) -> list[Goal]:
    n_max = max(sizes)
    n_enrich = min(n_max, ENRICH_MAX_ROWS)
    results = [
        measure("enrich", f"enrich against the emulator, {kind}", kind, n_enrich) for kind in KINDS
    ]
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as scratch:
        csv_path = Path(scratch) / "results.csv"
        write_result_csv(n_max, csv_path)
        results += [
            measure("pipeline", f"payload + parse + join, {kind}", kind, n_max, csv_path)
            for kind in KINDS
        ]
    subheading(f"{CASE} — RSS growth during the call ÷ the payload's bytes")
    rows = [
        [
            m.label,
            fmt_rows(m.n_rows),
            fmt_bytes(m.payload_bytes),
            fmt_bytes(m.before),
            fmt_bytes(m.peak),
            fmt_bytes(m.growth) + ("" if m.reset else " (≥)"),
            fmt_ratio(m.ratio),
            fmt_seconds(m.seconds),
        ]
        for m in results
    ]
    header = ["call", "rows", "payload", "RSS before", "peak RSS", "growth", "÷ payload", "time"]
    print_table(header, rows)
    if n_enrich < n_max:
        print(
            f"\n  enrich measured at {fmt_rows(n_enrich)}, not {fmt_rows(n_max)}: the emulator "
            "takes minutes for 1,000,000 rows (see the module docstring)."
        )
    if not all(m.reset for m in results):
        print("\n  (≥): the peak RSS mark could not be reset, so the growth is a lower bound.")
    goals = [
        Goal(
            CASE,
            f"{m.label}, {fmt_rows(m.n_rows)}: RSS growth ÷ payload bytes",
            m.ratio,
            MAX_GROWTH_RATIO,
        )
        for m in results
        if m.n_rows >= MIN_GOAL_ROWS
    ]
    if len(goals) < len(results):
        print(
            f"\n  no goal below {fmt_rows(MIN_GOAL_ROWS)}: a payload of a few hundred kB is "
            "dwarfed by one-time costs (thread pools, HTTP client, Arrow and Polars kernels)."
        )
    print_goals(goals)
    return goals


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
