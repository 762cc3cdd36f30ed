"""``python -m sixtyfour_frames.emulator``: serve the emulator in the foreground.

Prints one line, ``Sixtyfour emulator listening on http://HOST:PORT (x-api-key: KEY)``, once the
port is bound (the subprocess mode of ``Emulator`` waits for it), then serves until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from sixtyfour_frames.emulator._emulator import serve


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sixtyfour_frames.emulator",
        description="Serve a local emulator of Sixtyfour's workflow API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="generated (sk-emu-…) when omitted")
    parser.add_argument("--pace", type=float, default=0.05, help="seconds per row per block")
    parser.add_argument("--block-latency", type=float, default=0.5, help="seconds per block")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inline-results-max-rows", type=int, default=50)
    parser.add_argument("--download-expires-in-seconds", type=int, default=900)
    parser.add_argument("--no-idempotency", action="store_true", help="ignore Idempotency-Key")
    parser.add_argument("--csv-bom", action="store_true", help="prefix CSV files with a BOM")
    parser.add_argument(
        "--manual-clock", action="store_true", help="time moves only via /_emulator/advance"
    )
    return parser


def _announce(base_url: str, api_key: str) -> None:
    print(f"Sixtyfour emulator listening on {base_url} (x-api-key: {api_key})", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and serve until interrupted."""
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a foreground server stops
        serve(
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            pace=args.pace,
            seed=args.seed,
            block_latency=args.block_latency,
            idempotency=not args.no_idempotency,
            inline_results_max_rows=args.inline_results_max_rows,
            download_expires_in_seconds=args.download_expires_in_seconds,
            csv_bom=args.csv_bom,
            manual_clock=args.manual_clock,
            on_ready=_announce,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
