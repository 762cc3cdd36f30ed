"""``make soak``: the fault matrix of reliability.md §7, K times with random seeds, and its figures.

Every scenario of ``tests/fault_matrix.py`` (the functions ``tests/test_faults.py`` runs once with
seed 0) runs again with K random seeds, for both clients where it has both; a seed varies fault
counts, kinds and orders within each scenario's meaning, and the client's jitter. Seeds are split
over worker processes, each with its own emulators. The crash points come from running
``tests/test_credit_safety.py``'s crash test (each point in a killed subprocess).

Prints the "Figures to report" table of §7 and exits 1 when a figure misses its target::

    python scripts/soak.py                 # 20 seeds
    python scripts/soak.py --seeds 5 --first-seed 1234 --only a0
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for `tests.fault_matrix`

from tests import fault_matrix as fm  # noqa: E402

CRASH_TEST = (
    "tests/test_credit_safety.py::test_a_crash_at_any_point_then_a_rerun_pays_once_per_chunk"
)
CRASH_POINTS_WANTED = 8
MAX_ATTEMPTS = fm.DEFAULT_POLICY.max_retries + 1


# ---------------------------------------------------------------- running


def _entries(only: str | None, skip_known_bugs: bool, *, first: bool) -> list[fm.Scenario]:
    """The scenarios of one pass; those no seed changes run in the first pass only."""
    return [
        entry
        for entry in fm.MATRIX.values()
        if entry.soak
        and (first or entry.seeded)
        and (only is None or only in entry.name)
        and not (skip_known_bugs and entry.known_bug)
    ]


def _scratch_parent() -> str | None:
    """tmpfs when there is one: the ledger fsyncs every state change, and the soak is about the
    client's decisions under faults, not about the disk (the crash tests cover durability)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _run_seed(job: tuple[int, str | None, bool, bool]) -> list[fm.Outcome]:
    """One pass of the matrix with one seed, in its own scratch directory and emulators."""
    seed, only, skip_known_bugs, first = job
    outcomes: list[fm.Outcome] = []
    with (
        tempfile.TemporaryDirectory(prefix=f"soak-{seed}-", dir=_scratch_parent()) as scratch,
        fm.Playground(Path(scratch)) as playground,
    ):
        index = 0
        for entry in _entries(only, skip_known_bugs, first=first):
            for kind in entry.kinds:
                index += 1
                outcomes.append(fm.soak_case(playground, entry, kind, seed, index))
    return outcomes


@dataclass
class CrashFigure:
    resumed: int = 0
    tested: int = 0
    note: str = ""


def _crash_points() -> CrashFigure:
    if not (ROOT / CRASH_TEST.split("::")[0]).exists():
        return CrashFigure(note="see tests/test_credit_safety.py (not present)")
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "crash.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        subprocess.run(
            [*command, f"--junitxml={report}", CRASH_TEST],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        if not report.exists():
            return CrashFigure(note="the crash test did not run")
        cases = ElementTree.parse(report).getroot().iter("testcase")
        outcomes = [
            not any(child.tag in ("failure", "error", "skipped") for child in c) for c in cases
        ]
    return CrashFigure(resumed=sum(outcomes), tested=len(outcomes))


# ---------------------------------------------------------------- the figures


@dataclass
class Figure:
    name: str
    target: str
    value: str
    met: bool


def _percentile(values: Sequence[int], fraction: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]) if ordered else 0.0


def figures(outcomes: Sequence[fm.Outcome], crash: CrashFigure) -> list[Figure]:
    planned = sum(o.faults_planned for o in outcomes)
    experienced = sum(o.faults_experienced for o in outcomes)
    survived = sum(o.survived for o in outcomes)
    attempts = [n for o in outcomes for n in o.attempts]
    peak = max((o.peak_per_minute for o in outcomes), default=0)
    share = experienced / planned if planned else 1.0
    return [
        Figure(
            "faults planned / experienced",
            "100% experienced",
            f"{planned} / {experienced} ({share:.1%})",
            experienced == planned,
        ),
        Figure(
            "fault scenarios survived / total",
            "100%",
            f"{survived} / {len(outcomes)} ({survived / max(1, len(outcomes)):.1%})",
            survived == len(outcomes),
        ),
        _zero("duplicate runs", sum(o.duplicate_runs for o in outcomes)),
        _zero("rows charged twice", sum(o.rows_charged_twice for o in outcomes)),
        _zero("paid results lost (rows)", sum(o.paid_results_lost for o in outcomes)),
        _zero(
            "POSTs after a local validation failure",
            sum(o.posts_after_validation_failure for o in outcomes),
        ),
        _zero("key leaks", sum(len(o.key_leaks) for o in outcomes)),
        Figure(
            "retry amplification: attempts per request (p50 / max)",
            f"max ≤ {MAX_ATTEMPTS} (max_retries + 1)",
            f"{_percentile(attempts, 0.5):g} / {max(attempts, default=0)} "
            f"over {len(attempts)} requests",
            max(attempts, default=0) <= MAX_ATTEMPTS,
        ),
        Figure(
            "peak requests per minute (one client)",
            f"≤ {fm.RATE_LIMIT_PER_MINUTE}",
            str(peak),
            peak <= fm.RATE_LIMIT_PER_MINUTE,
        ),
        _zero("leaked connections", sum(o.leaked_connections for o in outcomes)),
        Figure(
            "crash points resumed / tested",
            f"{CRASH_POINTS_WANTED}/{CRASH_POINTS_WANTED}",
            crash.note or f"{crash.resumed}/{crash.tested}",
            bool(crash.note)
            or (crash.resumed == crash.tested and crash.tested >= CRASH_POINTS_WANTED),
        ),
    ]


def _zero(name: str, value: int) -> Figure:
    return Figure(name, "0", str(value), value == 0)


def table(rows: Sequence[Figure]) -> str:
    lines = ["| Figure | Target | Result | Met |", "|---|---|---|---|"]
    lines += [
        f"| {r.name} | {r.target} | {r.value} | {'yes' if r.met else '**NO**'} |" for r in rows
    ]
    return "\n".join(lines)


def failures(outcomes: Sequence[fm.Outcome]) -> list[str]:
    """One line per failing scenario and client kind: how many seeds, and the first reason."""
    grouped: dict[tuple[str, str], list[fm.Outcome]] = {}
    for outcome in outcomes:
        if not outcome.survived or outcome.problems():
            grouped.setdefault((outcome.scenario, outcome.kind), []).append(outcome)
    lines = []
    for (name, kind), bad in sorted(grouped.items()):
        first = bad[0]
        reason = first.failure or "; ".join(first.problems())
        known = fm.MATRIX[name].known_bug
        tag = f" [known bug: {known}]" if known else ""
        lines.append(
            f"- {name} ({kind}): {len(bad)} seed(s), e.g. seed {first.seed}: {reason}{tag}"
        )
    return lines


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds (default 20)")
    parser.add_argument("--first-seed", type=int, help="seeds first-seed, first-seed+1, …")
    parser.add_argument("--only", help="run only scenarios whose name contains this")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--skip-known-bugs", action="store_true", help="leave out known bugs")
    parser.add_argument("--no-crash-points", action="store_true", help="skip the crash test")
    args = parser.parse_args(argv)
    first = (
        args.first_seed
        if args.first_seed is not None
        else random.SystemRandom().randrange(1, 2**31)
    )
    seeds = [first + i for i in range(args.seeds)]
    entries = _entries(args.only, args.skip_known_bugs, first=True)
    once = [e.name for e in entries if not e.seeded]
    print(
        f"soak: {len(seeds)} seeds from {first} × {len(entries)} scenarios "
        f"({sum(len(e.kinds) for e in entries)} runs a seed; seed-independent, run once: "
        f"{', '.join(once) or 'none'}), {args.workers} worker(s)",
        flush=True,
    )
    started = time.perf_counter()
    outcomes: list[fm.Outcome] = []
    jobs = [(seed, args.only, args.skip_known_bugs, seed == first) for seed in seeds]
    context = multiprocessing.get_context("spawn")
    with context.Pool(max(1, args.workers)) as pool:
        for seed, result in zip(seeds, pool.imap(_run_seed, jobs), strict=True):
            outcomes += result
            ok = sum(o.survived and not o.problems() for o in result)
            print(f"  seed {seed}: {ok}/{len(result)} clean", flush=True)
    crash = CrashFigure(note="skipped (--no-crash-points)")
    if not args.no_crash_points:
        crash = _crash_points()
    rows = figures(outcomes, crash)
    elapsed = time.perf_counter() - started
    print()
    print(f"Figures over {len(seeds)} seeds ({len(outcomes)} scenario runs, {elapsed:.0f} s):")
    print()
    print(table(rows))
    problems = failures(outcomes)
    if problems:
        print("\nScenarios that missed a target:")
        print("\n".join(problems))
    return 0 if all(row.met for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
