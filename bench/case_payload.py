"""Case 1: payload build — a frame → the exact bytes sent, validation included.

The library path is ``build_payload(frame)`` (validation, per-dtype conversion, row keys, dedup)
then the request bodies of every record, cut into the chunks ``enrich`` sends (5,000 records or
8 MiB each, the defaults): the exact bytes sent, one JSON array per run. Baselines, measured in the same run on the same rows:

* hand-written: ``json.dumps(df.to_dict("records"), default=str)`` (pandas) and
  ``json.dumps(df.to_dicts(), default=str)`` (Polars): what users write without the library
  (it emits ``NaN``, which is not JSON, and stringifies dates however ``str`` does);
* Polars ``write_json()`` on the Polars frame: the native speed limit (no validation, no keys);
* for information, up to 100,000 rows, pandas ``to_json(orient="records", date_format="iso")``
  (lossy: 10 decimals, offsets dropped).

Goals: library ≤ 1.5× Polars ``write_json`` and ≥ 8× faster than the hand-written path, for both
frame kinds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

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
    request_bytes,
    subheading,
)

from sixtyfour_frames._payload import build_payload

CASE = "1. payload build"
MAX_WRITE_JSON_RATIO = 1.5
MIN_SPEEDUP_VS_HAND = 8.0
MAX_INFO_ROWS = 100_000  # pandas to_json takes about 30 s at 1,000,000 rows: info only, skipped


def library(frame: Any) -> Callable[[Callable[[str], None]], int]:
    def run(mark: Callable[[str], None]) -> int:
        payload = build_payload(frame)
        mark("build_payload")
        size = request_bytes(payload)
        mark("request bodies")
        return size

    return run


def hand_pandas(frame: Any) -> Callable[[Callable[[str], None]], int]:
    def run(mark: Callable[[str], None]) -> int:
        return len(json.dumps(frame.to_dict("records"), default=str).encode("utf-8"))

    return run


def hand_polars(frame: Any) -> Callable[[Callable[[str], None]], int]:
    def run(mark: Callable[[str], None]) -> int:
        return len(json.dumps(frame.to_dicts(), default=str).encode("utf-8"))

    return run


def polars_write_json(frame: Any) -> Callable[[Callable[[str], None]], int]:
    def run(mark: Callable[[str], None]) -> int:
        return len(frame.write_json().encode("utf-8"))

    return run


def pandas_to_json(frame: Any) -> Callable[[Callable[[str], None]], int]:
    def run(mark: Callable[[str], None]) -> int:
        text = frame.to_json(orient="records", date_format="iso", date_unit="us")
        return len(text.encode("utf-8"))

    return run


def run_size(n_rows: int) -> list[Goal]:
    pdf, pldf = frames(n_rows)
    repeats = repeats_for(n_rows)
    hand_repeats = 1 if n_rows >= 1_000_000 else repeats
    timings: dict[str, Timing] = {
        "lib_pd": best_of(library(pdf), repeats=repeats),
        "lib_pl": best_of(library(pldf), repeats=repeats),
        "hand_pd": best_of(hand_pandas(pdf), repeats=hand_repeats),
        "hand_pl": best_of(hand_polars(pldf), repeats=hand_repeats),
        "write_json": best_of(polars_write_json(pldf), repeats=repeats),
    }
    if n_rows <= MAX_INFO_ROWS:
        timings["to_json"] = best_of(pandas_to_json(pdf), repeats=repeats)
    reference = timings["write_json"].best

    def row(label: str, key: str, hand: str | None) -> list[str]:
        t = timings[key]
        speedup = fmt_ratio(timings[hand].best / t.best) if hand else ""
        return [
            label,
            fmt_seconds(t.best),
            fmt_bytes(t.result / t.best) + "/s",
            fmt_bytes(t.result),
            fmt_ratio(t.best / reference),
            speedup,
            str(t.runs),
        ]

    def phases(key: str) -> list[list[str]]:
        t = timings[key]
        return [
            [f"    {name}", fmt_seconds(seconds), "", "", fmt_ratio(seconds / reference), "", ""]
            for name, seconds in t.phases.items()
        ]

    subheading(f"{CASE} — {fmt_rows(n_rows)} × {len(pdf.columns)} columns")
    rows = [
        row("sixtyfour_frames, pandas frame", "lib_pd", "hand_pd"),
        *phases("lib_pd"),
        row("sixtyfour_frames, Polars frame", "lib_pl", "hand_pl"),
        *phases("lib_pl"),
        row('hand-written json.dumps(df.to_dict("records"), default=str)', "hand_pd", None),
        row("hand-written json.dumps(df.to_dicts(), default=str), Polars", "hand_pl", None),
        row("Polars write_json() (reference)", "write_json", None),
    ]
    if "to_json" in timings:
        rows.append(row('info: pandas to_json(orient="records", iso) (lossy)', "to_json", None))
    header = ["path", "best", "throughput", "output", "÷ write_json", "× faster than hand", "runs"]
    print_table(header, rows)
    goals: list[Goal] = []
    for kind, lib, hand in (("pandas", "lib_pd", "hand_pd"), ("Polars", "lib_pl", "hand_pl")):
        goals.append(
            Goal(
                CASE,
                f"{fmt_rows(n_rows)}, {kind}: library time ÷ Polars write_json",
                timings[lib].best / reference,
                MAX_WRITE_JSON_RATIO,
            )
        )
        goals.append(
            Goal(
                CASE,
                f"{fmt_rows(n_rows)}, {kind}: speed-up over the hand-written path",
                timings[hand].best / timings[lib].best,
                MIN_SPEEDUP_VS_HAND,
                higher_is_better=True,
            )
        )
    print_goals(goals)
    return goals


def run(sizes: Sequence[int]) -> list[Goal]:
    goals: list[Goal] = []
    for n_rows in sizes:
        goals += run_size(n_rows)
    return goals
