"""The HTTP adapter: Starlette routes mirroring the real API's paths, parameters and errors.

Each API request goes through one pipeline (:meth:`Api._serve`): record it, apply the next planned
connection-level fault of its route, check the API key, hold its Idempotency-Key while in flight,
act on the state core, and answer. Routes stay thin: parse, call the state, render with ``_wire``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sixtyfour_frames.emulator import _files, _wire
from sixtyfour_frames.emulator import _timeline as tl
from sixtyfour_frames.emulator._clock import isoformat
from sixtyfour_frames.emulator._connection import (
    DroppedConnection,
    ExposeTransport,
    TruncatedResponse,
)
from sixtyfour_frames.emulator._control import control_routes
from sixtyfour_frames.emulator._errors import ApiError, NotFound, ValidationFailed
from sixtyfour_frames.emulator._faults import CONNECTION_KINDS, Fault
from sixtyfour_frames.emulator._records import RecordedRequest
from sixtyfour_frames.emulator._state import (
    IDEMPOTENCY_IN_PROGRESS,
    EmulatorState,
    FileDenied,
    ResultFile,
    RunRequest,
)
from sixtyfour_frames.emulator._validation import (
    ErrorItem,
    check_choices,
    check_object,
    check_optional_object,
    check_uuid,
    check_webhook_payload,
    missing,
    parse_bool,
    parse_bounded_int,
    parse_json_body,
)

Act = Callable[[Request, bytes], Response]
INVALID_API_KEY = "Invalid API key"
_SLEEP_SLICE = 0.05


def detail(status: int, message: str) -> JSONResponse:
    """An error response with FastAPI's ``{"detail": "..."}`` body."""
    return JSONResponse({"detail": message}, status_code=status)


def _storage_error(status: int, code: str, message: str, details: str = "") -> Response:
    # Signed-URL failures come from the storage host, not the API: XML, like cloud storage.
    xml = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message><Details>{details}</Details></Error>"
    )
    return Response(xml, status_code=status, media_type="application/xml")


_RENDERED_FILES_KEPT = 32


class Api:
    """The API routes, bound to one state core."""

    def __init__(self, state: EmulatorState, shutdown: threading.Event) -> None:
        self.state = state
        self.shutdown = shutdown
        # A file is rendered for its download link (its size) and again when fetched; a block's
        # rows never change once produced, so the bytes are kept for the last few files.
        self._rendered: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()

    def routes(self) -> list[BaseRoute]:
        """Route order matters: ``/workflows/runs`` before ``/workflows/{workflow_id}``."""
        return [
            Route("/workflows/run", self.run, methods=["POST"]),
            Route("/workflows/runs", self.runs, methods=["GET"]),
            Route("/workflows/runs/{run_id}/live_status", self.live_status, methods=["GET"]),
            Route(
                "/workflows/runs/{run_id}/results/download-links",
                self.download_links,
                methods=["GET"],
            ),
            Route("/workflows/cancel", self.cancel, methods=["POST"]),
            Route("/workflows", self.workflows, methods=["GET"]),
            Route("/workflows/{workflow_id}", self.workflow, methods=["GET"]),
            Route("/files/{token}/{filename}", self.file, methods=["GET"]),
        ]

    # ---- the pipeline ------------------------------------------------------------------------

    async def _serve(
        self, request: Request, route: str, act: Act, *, auth: bool = True
    ) -> Response:
        body = await request.body()
        self.state.record_request(_recorded(request, route, body, self.state.now()))
        fault = self.state.take_fault(route, CONNECTION_KINDS, note=request.url.path)
        if fault is not None and fault.kind == "status":
            return _status_fault(fault)
        if fault is not None and fault.kind == "reset_before":
            return DroppedConnection()
        if auth and not self._authorized(request):
            return detail(401, INVALID_API_KEY)
        key = self._idempotency_key(request, route)
        if key is not None and not self.state.begin_in_flight(key):
            return detail(409, IDEMPOTENCY_IN_PROGRESS)
        try:
            return await self._act_with_fault(request, body, act, fault)
        finally:
            if key is not None:
                self.state.end_in_flight(key)

    async def _act_with_fault(
        self, request: Request, body: bytes, act: Act, fault: Fault | None
    ) -> Response:
        kind = None if fault is None else fault.kind
        if fault is not None and kind == "latency":
            await self._sleep(fault.number("seconds"))
        response = _answer(act, request, body)
        if kind == "reset_after":
            return DroppedConnection()
        if fault is not None and kind == "stall":
            await self._sleep(fault.number("seconds"))
        if kind == "malformed_json":
            return _malformed(response)
        return response

    async def _sleep(self, seconds: float) -> None:
        # Real time on purpose (a client's read timeout is real), cut short when the server stops.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self.shutdown.is_set() and loop.time() < deadline:
            await asyncio.sleep(min(_SLEEP_SLICE, deadline - loop.time()))

    def _authorized(self, request: Request) -> bool:
        given = request.headers.get("x-api-key", "")
        return hmac.compare_digest(given.encode(), self.state.settings.api_key.encode())

    def _idempotency_key(self, request: Request, route: str) -> str | None:
        if route != "run" or not self.state.settings.idempotency:
            return None
        return request.headers.get("idempotency-key") or None

    # ---- endpoints -----------------------------------------------------------------------------

    async def run(self, request: Request) -> Response:
        """``POST /workflows/run``."""
        return await self._serve(request, "run", self._start_run)

    async def runs(self, request: Request) -> Response:
        """``GET /workflows/runs``."""
        return await self._serve(request, "runs", self._list_runs)

    async def live_status(self, request: Request) -> Response:
        """``GET /workflows/runs/{run_id}/live_status``."""
        return await self._serve(request, "live_status", self._live_status)

    async def cancel(self, request: Request) -> Response:
        """``POST /workflows/cancel``."""
        return await self._serve(request, "cancel", self._cancel)

    async def download_links(self, request: Request) -> Response:
        """``GET /workflows/runs/{run_id}/results/download-links``."""
        return await self._serve(request, "download_links", self._download_links)

    async def workflows(self, request: Request) -> Response:
        """``GET /workflows``."""
        return await self._serve(request, "workflows", self._list_workflows)

    async def workflow(self, request: Request) -> Response:
        """``GET /workflows/{workflow_id}``."""
        return await self._serve(request, "workflow", self._get_workflow)

    async def file(self, request: Request) -> Response:
        """``GET /files/{token}/{filename}``: the signed download URL (no API key)."""
        return await self._serve(request, "file", self._download_file, auth=False)

    # ---- actions (synchronous: the state core never waits) -----------------------------------

    def _start_run(self, request: Request, body: bytes) -> Response:
        run_request = _parse_run_request(request, body)
        started = self.state.start_run(run_request)
        return JSONResponse(_wire.run_started(started))

    def _list_runs(self, request: Request, body: bytes) -> Response:
        limit, errors = 100, list[ErrorItem]()
        if "limit" in request.query_params:
            limit, errors = parse_bounded_int(
                ["query", "limit"], request.query_params["limit"], ge=1, le=500
            )
        if errors:
            raise ValidationFailed(errors)
        snapshots = self.state.list_runs(
            status=request.query_params.get("status"),
            workflow_id=request.query_params.get("workflow_id"),
            limit=limit,
        )
        any_cancelled = any(s.view.status == tl.CANCELLED for s in snapshots)
        spelling = any_cancelled and self._take("runs", "canceled_spelling")
        return JSONResponse([_wire.run_item(s, canceled_spelling=spelling) for s in snapshots])

    def _live_status(self, request: Request, body: bytes) -> Response:
        run_id = _path_uuid(request, "run_id")
        snapshot = self.state.snapshot(run_id)
        cancelled = snapshot.view.status == tl.CANCELLED
        spelling = cancelled and self._take("live_status", "canceled_spelling")
        return JSONResponse(_wire.live_status(snapshot, canceled_spelling=spelling))

    def _cancel(self, request: Request, body: bytes) -> Response:
        job_id = request.query_params.get("job_id") or _job_id_from_body(body)
        status = self.state.cancel(job_id)
        return JSONResponse(_wire.cancel_response(job_id, status))

    def _download_links(self, request: Request, body: bytes) -> Response:
        run_id = _path_uuid(request, "run_id")
        files = self.state.result_files(run_id, request.query_params.get("format", _files.CSV))
        fault = (
            self.state.take_fault("download_links", {"expire_url", "null_url"}) if files else None
        )
        base = str(request.base_url).rstrip("/")
        items = [self._result_item(base, result, fault) for result in files]
        return JSONResponse(items)

    def _result_item(self, base: str, result: ResultFile, fault: Fault | None) -> dict[str, Any]:
        url = None
        if fault is None or fault.kind != "null_url":
            token = self.state.sign_file(
                result, expired=fault is not None and fault.kind == "expire_url"
            )
            url = f"{base}/files/{token}/{result.filename}"
        settings = self.state.settings
        return _wire.result_item(
            result,
            download_url=url,
            expires_in=settings.download_expires_in_seconds,
            file_size=len(self._content(result)),
            inline_max_rows=settings.inline_results_max_rows,
        )

    def _content(self, result: ResultFile) -> bytes:
        key = (result.job_id, result.block_number, result.fmt)
        content = self._rendered.pop(key, None)
        if content is None:
            content = _files.render(result.rows, result.columns, result.fmt)
        self._rendered[key] = content
        while len(self._rendered) > _RENDERED_FILES_KEPT:
            self._rendered.popitem(last=False)
        bom = self.state.settings.csv_bom and result.fmt == _files.CSV
        return _files.with_bom(content) if bom else content

    def _download_file(self, request: Request, body: bytes) -> Response:
        try:
            result = self.state.open_file(request.path_params["token"])
        except FileDenied as exc:
            return _denied(exc)
        except NotFound:
            return _storage_error(404, "NoSuchKey", "The specified key does not exist.")
        if request.path_params["filename"] != result.filename:
            return _storage_error(404, "NoSuchKey", "The specified key does not exist.")
        return self._file_response(result)

    def _file_response(self, result: ResultFile) -> Response:
        content = self._content(result)
        fault = self.state.take_fault("file", {"truncate", "bom"}, note=result.filename)
        if fault is not None and fault.kind == "bom":
            content = _files.with_bom(content)
        media_type = _files.CONTENT_TYPES[result.fmt]
        headers = {"content-disposition": f'attachment; filename="{result.filename}"'}
        if fault is not None and fault.kind == "truncate":
            self.state.count_download(complete=False)
            return TruncatedResponse(content, int(fault.number("bytes")), media_type, headers)
        self.state.count_download(complete=True)
        return Response(content, media_type=media_type, headers=headers)

    def _list_workflows(self, request: Request, body: bytes) -> Response:
        return JSONResponse(
            [
                _wire.workflow_summary(wf, self.state.last_run_at(wf.id))
                for wf in self.state.workflows()
            ]
        )

    def _get_workflow(self, request: Request, body: bytes) -> Response:
        workflow = self.state.workflow(_path_uuid(request, "workflow_id"))
        return JSONResponse(_wire.workflow_detail(workflow, self.state.last_run_at(workflow.id)))

    def _take(self, route: str, kind: str) -> bool:
        return self.state.take_fault(route, {kind}) is not None


# ---- parsing helpers ---------------------------------------------------------------------------


def _recorded(request: Request, route: str, body: bytes, now: float) -> RecordedRequest:
    query: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        query.setdefault(name, []).append(value)
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return RecordedRequest(route, request.method, request.url.path, query, headers, body, now)


def _parse_run_request(request: Request, body: bytes) -> RunRequest:
    query = request.query_params
    errors: list[ErrorItem] = []
    workflow_id = query.get("workflow_id")
    if workflow_id is None:
        errors.append(missing(["query", "workflow_id"]))
    save_json = False
    if "save_json" in query:
        save_json, bool_errors = parse_bool(["query", "save_json"], query["save_json"])
        errors += bool_errors
    formats = tuple(query.getlist("result_formats"))
    errors += check_choices(["query", "result_formats"], formats, _files.FORMATS)
    fields, body_errors = _run_body(body)
    errors += body_errors
    if errors or workflow_id is None:
        raise ValidationFailed(errors)
    payload, specs = fields.get("webhook_payload"), fields.get("specs_override")
    fingerprint = json.dumps(
        [workflow_id, save_json, formats, payload, specs], separators=(",", ":")
    )
    return RunRequest(
        workflow_id=workflow_id,
        webhook_payload=payload,
        specs_override=specs,
        save_json=save_json,
        result_formats=formats,
        idempotency_key=request.headers.get("idempotency-key") or None,
        fingerprint=hashlib.sha256(fingerprint.encode("utf-8")).hexdigest(),
    )


def _run_body(body: bytes) -> tuple[dict[str, Any], list[ErrorItem]]:
    if not body.strip():
        return {}, []  # the body is optional
    parsed, errors = parse_json_body(body)
    if errors:
        return {}, errors
    errors = check_object(["body"], parsed)
    if errors:
        return {}, errors
    errors = check_webhook_payload(parsed.get("webhook_payload"))
    errors += check_optional_object(["body", "specs_override"], parsed.get("specs_override"))
    return parsed, errors


def _job_id_from_body(body: bytes) -> str:
    if not body.strip():
        raise ValidationFailed([missing(["query", "job_id"])])
    parsed, errors = parse_json_body(body)
    errors = errors or check_object(["body"], parsed)
    if errors:
        raise ValidationFailed(errors)
    job_id = parsed.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise ValidationFailed([missing(["query", "job_id"])])
    return job_id


def _path_uuid(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    errors = check_uuid(["path", name], value)
    if errors:
        raise ValidationFailed(errors)
    return value


# ---- responses ---------------------------------------------------------------------------------


def _answer(act: Act, request: Request, body: bytes) -> Response:
    try:
        return act(request, body)
    except ApiError as exc:
        return detail(exc.status, exc.detail)
    except ValidationFailed as exc:
        return JSONResponse({"detail": exc.errors}, status_code=422)


def _status_fault(fault: Fault) -> Response:
    code = int(fault.params["code"])
    headers = {}
    if "retry_after" in fault.params:
        headers["retry-after"] = str(fault.params["retry_after"])
    if "retry_after_ms" in fault.params:
        headers["retry-after-ms"] = str(fault.params["retry_after_ms"])
    body = fault.params.get("body", {"detail": _phrase(code)})
    if isinstance(body, str):
        return Response(body, status_code=code, headers=headers, media_type="text/plain")
    return JSONResponse(body, status_code=code, headers=headers)


def _phrase(code: int) -> str:
    if code == 429:
        return "Rate limit exceeded"
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return f"Error {code}"


def _malformed(response: Response) -> Response:
    body = bytes(response.body) or b"{}"
    broken = body[: max(1, len(body) // 2)]
    return Response(broken, status_code=200, media_type="application/json")


def _denied(exc: FileDenied) -> Response:
    if exc.expired:
        expired_at = isoformat(exc.expires_at) if exc.expires_at is not None else ""
        return _storage_error(
            403, "ExpiredToken", "Invalid argument.", f"Request signature expired at: {expired_at}"
        )
    return _storage_error(
        403,
        "SignatureDoesNotMatch",
        "Access denied.",
        "The request signature we calculated does not match.",
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    # Starlette's own 404/405 for unknown paths and methods, in FastAPI's JSON shape.
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = exc.detail if isinstance(exc, HTTPException) else "Internal Server Error"
    return detail(status, message)


def build_app(state: EmulatorState, shutdown: threading.Event) -> ExposeTransport:
    """The ASGI app for ``state``: API routes, file route, ``/_emulator`` control routes."""
    app = Starlette(
        routes=[*Api(state, shutdown).routes(), *control_routes(state)],
        exception_handlers={HTTPException: _http_exception},
    )
    return ExposeTransport(app)
