"""``sixtyfour-frames``: a thin argparse CLI over the public API.

Exit codes: 0 success; 1 a library error (one line on stderr says why and what to do);
2 bad usage; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sixtyfour_frames._client import Client
from sixtyfour_frames._config import API_KEY_ENV, BASE_URL_ENV
from sixtyfour_frames._enrich import EnrichInterrupted
from sixtyfour_frames._errors import SixtyfourError
from sixtyfour_frames._ledger_files import HOME_ENV as LEDGER_HOME_ENV

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    try:
        with _maybe_emulator(args.emulator):
            code: int = args.handler(args)
            return code
    except (EnrichInterrupted, KeyboardInterrupt) as interrupted:
        print(f"sixtyfour-frames: {interrupted or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (SixtyfourError, OSError) as error:
        print(f"sixtyfour-frames: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_ERROR


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


@contextlib.contextmanager
def _maybe_emulator(wanted: bool) -> Iterator[None]:
    """``--emulator``: point this command at a fresh local emulator (its URL and key)."""
    if not wanted:
        yield
        return
    from sixtyfour_frames.emulator import Emulator

    saved = {name: os.environ.get(name) for name in (API_KEY_ENV, BASE_URL_ENV, LEDGER_HOME_ENV)}
    # A throwaway emulator gets a throwaway ledger: its rows must not sit in the user's ledger.
    with Emulator() as emu, tempfile.TemporaryDirectory(prefix="sixtyfour-emulator-") as home:
        os.environ[API_KEY_ENV] = emu.api_key
        os.environ[BASE_URL_ENV] = emu.base_url
        os.environ.setdefault(LEDGER_HOME_ENV, home)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sixtyfour-frames",
        description="Enrich CSV/Parquet/NDJSON files with Sixtyfour workflows; manage runs.",
        parents=[_global_flags(default=False)],
    )
    # The subcommands accept the same flags; SUPPRESS keeps a flag given before the subcommand
    # from being reset by the subcommand's own default.
    common = _global_flags(default=argparse.SUPPRESS)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_enrich(commands, common)
    _add_runs(commands, common)
    _add_emulator(commands, common)
    _add_demo(commands, common)
    return parser


def _global_flags(*, default: Any) -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "--emulator",
        action="store_true",
        default=default,
        help="run against a fresh local emulator",
    )
    flags.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log progress lines (INFO)"
    )
    return flags


def _add_enrich(commands: Any, common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("enrich", parents=[common], help="enrich a file with a workflow")
    cmd.add_argument("input", type=Path, help="CSV, Parquet or NDJSON file")
    cmd.add_argument(
        "-w", "--workflow", required=True, help="workflow id (or a built-in name with --emulator)"
    )
    cmd.add_argument(
        "-o", "--output", required=True, type=Path, help="output .csv, .parquet or .ndjson"
    )
    cmd.add_argument("--columns", help="comma-separated columns to send (default: all)")
    cmd.add_argument(
        "--rename",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="send a column under another name",
    )
    cmd.add_argument(
        "--on", help="comma-separated columns to join on when the workflow drops the row key"
    )
    cmd.add_argument("--multiple", choices=["first", "list", "explode"], default="first")
    cmd.add_argument("--chunk-size", type=int, help="records per run")
    cmd.add_argument("--max-concurrent-runs", type=int, help="runs at once")
    cmd.add_argument(
        "--timeout", type=float, help="seconds to wait before giving up (runs keep going)"
    )
    cmd.add_argument("--errors", choices=["raise", "keep"], default="raise")
    cmd.add_argument("--refresh", action="store_true", help="ignore rows cached in the ledger")
    cmd.add_argument("--no-progress", action="store_true", help="no progress bar")
    cmd.set_defaults(handler=_cmd_enrich)


def _add_runs(commands: Any, common: argparse.ArgumentParser) -> None:
    runs = commands.add_parser(
        "runs", parents=[common], help="list, watch, cancel and download runs"
    )
    sub = runs.add_subparsers(title="runs commands", metavar="ACTION")
    listing = sub.add_parser(
        "list", parents=[common], help="recent runs on the server and in the ledger"
    )
    listing.add_argument("--status", help="active, queued, running, completed, failed, cancelled")
    listing.add_argument("--workflow", help="only runs of this workflow")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(handler=_cmd_runs_list)
    for name, handler, text in (
        ("status", _cmd_runs_status, "live status of a run"),
        ("wait", _cmd_runs_wait, "wait until a run ends"),
        ("cancel", _cmd_runs_cancel, "cancel a run"),
    ):
        action = sub.add_parser(name, parents=[common], help=text)
        action.add_argument("run_id")
        if name == "wait":
            action.add_argument("--timeout", type=float)
        action.set_defaults(handler=handler)
    download = sub.add_parser(
        "download", parents=[common], help="download a run's final result file"
    )
    download.add_argument("run_id")
    download.add_argument("-o", "--output", required=True, type=Path)
    download.add_argument("--format", choices=["csv", "json", "ndjson"], default="csv")
    download.set_defaults(handler=_cmd_runs_download)


def _add_emulator(commands: Any, common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser(
        "emulator", parents=[common], help="serve the local Sixtyfour emulator"
    )
    cmd.add_argument("--host", default="127.0.0.1")
    cmd.add_argument("--port", type=int, default=8000)
    cmd.add_argument("--api-key", help="the key clients must send (default: generated, printed)")
    cmd.add_argument("--pace", type=float, default=0.0, help="seconds per row per block")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.set_defaults(handler=_cmd_emulator)


def _add_demo(commands: Any, common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser(
        "demo", parents=[common], help="enrich the shipped sample on the emulator"
    )
    cmd.add_argument("--input", type=Path, default=Path("examples/companies.csv"))
    cmd.add_argument("--output", type=Path, default=Path("examples/out/companies_enriched.parquet"))
    cmd.add_argument("--ledger", type=Path, default=Path("examples/out/ledger"))
    cmd.set_defaults(handler=_cmd_demo)


# ---------------------------------------------------------------- handlers


def _workflow_id(name: str) -> str:
    """Built-in emulator workflow names are accepted when running against the emulator."""
    if os.environ.get(BASE_URL_ENV, "").startswith("http://127.0.0.1"):
        from sixtyfour_frames.emulator import Emulator

        with contextlib.suppress(KeyError, ValueError):
            return Emulator.workflow_id(name)
    return name


def _cmd_enrich(args: argparse.Namespace) -> int:
    from sixtyfour_frames import _io
    from sixtyfour_frames._enrich import enrich

    frame = _io.read_frame(args.input)
    result = enrich(
        frame,
        _workflow_id(args.workflow),
        columns=_split(args.columns),
        rename=dict(item.split("=", 1) for item in args.rename) or None,
        on=_split(args.on),
        multiple=args.multiple,
        chunk_size=args.chunk_size,
        max_concurrent_runs=args.max_concurrent_runs,
        timeout=args.timeout,
        errors=args.errors,
        refresh=args.refresh,
        progress=False if args.no_progress else None,
    )
    _io.write_frame(result, args.output)
    print(f"wrote {len(result)} rows to {args.output}")
    return EXIT_OK


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _cmd_runs_list(args: argparse.Namespace) -> int:
    from sixtyfour_frames._ledger import Ledger

    workflow = _workflow_id(args.workflow) if args.workflow else None
    with Client() as client:
        runs = client.list_runs(status=args.status, workflow_id=workflow, limit=args.limit)
    with Ledger() as ledger:
        for run in runs:
            known = ledger.by_job_id(run.job_id)
            origin = f"ledger:{known.state.value}" if known else "-"
            print(
                f"{run.job_id}  {run.status:<10}  {run.queued_at or '':<25}  {run.workflow_name}  {origin}"
            )
    return EXIT_OK


def _cmd_runs_status(args: argparse.Namespace) -> int:
    with Client() as client:
        status = client.live_status(args.run_id)
    print(
        json.dumps(
            {
                "run_id": status.run_id,
                "status": status.overall_status,
                "progress": status.overall_progress_percentage,
                "current_block": status.current_block,
                "blocks": [
                    (b.block_name, b.status, b.processed_count, b.total_count)
                    for b in status.blocks
                ],
            }
        )
    )
    return EXIT_OK


def _cmd_runs_wait(args: argparse.Namespace) -> int:
    with Client() as client:
        status = client.wait(args.run_id, timeout=args.timeout)
    print(f"{status.run_id} {status.overall_status}")
    return EXIT_OK


def _cmd_runs_cancel(args: argparse.Namespace) -> int:
    with Client() as client:
        result = client.cancel_run(args.run_id)
    print(f"{result.job_id} {result.status}")
    return EXIT_OK


def _cmd_runs_download(args: argparse.Namespace) -> int:
    from sixtyfour_frames import _io

    with Client() as client:
        table = client.download_results(args.run_id, format=args.format)
    _io.write_table(table, args.output)
    print(f"wrote {table.num_rows} rows to {args.output}")
    return EXIT_OK


def _cmd_emulator(args: argparse.Namespace) -> int:
    from sixtyfour_frames.emulator import serve

    def announce(base_url: str, api_key: str) -> None:
        print(f"Sixtyfour emulator listening on {base_url} (Ctrl-C stops it). Point clients at it:")
        print(f"  export {BASE_URL_ENV}={base_url} {API_KEY_ENV}={api_key}", flush=True)

    serve(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        pace=args.pace,
        seed=args.seed,
        on_ready=announce,
    )
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from sixtyfour_frames._demo import run_demo

    return run_demo(input_path=args.input, output_path=args.output, ledger_home=args.ledger)
