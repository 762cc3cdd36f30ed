"""Case 2: result parse + join back.

The result file is generated here, the way the workflow API returns one: a CSV with one row per
record sent, in shuffled order, holding the row key (``__sixtyfour_row``, taken from a real
payload of the frame), the 8 input columns echoed back as text, and 6 new columns (text, an int,
a float, a bool, a URL, and a free-text column whose cells are often quoted multi-line text with
commas and doubled quotes).

The library path is ``parse_result(csv, "csv")`` then ``join_results(frame, table, row_keys=…,
sent_columns=…)``, onto the pandas and onto the Polars frame. Baselines, in the same run:

* ``pd.read_csv`` + ``DataFrame.merge`` on the row key (what users write by hand);
* ``pyarrow.csv.read_csv`` alone, with ``newlines_in_values=True`` as the multi-line cells need
  (the parse limit: no typing rules, no join);
* for information, ``pl.read_csv`` + ``DataFrame.join``.

Goal: library parse + join ≤ 1.5× the pyarrow read alone.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
from _common import (
    Goal,
    Timing,
    best_of,
    fmt_bytes,
    fmt_ratio,
    fmt_rows,
    fmt_seconds,
    frames,
    print_goals,
    print_table,
    repeats_for,
    subheading,
)

from sixtyfour_frames._join import join_results
from sixtyfour_frames._payload import ROW_KEY, build_payload
from sixtyfour_frames._results import parse_result

CASE = "2. result parse + join"
MAX_PYARROW_RATIO = 1.5
NEW_COLUMNS: tuple[str, ...] = (
    "domain",
    "industry",
    "headcount",
    "revenue_musd",
    "is_public",
    "summary",
)
INDUSTRIES = ("Software", "Retail", "Logistics", "Health care", "Energy", "Finance, banking")
MULTILINE_SHARE = 0.3


def echoed_text(frame: pl.DataFrame) -> pl.DataFrame:
    """The input columns as the API echoes them: JSON values written as CSV text."""
    exprs = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if dtype == pl.Datetime:
            column = column.dt.to_string("%Y-%m-%dT%H:%M:%S%.6f%:z")
        elif dtype == pl.Boolean:
            column = pl.when(column).then(pl.lit("true")).otherwise(pl.lit("false"))
        elif dtype == pl.Float64:
            column = pl.when(column.is_nan()).then(None).otherwise(column)
        exprs.append(column.cast(pl.String).alias(name))
    return frame.select(exprs)


def result_table(frame: pl.DataFrame, keys: Sequence[str], *, seed: int = 2) -> pa.Table:
    """One output row per record key, shuffled; echoed input + 6 new columns + the row key."""
    n = len(keys)
    rng = np.random.default_rng(seed)
    names = frame.get_column("company_name").to_numpy()
    slugs = np.char.replace(np.char.lower(names.astype(str)), " ", "-")
    multiline = rng.random(n) < MULTILINE_SHARE
    first_line = np.char.add(names.astype(str), ' builds "things", at scale')
    second_line = np.char.add("\nFounded in ", rng.integers(1950, 2024, n).astype(str))
    summary = np.where(
        multiline, np.char.add(np.char.add(first_line, second_line), ".\nHiring."), first_line
    )
    columns: dict[str, Any] = {
        ROW_KEY: pa.array(keys, pa.string()),
        **{name: col.to_arrow() for name, col in echoed_text(frame).to_dict().items()},
        "domain": pa.array(np.char.add(slugs, ".example.com"), pa.string()),
        "industry": pa.array(np.array(INDUSTRIES)[rng.integers(0, len(INDUSTRIES), n)]),
        "headcount": pa.array(rng.integers(1, 500_000, n)),
        "revenue_musd": pa.array(np.round(rng.lognormal(3.0, 1.5, n), 3)),
        "is_public": pa.array(rng.random(n) < 0.3),
        "summary": pa.array(summary, pa.string()),
    }
    table = pa.table(columns)
    return table.take(pa.array(rng.permutation(n)))


def result_csv(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink)
    return sink.getvalue()


def library(frame: Any, data: bytes, payload: Any) -> Callable[[Callable[[str], None]], Any]:
    def run(mark: Callable[[str], None]) -> Any:
        table = parse_result(data, "csv")
        mark("parse_result")
        joined, _ = join_results(
            frame, table, row_keys=payload.row_key_array, sent_columns=payload.columns
        )
        mark("join_results")
        return joined

    return run


def pandas_by_hand(
    frame: pd.DataFrame, data: bytes, row_keys: Sequence[str]
) -> Callable[[Callable[[str], None]], Any]:
    def run(mark: Callable[[str], None]) -> Any:
        results = pd.read_csv(io.BytesIO(data))
        mark("read_csv")
        new = results[[ROW_KEY, *NEW_COLUMNS]]
        joined = frame.assign(**{ROW_KEY: row_keys}).merge(new, on=ROW_KEY, how="left")
        mark("merge")
        return joined

    return run


def polars_by_hand(
    frame: pl.DataFrame, data: bytes, row_keys: Sequence[str]
) -> Callable[[Callable[[str], None]], Any]:
    def run(mark: Callable[[str], None]) -> Any:
        results = pl.read_csv(io.BytesIO(data), infer_schema_length=10_000)
        mark("read_csv")
        new = results.select(ROW_KEY, *NEW_COLUMNS)
        keyed = frame.with_columns(pl.Series(ROW_KEY, row_keys, dtype=pl.String))
        joined = keyed.join(new, on=ROW_KEY, how="left", maintain_order="left")
        mark("join")
        return joined

    return run


def pyarrow_read(data: bytes) -> Callable[[Callable[[str], None]], Any]:
    options = pa_csv.ParseOptions(newlines_in_values=True)

    def run(mark: Callable[[str], None]) -> Any:
        return pa_csv.read_csv(io.BytesIO(data), parse_options=options)

    return run


def check_joined(joined: Any, n_rows: int) -> str:
    """A sanity check of the library's output: every row got its new values."""
    frame = joined if isinstance(joined, pd.DataFrame) else joined.to_pandas()
    missing = [name for name in NEW_COLUMNS if name not in frame.columns]
    if missing or len(frame) != n_rows or frame["domain"].isna().any():
        return f"CHECK FAILED (missing columns {missing}, {len(frame)} rows)"
    return "ok"


def run_size(n_rows: int) -> list[Goal]:
    pdf, pldf = frames(n_rows)
    payload = build_payload(pldf)
    table = result_table(pldf, payload.row_keys)
    data = result_csv(table)
    del table
    multiline = data.count(b"\n") - n_rows - 1
    repeats = repeats_for(n_rows)
    timings: dict[str, Timing] = {
        "lib_pd": best_of(library(pdf, data, payload), repeats=repeats),
        "lib_pl": best_of(library(pldf, data, payload), repeats=repeats),
        "hand_pd": best_of(pandas_by_hand(pdf, data, payload.row_keys), repeats=repeats),
        "hand_pl": best_of(polars_by_hand(pldf, data, payload.row_keys), repeats=repeats),
        "pyarrow": best_of(pyarrow_read(data), repeats=repeats),
    }
    checks = {key: check_joined(timings[key].result, n_rows) for key in ("lib_pd", "lib_pl")}
    reference = timings["pyarrow"].best

    def row(label: str, key: str) -> list[str]:
        t = timings[key]
        return [
            label,
            fmt_seconds(t.best),
            fmt_bytes(len(data) / t.best) + "/s",
            fmt_ratio(t.best / reference),
            str(t.runs),
        ]

    def phases(key: str) -> list[list[str]]:
        return [
            [f"    {name}", fmt_seconds(seconds), "", fmt_ratio(seconds / reference), ""]
            for name, seconds in timings[key].phases.items()
        ]

    subheading(
        f"{CASE} — {fmt_rows(n_rows)} of results, CSV {fmt_bytes(len(data))}, "
        f"{1 + len(pdf.columns) + len(NEW_COLUMNS)} columns, {multiline:,} quoted line breaks"
    )
    rows = [
        row(f"sixtyfour_frames → pandas frame (check: {checks['lib_pd']})", "lib_pd"),
        *phases("lib_pd"),
        row(f"sixtyfour_frames → Polars frame (check: {checks['lib_pl']})", "lib_pl"),
        *phases("lib_pl"),
        row("hand-written pd.read_csv + merge", "hand_pd"),
        *phases("hand_pd"),
        row("info: pl.read_csv + join", "hand_pl"),
        row("pyarrow.csv.read_csv alone (reference)", "pyarrow"),
    ]
    print_table(["path", "best", "CSV throughput", "÷ pyarrow read", "runs"], rows)
    goals = [
        Goal(
            CASE,
            f"{fmt_rows(n_rows)}, {kind}: parse + join ÷ pyarrow read alone",
            timings[key].best / reference,
            MAX_PYARROW_RATIO,
        )
        for kind, key in (("pandas", "lib_pd"), ("Polars", "lib_pl"))
    ]
    print_goals(goals)
    return goals


def run(sizes: Sequence[int]) -> list[Goal]:
    goals: list[Goal] = []
    for n_rows in sizes:
        goals += run_size(n_rows)
    return goals
