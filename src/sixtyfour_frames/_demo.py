"""``make demo``: the main job on the built-in emulator, start to finish, in about 15 seconds."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sixtyfour_frames._client import Client
from sixtyfour_frames._ledger import Ledger

# Seconds of emulated server time per row per block: ~185 distinct rows take about 15 s,
# long enough to watch the bar move.
DEMO_PACE = 0.04
DEMO_PORT = 6464


@contextlib.contextmanager
def _demo_emulator() -> Iterator[Any]:
    """The emulator on a fixed port: the ledger's row cache is per API server (URL), so a
    second demo reuses the first one's rows only when it talks to the same URL."""
    from sixtyfour_frames.emulator import Emulator

    try:
        emu = Emulator(port=DEMO_PORT, pace=DEMO_PACE).start()
    except OSError:
        print(f"Port {DEMO_PORT} is busy; using a free port (the ledger's rows cannot be reused).")
        emu = Emulator(pace=DEMO_PACE).start()
    try:
        yield emu
    finally:
        emu.stop()


def run_demo(*, input_path: Path, output_path: Path, ledger_home: Path) -> int:
    import pandas as pd

    import sixtyfour_frames  # noqa: F401  (registers df.sixtyfour)
    from sixtyfour_frames.emulator import Emulator

    frame = pd.read_csv(input_path)
    print(f"Read {len(frame)} rows from {input_path}.")
    with _demo_emulator() as emu, Ledger(ledger_home) as ledger:
        print(f"Sixtyfour emulator listening on {emu.base_url}; ledger at {ledger.home}.")
        with Client(api_key=emu.api_key, base_url=emu.base_url) as client:
            started = time.perf_counter()
            enriched = frame.sixtyfour.enrich(
                Emulator.workflow_id("company_enrichment"),
                columns=["company_name", "website", "country"],
                client=client,
                ledger=ledger,
                progress=True,
                poll=0.5,
            )
            elapsed = time.perf_counter() - started
        charged = emu.ledger()["rows_charged"]
    report = enriched.attrs["sixtyfour"]
    print()
    print(enriched.head(8).to_string(max_colwidth=32))
    print()
    print(
        f"{report['rows_in']} rows → {report['rows_unique']} unique → {report['rows_cached']} from the "
        f"ledger → {report['rows_sent']} sent; rows charged by the server this time: {charged}; "
        f"{elapsed:.1f} s."
    )
    print(f"New columns: {', '.join(report['new_columns'])}")
    if report["rows_cached"]:
        print(
            f"Served from the ledger (runs {', '.join(report['cached_from_runs'])}): nothing paid twice."
        )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    enriched.to_parquet(output_path)
    print(f"Wrote {output_path}.")
    return 0
