"""One enrich call in a child process, for the crash-and-resume tests of test_credit_safety.

Usage: ``python tests/crash_child.py OUTPUT.parquet WORKFLOW_ID``

The API key, base URL and ledger home come from ``SIXTYFOUR_API_KEY``, ``SIXTYFOUR_BASE_URL``
and ``SIXTYFOUR_FRAMES_HOME``; ``SIXTYFOUR_FRAMES_CRASH_AT`` makes the process SIGKILL itself at a
named crash point. The frame is fixed (every run of this script sends the same records), so a
re-run is "the same call" and must never pay again.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
    output, workflow_id = Path(argv[1]), argv[2]
    enriched = sixtyfour_frames.enrich(
        frame(),
        workflow_id,
        columns=["company_name"],
        chunk_size=CHUNK_SIZE,
        poll=POLL_SECONDS,
        progress=False,
    )
    enriched.to_parquet(output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
