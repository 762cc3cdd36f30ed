"""Misbehaving at the connection level: dropping a connection, cutting a body short.

ASGI has no "close the socket" message, so :class:`ExposeTransport` (the outermost ASGI layer)
puts the server's per-request object into the scope. With uvicorn that is the bound ``send`` method's
owner (``RequestResponseCycle`` of the h11 and httptools protocols), which holds the asyncio
``transport``. ``transport.abort()`` before any response byte leaves the client with a connection
closed without a response (httpx raises ``RemoteProtocolError``), which is what a reset between
request and response looks like to a client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

SCOPE_KEY = "sixtyfour_emulator.cycle"


class ExposeTransport:
    """ASGI middleware: remember the server's request cycle (and its transport) in the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, SCOPE_KEY: getattr(send, "__self__", None)}
        await self.app(scope, receive, send)


class ConnectionDropUnsupported(RuntimeError):
    """The ASGI server does not expose its transport, so a connection cannot be dropped."""


def _transport(scope: Scope) -> Any:
    transport = getattr(scope.get(SCOPE_KEY), "transport", None)
    if transport is None:
        raise ConnectionDropUnsupported(
            "this ASGI server does not expose its transport; run the emulator under uvicorn"
        )
    return transport


async def drop_connection(scope: Scope, *, flush: bool = False) -> None:
    """Close the client's connection now: ``abort`` (nothing more is sent) or, with ``flush``,
    ``close`` after the bytes already written have gone out.

    Waits until the server has noticed the loss, so it does not then try to answer (uvicorn would
    otherwise log that the app returned without a response and try to send a 500).
    """
    cycle = scope.get(SCOPE_KEY)
    transport = _transport(scope)
    if flush:
        transport.close()
    else:
        transport.abort()
    for _ in range(400):  # ≤ 2 s; connection_lost normally runs on the next loop iteration
        if getattr(cycle, "disconnected", True) or getattr(cycle, "response_complete", False):
            return
        await asyncio.sleep(0.005)


class DroppedConnection(Response):
    """A "response" that closes the connection without sending anything."""

    def __init__(self) -> None:
        super().__init__(status_code=599)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await drop_connection(scope)


class TruncatedResponse(Response):
    """Announces the full ``Content-Length`` but sends only the first ``keep`` bytes, then closes."""

    def __init__(self, content: bytes, keep: int, media_type: str, headers: dict[str, str]) -> None:
        super().__init__(content=content, media_type=media_type, headers=headers)
        self.keep = keep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send(
            {"type": "http.response.body", "body": self.body[: self.keep], "more_body": True}
        )
        await drop_connection(scope, flush=True)
