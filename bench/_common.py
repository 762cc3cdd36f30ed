"""Shared pieces of the benchmarks: the test frames, timing, formatting, tables and goals.

Nothing here is timed itself. Every case module imports from this one; ``run.py`` drives them.
"""

from __future__ import annotations

import functools
import gc
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

T = TypeVar("T")

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

SIZES: tuple[int, ...] = (1_000, 100_000, 1_000_000)
QUICK_SIZES: tuple[int, ...] = (1_000, 100_000)

COLUMNS: tuple[str, ...] = (
    "company_name",  # strings with repeats (about 4 rows per distinct name)
    "segment",  # categorical with nulls
    "account_id",  # int64 (values above 2**30)
    "score",  # float64 with NaN
    "updated_at",  # tz-aware datetime (America/New_York, so the offset changes with DST)
    "active",  # bool
    "founded_on",  # date
    "employees",  # nullable int (pandas Int64 / Polars Int64 with nulls)
)
SEGMENTS: tuple[str, ...] = ("enterprise", "mid-market", "smb", "startup")
ZONE = "America/New_York"


# ---------------------------------------------------------------------------------------------
# Test data
# ---------------------------------------------------------------------------------------------


def request_bytes(payload: Any) -> int:
    """The bytes of every request body ``enrich`` sends for ``payload`` (default chunks), each
    body built and dropped in turn, as ``enrich`` does."""
    from sixtyfour_frames._chunks import split_chunks

    runs = split_chunks(payload.record_sizes)
    return sum(len(payload.body_for(range(start, stop))) for start, stop, _ in runs)


def make_pandas(n_rows: int, *, seed: int = 0) -> pd.DataFrame:
    """``n_rows`` × the 8 mixed columns of :data:`COLUMNS`, deterministic for a seed.

    Every row is a distinct record (``account_id`` is unique), so nothing is deduplicated unless
    a case repeats rows on purpose.
    """
    rng = np.random.default_rng(seed)
    n_names = max(1, n_rows // 4)
    names = np.array([f"Company {i:07d}" for i in range(n_names)], dtype=object)
    company = names[rng.integers(0, n_names, n_rows)]
    segment_codes = rng.integers(-1, len(SEGMENTS), n_rows)  # -1: null (about 20%)
    score = rng.normal(50.0, 15.0, n_rows)
    score[rng.random(n_rows) < 0.1] = np.nan
    micros = rng.integers(0, 10 * 365 * 86_400 * 10**6, n_rows)
    updated = pd.to_datetime(
        np.datetime64("2016-01-01T00:00:00", "us") + micros.astype("timedelta64[us]")
    )
    founded = np.datetime64("1950-01-01", "D") + rng.integers(0, 27_000, n_rows).astype(
        "timedelta64[D]"
    )
    employees = rng.integers(1, 200_000, n_rows)
    employees_missing = rng.random(n_rows) < 0.2
    return pd.DataFrame(
        {
            # pandas infers its default string dtype (``str`` on pandas 3, ``object`` before).
            "company_name": pd.Series(company.tolist()),
            "segment": pd.Categorical.from_codes(segment_codes, categories=pd.Index(SEGMENTS)),
            "account_id": np.arange(n_rows, dtype=np.int64) * 7_919 + 1_000_000_000,
            "score": score,
            "updated_at": pd.Series(updated).dt.tz_localize("UTC").dt.tz_convert(ZONE),
            "active": rng.random(n_rows) < 0.5,
            # What `.dt.date` gives a pandas user: an object column of datetime.date.
            "founded_on": pd.Series(founded.astype(object), dtype=object),
            "employees": pd.Series(employees, dtype="Int64").mask(employees_missing),
        }
    )


def to_polars(frame: pd.DataFrame) -> pl.DataFrame:
    """The same rows as a Polars frame (Categorical, Datetime(us, zone), Date, Int64 with nulls)."""
    return pl.from_pandas(frame)


@functools.lru_cache(maxsize=1)
def frames(n_rows: int) -> tuple[pd.DataFrame, pl.DataFrame]:
    """The pandas and Polars test frames of ``n_rows`` rows (the last size asked is cached)."""
    pdf = make_pandas(n_rows)
    return pdf, to_polars(pdf)


def with_duplicates(frame: pd.DataFrame, copies: int, *, seed: int = 1) -> pd.DataFrame:
    """Each row of ``frame`` ``copies`` times, shuffled, with a fresh RangeIndex."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.tile(np.arange(len(frame)), copies))
    return frame.iloc[order].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def repeats_for(n_rows: int) -> int:
    """How many times to run a measurement (the best run is reported)."""
    if n_rows <= 10_000:
        return 7
    if n_rows <= 200_000:
        return 3
    return 2


@dataclass(frozen=True)
class Timing:
    """The fastest of ``runs`` runs, with the phases of that run and its return value."""

    best: float
    runs: int
    phases: dict[str, float]
    result: Any


def best_of(
    fn: Callable[[Callable[[str], None]], T], *, repeats: int, budget: float = 20.0
) -> Timing:
    """Run ``fn`` up to ``repeats`` times (fewer once ``budget`` seconds are spent).

    ``fn`` receives ``mark(phase)``: each call closes a phase that started at the previous mark
    (or at the start), so a run reports where its time went. A full ``gc.collect()`` runs before
    each run and is not timed; the garbage collector stays enabled while timing, as in real use.
    """
    best: Timing | None = None
    spent = 0.0
    for run in range(1, repeats + 1):
        gc.collect()
        phases: dict[str, float] = {}
        last = [time.perf_counter()]

        def mark(phase: str, phases: dict[str, float] = phases, last: list[float] = last) -> None:
            now = time.perf_counter()
            phases[phase] = phases.get(phase, 0.0) + now - last[0]
            last[0] = now

        started = last[0]
        result = fn(mark)
        elapsed = time.perf_counter() - started
        if best is None or elapsed < best.best:
            best = Timing(elapsed, run, phases, result)
        else:
            best = Timing(best.best, run, best.phases, best.result)
        del result
        spent += elapsed
        if spent >= budget:
            break
    assert best is not None
    return best


# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------


def fmt_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n_bytes: float) -> str:
    if n_bytes < 1e6:
        return f"{n_bytes / 1e3:.1f} kB"
    return f"{n_bytes / 1e6:.1f} MB"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}×"


def fmt_int(n: int | float) -> str:
    return f"{n:,.0f}"


def fmt_rows(n_rows: int) -> str:
    return f"{n_rows:,} rows"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, indent: str = "") -> None:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return indent + "  ".join(parts).rstrip()

    print(line(header))
    print(indent + "  ".join("-" * width for width in widths))
    for row in rows:
        print(line(row))


def heading(text: str) -> None:
    print()
    print(text)
    print("=" * len(text))


def subheading(text: str) -> None:
    print()
    print(text)
    print("-" * len(text))


# ---------------------------------------------------------------------------------------------
# Goals
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """One goal of the issue and the figure measured for it."""

    case: str
    label: str
    value: float
    limit: float
    higher_is_better: bool = False
    unit: str = "×"
    notes: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "MISS"

    def _number(self, value: float) -> str:
        if self.unit == "×":
            return fmt_ratio(value)
        if self.unit == "rows":
            return fmt_int(value)
        return f"{value:g}{self.unit}"

    def describe(self) -> str:
        sign = "≥" if self.higher_is_better else "≤"
        return f"{self.verdict}  {self.label}: {self._number(self.value)} (goal {sign} {self._number(self.limit)})"


def print_goals(goals: Sequence[Goal]) -> None:
    if not goals:
        return
    print()
    for goal in goals:
        print("  " + goal.describe())


# ---------------------------------------------------------------------------------------------
# The environment, for the header of a run
# ---------------------------------------------------------------------------------------------


def _git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


def load_average() -> str:
    """The machine's load, to judge how noisy the figures are (other processes share the CPUs)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average: unknown"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) on {os.cpu_count()} CPUs"


def environment() -> list[str]:
    import sixtyfour_frames

    cpu = platform.processor() or platform.machine()
    return [
        f"at the start: {load_average()}",
        f"sixtyfour_frames {sixtyfour_frames.__version__} at {_git_revision()}",
        f"Python {platform.python_version()} ({sys.implementation.name}), {platform.system()} "
        f"{platform.release()}, {cpu}, {os.cpu_count()} CPUs",
        f"pandas {pd.__version__}, polars {pl.__version__}, pyarrow {pa.__version__}, "
        f"numpy {np.__version__}",
    ]
