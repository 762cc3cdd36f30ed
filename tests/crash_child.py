"""One enrich call in a child process, for the crash-and-resume tests of test_credit_safety.

Usage: ``python tests/crash_child.py OUTPUT.parquet WORKFLOW_ID [--refresh]
[--max-concurrent-runs N]``

The API key, base URL and ledger home come from ``SIXTYFOUR_API_KEY``, ``SIXTYFOUR_BASE_URL``
and ``SIXTYFOUR_FRAMES_HOME``; ``SIXTYFOUR_FRAMES_CRASH_AT`` makes the process SIGKILL itself at a
named crash point. The frame is fixed (every run of this script sends the same records), so a
re-run is "the same call" and must never pay again.

``python tests/crash_child.py --serve`` is a fork server for the tests: importing pandas, Polars
and the library takes over a second, and the crash tests start some twenty children, so one
process imports everything once and forks a fresh child per call. Each child is a real process
with its own environment; killing it is exactly as abrupt as killing a freshly started one. The
server is single-threaded Python and forks before any dataframe work, so no lock is held at a fork.
Protocol, one JSON object per line: ``{"start": [args], "env": {...}, "log": path}`` → ``{"pid":
n}``; ``{"wait": pid}`` → ``{"pid": n, "returncode": r}`` (negative: killed by that signal).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

import sixtyfour_frames

ROWS = 120  # > 50 rows per chunk, so each run's results are a file download, not inline
CHUNK_SIZE = 60  # two chunks, two runs
POLL_SECONDS = 0.05


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "company_name": [f"Company {i:03d}" for i in range(ROWS)],
            "rank": list(range(ROWS)),
        }
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("output", type=Path)
    parser.add_argument("workflow_id")
    parser.add_argument("--refresh", action="store_true")
    parser.add_argument("--max-concurrent-runs", type=int, default=None)
    args = parser.parse_args(argv)
    enriched = sixtyfour_frames.enrich(
        frame(),
        args.workflow_id,
        columns=["company_name"],
        chunk_size=CHUNK_SIZE,
        poll=POLL_SECONDS,
        progress=False,
        refresh=args.refresh,
        max_concurrent_runs=args.max_concurrent_runs,
    )
    enriched.to_parquet(args.output)
    return 0


# ---------------------------------------------------------------- fork server


def serve() -> int:
    for line in sys.stdin:
        request: dict[str, Any] = json.loads(line)
        if "start" in request:
            answer = {"pid": _fork_child(request["start"], request["env"], request["log"])}
        else:
            pid = int(request["wait"])
            _, status = os.waitpid(pid, 0)
            answer = {"pid": pid, "returncode": os.waitstatus_to_exitcode(status)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


def _fork_child(argv: list[str], env: dict[str, str], log: str) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _become_child(env, log)
        code = main(argv)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)  # never return into the server loop, nor run its exit handlers


def _become_child(env: dict[str, str], log: str) -> None:
    os.environ.clear()
    os.environ.update(env)
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)  # the server's protocol pipes are not the child's
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)


if __name__ == "__main__":
    sys.exit(serve() if sys.argv[1:] == ["--serve"] else main(sys.argv[1:]))
