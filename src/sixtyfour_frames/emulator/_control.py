"""``/_emulator/...``: the emulator's controls over HTTP, for an emulator in another process.

These routes need no API key, are not recorded and do not count in the ledger. Bodies and answers
are JSON; misuse answers 400 (bad argument) or 404 (unknown run), which the Python control client
turns back into ``ValueError`` and ``KeyError``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sixtyfour_frames.emulator._clock import ManualClock
from sixtyfour_frames.emulator._errors import NotFound
from sixtyfour_frames.emulator._state import EmulatorState

PREFIX = "/_emulator"
Handler = Callable[[Request], Awaitable[Response]]


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    parsed = json.loads(body) if body.strip() else {}
    if not isinstance(parsed, dict):
        raise ValueError("the control body must be a JSON object")
    return parsed


def _guarded(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except NotFound as exc:
            return JSONResponse({"detail": exc.detail}, status_code=404)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)

    return guarded


def control_routes(state: EmulatorState) -> list[BaseRoute]:
    """The control routes for ``state``."""

    async def add_fault(request: Request) -> Response:
        body = await _json_body(request)
        route, kind = body.pop("route", None), body.pop("kind", None)
        times, params = body.get("times", 1), body.get("params", {})
        if not isinstance(route, str) or not isinstance(kind, str) or not isinstance(params, dict):
            raise ValueError("route and kind must be strings and params an object")
        return JSONResponse({"id": state.faults.add(route, kind, times, **params)})

    async def pending(request: Request) -> Response:
        return JSONResponse(state.faults.pending())

    async def consumed(request: Request) -> Response:
        return JSONResponse(state.faults.consumed())

    async def ledger(request: Request) -> Response:
        return JSONResponse(state.ledger())

    async def requests(request: Request) -> Response:
        route = request.query_params.get("route")
        return JSONResponse([r.to_json() for r in state.requests(route)])

    async def runs(request: Request) -> Response:
        return JSONResponse([r.to_json() for r in state.runs()])

    async def run_input(request: Request) -> Response:
        return JSONResponse(state.run_input(request.path_params["job_id"]))

    async def release(request: Request) -> Response:
        state.release(request.path_params["job_id"])
        return JSONResponse({"released": request.path_params["job_id"]})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    async def advance(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(state.clock, ManualClock):
            raise ValueError("advance() needs an emulator started with the manual clock")
        return JSONResponse({"now": state.clock.advance(float(body.get("seconds", 0)))})

    async def add_workflow(request: Request) -> Response:
        body = await _json_body(request)
        blocks = body.get("blocks", [])
        if not all(isinstance(block, str) for block in blocks):
            raise ValueError("over HTTP, blocks must be names of built-in blocks")
        workflow_id = state.add_workflow(
            str(body["name"]),
            blocks,
            workflow_id=body.get("workflow_id"),
            required_columns=tuple(body.get("required_columns", ())),
            dataframe_type=str(body.get("dataframe_type", "COMPANY")),
            description=body.get("description"),
        )
        return JSONResponse({"workflow_id": workflow_id})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "now": state.now()})

    table: list[tuple[str, str, Handler]] = [
        ("/faults", "POST", add_fault),
        ("/faults/pending", "GET", pending),
        ("/faults/consumed", "GET", consumed),
        ("/ledger", "GET", ledger),
        ("/requests", "GET", requests),
        ("/runs", "GET", runs),
        ("/runs/{job_id}/input", "GET", run_input),
        ("/runs/{job_id}/release", "POST", release),
        ("/reset", "POST", reset),
        ("/advance", "POST", advance),
        ("/workflows", "POST", add_workflow),
        ("/health", "GET", health),
    ]
    return [
        Route(PREFIX + path, _guarded(handler), methods=[method]) for path, method, handler in table
    ]
