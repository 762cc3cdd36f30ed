"""``Emulator``: a local Sixtyfour workflow API for tests and demos, and ``serve`` for the CLI."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Literal

from sixtyfour_frames.emulator._app import build_app
from sixtyfour_frames.emulator._clock import Clock, ManualClock, system_clock
from sixtyfour_frames.emulator._controls import Controls, LocalControls, RemoteControls
from sixtyfour_frames.emulator._errors import EmulatorError
from sixtyfour_frames.emulator._records import RecordedRequest, RunRecord
from sixtyfour_frames.emulator._server import SubprocessServer, ThreadServer, serve_forever
from sixtyfour_frames.emulator._state import EmulatorState, Settings
from sixtyfour_frames.emulator._workflows import BlockSpec, workflow_id_for

Mode = Literal["thread", "subprocess"]
ClockOption = Clock | Literal["manual"] | None


def generate_api_key() -> str:
    """A fresh emulator key, ``sk-emu-`` and 32 hex digits."""
    return "sk-emu-" + secrets.token_hex(16)


def _settings(
    api_key: str,
    *,
    seed: int,
    pace: float,
    block_latency: float,
    idempotency: bool,
    inline_results_max_rows: int,
    download_expires_in_seconds: int,
    csv_bom: bool,
) -> Settings:
    if pace < 0 or block_latency < 0:
        raise ValueError("pace and block_latency must be ≥ 0 seconds")
    if inline_results_max_rows < 0 or download_expires_in_seconds < 0:
        raise ValueError("inline_results_max_rows and download_expires_in_seconds must be ≥ 0")
    return Settings(
        api_key=api_key,
        seed=seed,
        pace=pace,
        block_latency=block_latency,
        idempotency=idempotency,
        inline_results_max_rows=inline_results_max_rows,
        download_expires_in_seconds=download_expires_in_seconds,
        csv_bom=csv_bom,
    )


def _resolve_clock(clock: ClockOption) -> Clock:
    if clock == "manual":
        return ManualClock()
    if clock is None:
        return system_clock
    if callable(clock):
        return clock
    raise ValueError(f'clock must be a callable, "manual" or None, not {clock!r}')


class Emulator:
    """A real HTTP server that behaves like Sixtyfour's workflow API, on loopback.

    Use it as a context manager (or call :meth:`start` / :meth:`stop`) and point your client at
    :attr:`base_url` with :attr:`api_key` as the ``x-api-key``::

        with Emulator() as emu:
            wf = Emulator.workflow_id("company_enrichment")
            httpx.post(f"{emu.base_url}/workflows/run", params={"workflow_id": wf},
                       headers={"x-api-key": emu.api_key},
                       json={"webhook_payload": [{"company_name": "Acme"}]})

    Parameters:
        host, port: where to listen (``port=0`` picks a free port).
        api_key: the key clients must send; generated (``sk-emu-…``) when None.
        pace: seconds of emulator time per input row per block. ``pace=0`` and
            ``block_latency=0`` make runs complete instantly (at the first status poll).
        block_latency: fixed seconds per block, on top of ``pace``.
        seed: changes the synthetic values (each value is a hash of the input and the seed).
        idempotency: honour the ``Idempotency-Key`` header (False ignores it entirely).
        inline_results_max_rows: ``download-links`` embeds rows only for files this small.
        download_expires_in_seconds: lifetime of signed download URLs (emulator time).
        csv_bom: prefix every CSV file with a UTF-8 BOM (default: never).
        clock: a callable returning epoch seconds, ``"manual"`` for a clock that moves only with
            :meth:`advance` (starting at 2026-01-01T00:00:00Z), or None for the wall clock.
        mode: ``"thread"`` (a server thread in this process) or ``"subprocess"`` (a child
            process running ``python -m sixtyfour_frames.emulator``; controls go over HTTP, and
            ``clock`` can only be None or ``"manual"``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        pace: float = 0.0,
        seed: int = 0,
        block_latency: float = 0.0,
        idempotency: bool = True,
        inline_results_max_rows: int = 50,
        download_expires_in_seconds: int = 900,
        csv_bom: bool = False,
        clock: ClockOption = None,
        mode: Mode = "thread",
    ) -> None:
        if mode not in ("thread", "subprocess"):
            raise ValueError(f"mode must be 'thread' or 'subprocess', not {mode!r}")
        if mode == "subprocess" and clock not in (None, "manual"):
            raise ValueError('a subprocess emulator takes clock=None or clock="manual" only')
        self.host = host
        self.port = port
        self.mode: Mode = mode
        self.api_key = api_key or generate_api_key()
        self.settings = _settings(
            self.api_key,
            seed=seed,
            pace=pace,
            block_latency=block_latency,
            idempotency=idempotency,
            inline_results_max_rows=inline_results_max_rows,
            download_expires_in_seconds=download_expires_in_seconds,
            csv_bom=csv_bom,
        )
        self._manual_clock = clock == "manual"
        self._state: EmulatorState | None = None
        self._controls: Controls | None = None
        if mode == "thread":
            self._state = EmulatorState(self.settings, _resolve_clock(clock))
            self._controls = LocalControls(self._state)
        self._server: ThreadServer | SubprocessServer | None = None
        self._base_url: str | None = None

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Start serving (returns self). Fast in thread mode; a child process takes ~1 s."""
        if self._server is not None:
            raise EmulatorError("this emulator is already running")
        if self._state is not None:
            shutdown = threading.Event()
            server: ThreadServer | SubprocessServer = ThreadServer(
                build_app(self._state, shutdown), self.host, self.port, shutdown
            )
            server.start()
        else:
            server = SubprocessServer(self._command_line())
            server.start()
            self._controls = RemoteControls(server.base_url)
        self._server, self._base_url = server, server.base_url
        return self

    def stop(self) -> None:
        """Stop serving and release the port, threads and child process (safe to call twice)."""
        server, self._server = self._server, None
        if server is None:
            return
        if self.mode == "subprocess" and self._controls is not None:
            self._controls.close()
            self._controls = None
        server.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _command_line(self) -> list[str]:
        s = self.settings
        arguments = [
            f"--host={self.host}",
            f"--port={self.port}",
            f"--api-key={s.api_key}",
            f"--pace={s.pace!r}",
            f"--seed={s.seed}",
            f"--block-latency={s.block_latency!r}",
            f"--inline-results-max-rows={s.inline_results_max_rows}",
            f"--download-expires-in-seconds={s.download_expires_in_seconds}",
        ]
        flags = {
            "--no-idempotency": not s.idempotency,
            "--csv-bom": s.csv_bom,
            "--manual-clock": self._manual_clock,
        }
        return arguments + [flag for flag, wanted in flags.items() if wanted]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash); the running server's address."""
        if self._base_url is None:
            raise EmulatorError("the emulator is not started")
        return self._base_url

    @property
    def headers(self) -> dict[str, str]:
        """``{"x-api-key": api_key}``, for hand-written requests."""
        return {"x-api-key": self.api_key}

    # ---- workflows -----------------------------------------------------------------------------

    @staticmethod
    def workflow_id(name: str) -> str:
        """The fixed id of a workflow by name (built-in or added with the default id).

        Built-ins: ``company_enrichment``, ``lead_enrichment``, ``company_to_leads``,
        ``filter_companies``, ``drop_row_key``, ``failing``, ``read_csv_source``.
        """
        return workflow_id_for(name)

    def add_workflow(
        self,
        name: str,
        blocks: Sequence[BlockSpec],
        *,
        workflow_id: str | None = None,
        required_columns: Sequence[str] = (),
        dataframe_type: str = "COMPANY",
        description: str | None = None,
    ) -> str:
        """Add a workflow: a ``webhook`` source, then ``blocks``; returns its id.

        Each block is a function ``list[dict] -> list[dict]`` (the rows of the previous block in,
        this block's rows out; raising makes the run fail there), a ``Block`` (to set its name,
        type or ``dataframe_type``), or a built-in block name: ``company_enrichment``,
        ``lead_enrichment``, ``find_email``, ``company_to_leads``, ``filter``,
        ``remove_columns``. Payload records must contain every ``required_columns`` key (else
        400). The id defaults to ``Emulator.workflow_id(name)``. A subprocess emulator accepts
        built-in names only.
        """
        return self._require_controls().add_workflow(
            name, blocks, workflow_id, required_columns, dataframe_type, description
        )

    # ---- fault plans ---------------------------------------------------------------------------

    def add_fault(self, route: str, kind: str, times: int = 1, **params: Any) -> int:
        """Plan a fault on ``route``, consumed ``times`` times in order; returns its id.

        Routes: ``run``, ``runs``, ``live_status``, ``cancel``, ``download_links``, ``file``.
        Kinds (and their parameters):

        * ``status`` (``code``; optional ``retry_after``, ``retry_after_ms``, ``body``): answer
          with that status instead of acting.
        * ``latency`` (``seconds``): wait, then handle the request normally.
        * ``reset_before``: drop the connection without acting or answering.
        * ``reset_after``: act (e.g. create and charge the run), then drop the connection.
        * ``stall`` (``seconds``): act, then hold the answer (to trip a client read timeout).
        * ``malformed_json``: act, then answer 200 with a body that is not valid JSON.
        * ``truncate`` (``bytes``, file): announce the full length, send ``bytes``, then drop.
        * ``bom`` (file): prefix the file with a UTF-8 BOM.
        * ``expire_url`` / ``null_url`` (download_links): URLs already expired / ``null``.
        * ``fail_run`` (run; optional ``at_block`` = sequence number, default 2, and
          ``error_message``): the next created run fails at that block.
        * ``stall_run`` (run; optional ``at_block``, default 2): the next created run stops at
          the start of that block until :meth:`release` or a cancel.
        * ``canceled_spelling`` (live_status or runs): the next answer that reports a cancelled
          run spells it ``canceled``.

        A fault is consumed only by a request it applies to (e.g. ``bom`` by a successful file
        download), and a route's faults are consumed strictly in the order planned.
        """
        return self._require_controls().add_fault(route, kind, times, params)

    def faults_pending(self) -> list[dict[str, Any]]:
        """Planned faults not yet fully consumed (``id``, ``route``, ``kind``, ``params``,
        ``times``, ``remaining``)."""
        return self._require_controls().faults_pending()

    def faults_consumed(self) -> list[dict[str, Any]]:
        """Each consumption so far, in order, with its ``time`` and a ``note`` (path or job id)."""
        return self._require_controls().faults_consumed()

    # ---- books -----------------------------------------------------------------------------------

    def ledger(self) -> dict[str, Any]:
        """The charge ledger.

        Keys: ``runs_created``, ``rows_charged`` (input rows of every created run, charged at
        creation), ``idempotent_replays``, ``runs_cancelled``, ``files_downloaded``,
        ``files_truncated``, ``file_requests_with_credentials`` (file downloads that carried
        ``x-api-key`` or ``Authorization``: should be 0), and ``requests`` (count per route:
        run, runs, live_status, cancel, download_links, file, workflows, workflow).
        """
        return self._require_controls().ledger()

    def requests(self, route: str | None = None) -> list[RecordedRequest]:
        """Every request received on the API and file routes, oldest first."""
        return self._require_controls().requests(route)

    def runs(self) -> list[RunRecord]:
        """Every run created, in creation order, with its current status."""
        return self._require_controls().runs()

    def run_input(self, job_id: str) -> list[dict[str, Any]]:
        """The run's input records exactly as the emulator parsed them (KeyError if unknown)."""
        return self._require_controls().run_input(job_id)

    def release(self, job_id: str) -> None:
        """Let a run held by a ``stall_run`` fault continue."""
        self._require_controls().release(job_id)

    def reset(self) -> None:
        """Forget runs, faults, recorded requests and the ledger (workflows and clock stay)."""
        self._require_controls().reset()

    def advance(self, seconds: float) -> float:
        """Move a ``clock="manual"`` emulator's clock forward; returns the new time."""
        return self._require_controls().advance(seconds)

    def _require_controls(self) -> Controls:
        if self._controls is None:
            raise EmulatorError("a subprocess emulator must be started before it can be controlled")
        return self._controls

    def __repr__(self) -> str:
        where = self._base_url or "not started"
        return f"<Emulator {self.mode} {where}>"  # never the key


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    pace: float = 0.05,
    seed: int = 0,
    block_latency: float = 0.5,
    idempotency: bool = True,
    inline_results_max_rows: int = 50,
    download_expires_in_seconds: int = 900,
    csv_bom: bool = False,
    manual_clock: bool = False,
    on_ready: Callable[[str, str], None] | None = None,
) -> None:
    """Serve the emulator in the foreground until interrupted (Ctrl-C / SIGTERM).

    The defaults suit a demo: runs take visible time (``pace`` seconds per row per block plus
    ``block_latency`` per block). ``on_ready(base_url, api_key)`` is called once the port is
    bound, e.g. to print where to connect; the library itself prints nothing.
    """
    key = api_key or generate_api_key()
    settings = _settings(
        key,
        seed=seed,
        pace=pace,
        block_latency=block_latency,
        idempotency=idempotency,
        inline_results_max_rows=inline_results_max_rows,
        download_expires_in_seconds=download_expires_in_seconds,
        csv_bom=csv_bom,
    )
    state = EmulatorState(settings, ManualClock() if manual_clock else system_clock)
    app = build_app(state, threading.Event())
    serve_forever(app, host, port, None if on_ready is None else lambda url: on_ready(url, key))
