"""An in-process TCP fault proxy on 127.0.0.1, for faults below HTTP.

The proxy sits between a client and an upstream HTTP/1.1 server (the emulator). It understands
just enough HTTP/1.1 framing (a head, then a ``Content-Length`` or chunked body) to cut one
exchange at a chosen point, which is what real networks do and what an ASGI app cannot::

    with FaultProxy(emu.base_url) as proxy:
        proxy.add("reset_after", path="/workflows/run")   # the server acts, the client sees a reset
        client = Client(api_key=..., base_url=proxy.base_url)
        ...
        proxy.assert_consumed()

Fault kinds (each consumed by one request exchange, strictly in the order planned, and only by a
request whose path starts with ``path`` when one is given):

* ``reset_before``: read the request, then reset the connection without forwarding it.
* ``reset_after``: forward the request, read the whole response, then reset the connection.
* ``truncate`` (``bytes``): forward, then send the response head and only ``bytes`` body bytes
  (the announced ``Content-Length`` stays the full one), then close.
* ``stall`` (``seconds``): forward, then hold the response for ``seconds`` (real time) before
  sending it; a client whose read timeout is shorter has given up by then.
* ``rewrite`` (``body``: a function ``bytes -> bytes``): forward, then send the response with its
  body replaced (``Content-Length`` fixed), e.g. to report a status the emulator never reports.
Faults that act on the response (``reset_after``, ``truncate``, ``stall``, ``rewrite``) take an
optional ``status``: they then apply only to a response with that status.

* ``close_on_reuse``: applies only to a request that arrives on a kept-alive connection which
  already carried an exchange: close it without forwarding (the server's idle-connection close
  racing the client's reuse).
* ``refuse``: the listening socket is closed while this fault is at the head of the queue, so
  connections are refused (``httpx.ConnectError``). A refused connection never reaches the
  proxy, so the test reports each one it caused with :meth:`FaultProxy.note_refused` (from its
  sleep hook: every refused attempt is followed by exactly one backoff sleep); the listener
  reopens on the same port once the last one is consumed.

Accounting mirrors the emulator's fault plans: :meth:`pending`, :meth:`consumed`,
:meth:`assert_consumed`. :attr:`open_connections` counts client connections still open, to
detect leaked connections.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

KINDS = ("reset_before", "reset_after", "truncate", "stall", "rewrite", "close_on_reuse", "refuse")
_BEFORE_FORWARDING = frozenset({"reset_before", "close_on_reuse"})
_AFTER_RESPONSE = frozenset({"reset_after", "truncate", "stall", "rewrite"})
_REQUIRED = {"truncate": {"bytes"}, "stall": {"seconds"}, "rewrite": {"body"}}
_MAX_HEAD = 64 * 1024
_POLL = 0.05


@dataclass
class _Planned:
    id: int
    kind: str
    path: str | None
    params: dict[str, Any]
    times: int
    remaining: int

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "path": self.path,
            "times": self.times,
            "remaining": self.remaining,
        }


@dataclass
class _Message:
    head: bytes  # start line and headers, ending with the blank line
    body: bytes

    @property
    def start_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")

    @property
    def status(self) -> int:
        """The status code of a response (0 for a request)."""
        parts = self.start_line.split(" ")
        return int(parts[1]) if parts[0].startswith("HTTP/") and len(parts) > 1 else 0

    def with_body(self, body: bytes) -> bytes:
        return _set_content_length(self.head, len(body)) + body

    def raw(self) -> bytes:
        return self.with_body(self.body)


class _Closed(Exception):
    """The peer closed the connection (or it broke) in the middle of a message."""


@dataclass
class _Connection:
    client: socket.socket
    exchanges: int = 0
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class FaultProxy:
    """A TCP proxy to ``upstream`` (``http://host:port``) that misbehaves on plan."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must look like http://host:port, not {upstream!r}")
        self._upstream = (parts.hostname, parts.port)
        self._lock = threading.Lock()
        self._queue: list[_Planned] = []
        self._consumed: list[dict[str, Any]] = []
        self._next_id = 1
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._port = 0
        self._accept_thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._connections: list[_Connection] = []
        self.paths: list[str] = []  # request paths seen, in order (query included)

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._listener = _listen(0)
        self._port = self._listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"fault-proxy :{self._port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        with self._lock:
            connections = list(self._connections)
            workers = list(self._workers)
        for conn in connections:
            self._close(conn)
        for worker in workers:
            worker.join(5)
        self._close_listener()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def open_connections(self) -> int:
        """Client connections the proxy still holds open."""
        with self._lock:
            return sum(1 for c in self._connections if not c.closed)

    def wait_idle(self, timeout: float = 2.0) -> int:
        """Wait until clients have closed their connections; returns how many are still open."""
        deadline = time.monotonic() + timeout
        while self.open_connections and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.open_connections

    # ---- fault plans ----------------------------------------------------------------------------

    def add(self, kind: str, times: int = 1, *, path: str | None = None, **params: Any) -> int:
        """Plan ``times`` consumptions of a fault; returns its id."""
        if kind not in KINDS:
            raise ValueError(f"unknown proxy fault {kind!r}; kinds: {', '.join(KINDS)}")
        missing = _REQUIRED.get(kind, set()) - params.keys()
        if missing:
            raise ValueError(f"fault {kind!r} needs {', '.join(sorted(missing))}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be a positive integer, not {times!r}")
        with self._lock:
            planned = _Planned(self._next_id, kind, path, dict(params), times, times)
            self._next_id += 1
            self._queue.append(planned)
        self._sync_listener()
        return planned.id

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p.describe() for p in self._queue]

    def consumed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self._consumed]

    def assert_consumed(self) -> None:
        pending = self.pending()
        if pending:
            raise AssertionError(f"planned proxy faults were never consumed: {pending}")

    def note_refused(self) -> bool:
        """Account one connection refused by a ``refuse`` fault; False if none was planned."""
        taken = self._take(frozenset({"refuse"}), None, reused=False) is not None
        self._sync_listener()
        return taken

    def _take(
        self,
        kinds: frozenset[str],
        path: str | None,
        *,
        reused: bool,
        status: int | None = None,
    ) -> _Planned | None:
        """Consume the head of the queue if it is one of ``kinds`` and applies to this exchange."""
        with self._lock:
            if not self._queue:
                return None
            head = self._queue[0]
            if head.kind not in kinds:
                return None
            if head.kind == "close_on_reuse" and not reused:
                return None
            if head.path is not None and (path is None or not path.startswith(head.path)):
                return None
            wanted_status = head.params.get("status")
            if wanted_status is not None and wanted_status != status:
                return None
            head.remaining -= 1
            if head.remaining == 0:
                self._queue.pop(0)
            self._consumed.append({**head.describe(), "request": path, "time": time.time()})
            return head

    def _refusing(self) -> bool:
        with self._lock:
            return bool(self._queue) and self._queue[0].kind == "refuse"

    def _sync_listener(self) -> None:
        """Close the listener while a ``refuse`` fault leads the queue; reopen it afterwards."""
        refusing = self._refusing()
        with self._lock:
            listener = self._listener
        if refusing and listener is not None:
            self._close_listener()
        elif not refusing and listener is None and not self._stop.is_set():
            reopened = _listen(self._port)
            with self._lock:
                self._listener = reopened

    def _close_listener(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() stops the listening at once, even while the accept thread is inside
            # accept() (close() alone would leave the socket listening until that call returns).
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    # ---- serving --------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                time.sleep(_POLL / 5)
                continue
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                time.sleep(_POLL / 5)  # the listener was closed under us (refuse, stop)
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(client)
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._connections.append(conn)
                self._workers = [w for w in self._workers if w.is_alive()]
                self._workers.append(worker)
            worker.start()

    def _serve(self, conn: _Connection) -> None:
        reader = _Reader(conn.client, self._stop)
        try:
            while not self._stop.is_set():
                request = reader.message(is_response=False, request_method="")
                if request is None:
                    return
                if not self._exchange(conn, request):
                    return
                conn.exchanges += 1
        except (_Closed, OSError):
            return
        finally:
            self._close(conn)

    def _exchange(self, conn: _Connection, request: _Message) -> bool:
        """Carry one request and its response; False when the connection must end."""
        method, path = _method_and_path(request)
        with self._lock:
            self.paths.append(path)
        reused = conn.exchanges > 0
        fault = self._take(_BEFORE_FORWARDING, path, reused=reused)
        if fault is not None and fault.kind == "close_on_reuse":
            return False  # a plain close, as an idle-timeout close looks to the client
        if fault is not None and fault.kind == "reset_before":
            _reset(conn.client)
            return False
        try:
            response = self._forward(request, method)
        except (_Closed, OSError):
            _reset(conn.client)  # the server dropped it: so does the proxy, and it never re-sends
            return False
        fault = self._take(_AFTER_RESPONSE, path, reused=reused, status=response.status)
        kind = fault.kind if fault is not None else None
        if kind == "reset_after":
            _reset(conn.client)
            return False
        if fault is not None and kind == "truncate":
            keep = int(fault.params["bytes"])
            conn.client.sendall(response.head + response.body[:keep])
            return False
        if (
            fault is not None
            and kind == "stall"
            and self._stop.wait(float(fault.params["seconds"]))
        ):
            return False
        if fault is not None and kind == "rewrite":
            rewrite: Callable[[bytes], bytes] = fault.params["body"]
            conn.client.sendall(response.with_body(rewrite(response.body)))
        else:
            conn.client.sendall(response.raw())
        return not _closes(request) and not _closes(response)

    def _forward(self, request: _Message, method: str) -> _Message:
        """Send one request on a fresh upstream connection and read its whole response.

        One connection per exchange: a kept-alive upstream connection that the server closed
        while idle would fail here in a way the plan did not ask for.
        """
        with socket.create_connection(self._upstream, timeout=30) as upstream:
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.sendall(request.raw())
            response = _Reader(upstream, self._stop).message(
                is_response=True, request_method=method
            )
        if response is None:
            raise _Closed("the upstream closed the connection without answering")
        return response

    def _close(self, conn: _Connection) -> None:
        with conn.lock:
            if conn.closed:
                return
            conn.closed = True
        with contextlib.suppress(OSError):
            conn.client.close()


# ---- HTTP/1.1 framing (just enough of it) ------------------------------------------------------


class _Reader:
    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self._sock = sock
        self._stop = stop
        self._buffer = b""
        sock.settimeout(_POLL)

    def _more(self) -> bytes:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise _Closed("end of stream")
            return data
        raise _Closed("the proxy is stopping")

    def _until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            if len(self._buffer) > _MAX_HEAD:
                raise _Closed("header too large")
            self._buffer += self._more()
        found, self._buffer = self._buffer.split(marker, 1)
        return found + marker

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += self._more()
        found, self._buffer = self._buffer[:size], self._buffer[size:]
        return found

    def _rest(self) -> bytes:
        data = self._buffer
        with contextlib.suppress(_Closed):
            while True:
                data += self._more()
        self._buffer = b""
        return data

    def message(self, *, is_response: bool, request_method: str) -> _Message | None:
        """The next message, or None when the peer closed cleanly between messages."""
        if not self._buffer:
            try:
                self._buffer = self._more()
            except _Closed:
                return None
        head = self._until(b"\r\n\r\n")
        headers = _headers(head)
        if is_response and _bodyless(head, request_method):
            return _Message(head, b"")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return _Message(_drop_header(head, "transfer-encoding"), self._chunked())
        if "content-length" in headers:
            return _Message(head, self._exactly(int(headers["content-length"])))
        return _Message(head, self._rest() if is_response else b"")

    def _chunked(self) -> bytes:
        body = b""
        while True:
            size = int(self._until(b"\r\n").strip().split(b";")[0], 16)
            if size == 0:
                self._until(b"\r\n")  # no trailers expected
                return body
            body += self._exactly(size)
            self._exactly(2)


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    pairs = (line.split(":", 1) for line in lines if ":" in line)
    return {name.strip().lower(): value.strip() for name, value in pairs}


def _bodyless(head: bytes, request_method: str) -> bool:
    status = int(head.split(b" ", 2)[1])
    return request_method == "HEAD" or status in (204, 304) or 100 <= status < 200


def _drop_header(head: bytes, name: str) -> bytes:
    lines = head.split(b"\r\n")
    kept = [line for line in lines if not line.lower().startswith(name.encode() + b":")]
    return b"\r\n".join(kept)


def _set_content_length(head: bytes, length: int) -> bytes:
    lines = _drop_header(head, "content-length").split(b"\r\n")
    # lines ends with two empty entries (the blank line); insert before them.
    return b"\r\n".join([*lines[:-2], f"content-length: {length}".encode(), b"", b""])


def _method_and_path(request: _Message) -> tuple[str, str]:
    parts = request.start_line.split(" ")
    return (parts[0], parts[1]) if len(parts) >= 2 else ("", "")


def _closes(message: _Message) -> bool:
    return _headers(message.head).get("connection", "").lower() == "close"


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), as a crashed peer or a middlebox does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def _listen(port: int) -> socket.socket:
    for attempt in range(50):  # a just-closed listener on the same port may linger a moment
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
            sock.settimeout(_POLL)
        except OSError:
            sock.close()
            if port == 0 or attempt == 49:
                raise
            time.sleep(0.01)
            continue
        return sock
    raise AssertionError("unreachable")
