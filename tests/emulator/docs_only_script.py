"""Run a Sixtyfour workflow and print its results, with the standard library only.

Written only from Sixtyfour's public documentation (docs.sixtyfour.ai: Run Workflow, Get Workflow
Run Live Status, List Run Result Downloads) and the style of Sixtyfour's own example scripts
(urllib, poll live_status until a final state, take the last download link as the final output):
nothing here knows it may be talking to an emulator.

Usage: python docs_only_script.py BASE_URL API_KEY WORKFLOW_ID [POLL_SECONDS]

Prints one JSON object: {"job_id", "status", "row_count", "columns", "rows"}.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

FINAL_STATES = ("completed", "failed", "cancelled")
GIVE_UP_AFTER_SECONDS = 300


def call_api(method: str, url: str, api_key: str, body: Any = None) -> Any:
    """One JSON request with the x-api-key header."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"x-api-key": api_key}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read().decode("utf-8"))


def wait_for_run(base_url: str, api_key: str, job_id: str, poll_seconds: float) -> str:
    """Poll the live status until the run reaches a final state; return that state."""
    deadline = time.monotonic() + GIVE_UP_AFTER_SECONDS
    while True:
        status = call_api("GET", f"{base_url}/workflows/runs/{job_id}/live_status", api_key)
        state = str(status["overall_status"])
        if state in FINAL_STATES or time.monotonic() > deadline:
            return state
        time.sleep(poll_seconds)


def download_text(url: str) -> str:
    """GET a signed download URL (no API key: the URL carries its own authorisation)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        body: bytes = response.read()
    return body.decode("utf-8-sig")


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    base_url, api_key, workflow_id = argv[1].rstrip("/"), argv[2], argv[3]
    poll_seconds = float(argv[4]) if len(argv) > 4 else 8.0

    records = [
        {"company_name": "Acme Corp", "website": "acme.example"},
        {"company_name": "Globex, Inc."},
        {"company_name": "Initech"},
    ]
    query = urllib.parse.urlencode({"workflow_id": workflow_id})
    started = call_api(
        "POST", f"{base_url}/workflows/run?{query}", api_key, {"webhook_payload": records}
    )
    job_id = started["job_id"]

    state = wait_for_run(base_url, api_key, job_id, poll_seconds)
    if state != "completed":
        print(json.dumps({"job_id": job_id, "status": state}))
        return 1

    links = call_api("GET", f"{base_url}/workflows/runs/{job_id}/results/download-links", api_key)
    if not links:
        print(json.dumps({"job_id": job_id, "status": state, "error": "no result files"}))
        return 1
    final = links[-1]  # result files come in block order; the last is the workflow's output
    reader = csv.DictReader(io.StringIO(download_text(final["download_url"]), newline=""))
    rows = list(reader)
    result = {
        "job_id": job_id,
        "status": state,
        "row_count": final["row_count"],
        "columns": reader.fieldnames,
        "rows": rows,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
