"""Running the app: uvicorn in a background thread, in a child process, or in the foreground.

The listening socket is bound before uvicorn starts, so the port (even an ephemeral ``port=0``)
is known at once and early connections wait in the backlog. uvicorn is pinned to its h11
protocol, whose request cycle exposes the transport the fault plans need to drop connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from sixtyfour_frames.emulator._errors import EmulatorError

logger = logging.getLogger("sixtyfour_frames.emulator")
READY_PATTERN = re.compile(r"listening on (http://\S+)")
_STOP_TIMEOUT = 5.0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # An explicit IPPROTO_TCP makes asyncio set TCP_NODELAY on accepted connections (it checks
    # sock.proto); with proto 0, Nagle + delayed ACK add ~40 ms to every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def base_url_of(sock: socket.socket) -> str:
    """``http://host:port`` for a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="asyncio",
        http="h11",  # its RequestResponseCycle exposes .transport (see _connection)
        ws="none",
        lifespan="off",
        log_config=None,  # never reconfigure the host application's logging
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, with a readiness event and a stop that does not wait for a 0.1 s tick."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        await super().startup(sockets)
        self.ready.set()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    def request_exit(self) -> None:
        """Ask the server to shut down (from any thread)."""
        self.should_exit = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop may already be closed
                self._loop.call_soon_threadsafe(self._wake.set)


class ThreadServer:
    """The app served by uvicorn on a daemon thread of this process."""

    def __init__(self, app: Any, host: str, port: int, shutdown: threading.Event) -> None:
        self._sock = bind(host, port)
        self.base_url = base_url_of(self._sock)
        self._server = _Uvicorn(_config(app))
        self._shutdown = shutdown
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"sixtyfour-emulator {self.base_url}",
            daemon=True,
        )

    def start(self) -> None:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        while not self._server.ready.wait(0.005):
            if not self._thread.is_alive():
                self._sock.close()
                raise EmulatorError(f"the emulator failed to start on {self.base_url}")

    def stop(self) -> None:
        """Stop serving, wake any held (stalled) responses, join the thread, close the socket."""
        self._shutdown.set()
        self._server.request_exit()
        self._thread.join(_STOP_TIMEOUT)
        self._sock.close()
        if self._thread.is_alive():
            raise EmulatorError(
                f"the emulator on {self.base_url} did not stop in {_STOP_TIMEOUT} s"
            )


def serve_forever(
    app: Any, host: str, port: int, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (uvicorn's signal handling applies)."""
    sock = bind(host, port)
    try:
        if on_ready is not None:
            on_ready(base_url_of(sock))
        _Uvicorn(_config(app)).run(sockets=[sock])
    finally:
        sock.close()


class SubprocessServer:
    """The app served by ``python -m sixtyfour_frames.emulator`` in a child process."""

    def __init__(self, arguments: Sequence[str], startup_timeout: float = 30.0) -> None:
        self._arguments = list(arguments)
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self) -> None:
        """Spawn the child and wait for its "listening on" line."""
        source_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "sixtyfour_frames.emulator", *self._arguments],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            self.base_url = self._await_ready_line()
        except BaseException:
            self.stop()
            raise

    def _await_ready_line(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        if sys.platform != "win32":  # Windows cannot select() on pipes: read without a timeout
            with selectors.DefaultSelector() as selector:
                selector.register(self._process.stdout, selectors.EVENT_READ)
                if not selector.select(self._startup_timeout):
                    raise EmulatorError("the emulator subprocess did not start in time")
        line = self._process.stdout.readline()
        match = READY_PATTERN.search(line)
        if match is None:
            raise EmulatorError(f"the emulator subprocess did not start (said {line!r})")
        return match.group(1)

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL) and release its pipe."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
