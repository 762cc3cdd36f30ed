"""Run the benchmarks and print each case's figures beside its baselines.

    .venv/bin/python bench/run.py                    # every case at 1,000 / 100,000 / 1,000,000 rows
    .venv/bin/python bench/run.py --quick            # 1,000 and 100,000 rows only
    .venv/bin/python bench/run.py --rows 100000      # one size (repeat --rows for more)
    .venv/bin/python bench/run.py --case 1 --case 2  # some cases only

Every figure is measured in this run, on this machine; ratios compare figures of the same run.
The exit status is 0 even when a goal is missed (``--strict`` makes it 1): a benchmark reports,
it does not assert.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

import case_dedup
import case_end_to_end
import case_memory
import case_payload
import case_results
from _common import (
    QUICK_SIZES,
    SIZES,
    Goal,
    environment,
    fmt_seconds,
    heading,
    load_average,
)

CASES: dict[str, tuple[str, Callable[[Sequence[int], argparse.Namespace], list[Goal]]]] = {
    "1": ("Payload build", lambda sizes, args: case_payload.run(sizes)),
    "2": ("Result parse + join back", lambda sizes, args: case_results.run(sizes)),
    "3": ("End to end against the emulator", lambda sizes, args: case_end_to_end.run(args.quick)),
    "4": ("Peak memory of an enrich call", lambda sizes, args: case_memory.run(sizes)),
    "5": ("Dedup and cache", lambda sizes, args: case_dedup.run(sizes)),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Client overhead and end-to-end efficiency of sixtyfour_frames.",
    )
    parser.add_argument(
        "--rows",
        type=int,
        action="append",
        metavar="N",
        help="frame size in rows (repeatable); default: 1,000, 100,000 and 1,000,000",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a fast smoke run: 1,000 and 100,000 rows, and the shorter variants of cases 3-5",
    )
    parser.add_argument(
        "--case",
        action="append",
        choices=sorted(CASES),
        help="run only this case (repeatable); default: all",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a goal is missed"
    )
    args = parser.parse_args(argv)
    if args.rows and any(n < 1 for n in args.rows):
        parser.error("--rows must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sorted(set(args.rows)) if args.rows else list(QUICK_SIZES if args.quick else SIZES)
    cases = sorted(set(args.case)) if args.case else sorted(CASES)
    started = time.perf_counter()
    print("sixtyfour_frames benchmarks")
    for line in environment():
        print("  " + line)
    print(f"  sizes: {', '.join(f'{n:,}' for n in sizes)} rows; cases: {', '.join(cases)}")
    print("  times are the best of N runs (N in the 'runs' column); ratios are within this run")
    goals: list[Goal] = []
    for key in cases:
        title, run_case = CASES[key]
        heading(f"Case {key}: {title}")
        case_started = time.perf_counter()
        goals += run_case(sizes, args)
        print(f"\n  (case {key} took {fmt_seconds(time.perf_counter() - case_started)})")
    heading("Summary")
    print(f"  at the end: {load_average()}")
    for goal in goals:
        print(f"  {goal.case:<24} {goal.describe()}")
    missed = sum(not goal.passed for goal in goals)
    print(
        f"\n  {len(goals) - missed} of {len(goals)} goals met, {missed} missed; "
        f"total time {fmt_seconds(time.perf_counter() - started)}"
    )
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
