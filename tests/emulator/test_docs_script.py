"""A plain urllib script written only from the public docs works against the emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sixtyfour_frames.emulator import Emulator

SCRIPT = Path(__file__).with_name("docs_only_script.py")


def _run_script(emu: Emulator, workflow: str) -> tuple[int, dict[str, object]]:
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            emu.base_url,
            emu.api_key,
            Emulator.workflow_id(workflow),
            "0.02",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.stderr == ""
    return completed.returncode, json.loads(completed.stdout)


def test_the_docs_only_script_runs_polls_and_downloads() -> None:
    # Wall clock, small pace: the script really polls a few times before the run completes.
    with Emulator(pace=0.02, block_latency=0.05) as emu:
        code, output = _run_script(emu, "company_enrichment")
        ledger = emu.ledger()
        posts = emu.requests("run")
    assert code == 0
    assert output["status"] == "completed"
    assert output["row_count"] == 3
    rows = output["rows"]
    assert isinstance(rows, list)
    assert [row["company_name"] for row in rows] == ["Acme Corp", "Globex, Inc.", "Initech"]
    assert all(row["domain"] and row["industry"] for row in rows)
    assert rows[0]["website"] == "acme.example"
    assert ledger["requests"]["live_status"] >= 2
    assert ledger["file_requests_with_credentials"] == 0
    assert ledger["runs_created"] == 1
    assert posts[0].header("content-type") == "application/json"


def test_the_docs_only_script_sees_a_failed_run() -> None:
    with Emulator() as emu:
        code, output = _run_script(emu, "failing")
    assert (code, output["status"]) == (1, "failed")
