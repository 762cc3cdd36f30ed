"""Sans-I/O definitions of the workflow endpoints: how to build each request, how to read each reply.

Both clients (sync and async) drive exactly these functions, so their behaviour cannot drift.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import pyarrow as pa

from sixtyfour_frames._config import origin_of
from sixtyfour_frames._errors import (
    APIError,
    IdempotencyConflictError,
    InvalidArgumentError,
    ResultDownloadError,
    SerializationError,
    error_class_for,
    parse_error_detail,
)
from sixtyfour_frames._http import Call, Reply
from sixtyfour_frames._models import (
    CancelResult,
    LiveStatus,
    ResultFile,
    RunStarted,
    RunSummary,
    normalize_status,
)
from sixtyfour_frames._results import (
    RESULT_FORMATS,
    ResultFormat,
    ResultParseError,
    parse_result,
    rows_to_table,
)
from sixtyfour_frames._retry import finite_non_negative

T = TypeVar("T")

LIST_STATUSES = frozenset(
    {"active", "queued", "running", "completed", "failed", "cancelled", "timeout"}
)
MAX_LIST_LIMIT = 500
# A signed URL that the storage host refuses is stale or bad: fetch fresh links this many times.
MAX_LINK_REFRESHES = 3
_STALE_URL_STATUSES = frozenset({400, 401, 403, 404, 410})

FileChoice = Literal["final"] | int


@dataclass(frozen=True)
class EncodedPayload:
    """A ``webhook_payload`` already encoded as a JSON array (built once by the payload layer)."""

    json_array: bytes


Payload = EncodedPayload | Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


@dataclass(frozen=True)
class Operation(Generic[T]):
    """One request and the function that turns its successful reply into a model."""

    call: Call
    parse: Callable[[Reply], T]
    job_id: str | None = None


def check(reply: Reply, call: Call, *, job_id: str | None = None) -> Reply:
    """Raise the typed error for an error status (or a redirect); return the reply otherwise."""
    if reply.status < 300:
        return reply
    path = call.url.split("?", 1)[0] if call.authenticated else "<signed download URL>"
    if reply.status < 400:
        raise _redirect_error(reply, call.method, path, job_id)
    detail, body = parse_error_detail(reply.content, status=reply.status)
    error = _error_class(reply.status, detail, call)(
        detail,
        status=reply.status,
        method=call.method,
        path=path,
        job_id=job_id,
        body=body,
        # A malformed Retry-After ("inf", "-10", "soon") is no information, not a number.
        retry_after=finite_non_negative(reply.headers.get("retry-after")),
    )
    error.maybe_acted_before = reply.maybe_acted_before
    raise error


def _error_class(status: int, detail: str, call: Call) -> type[APIError]:
    # The API gives no code for "this Idempotency-Key was used with another body"; its detail
    # names the header, and only a run request carries one.
    if call.post_run and status in (400, 409, 422) and "idempotency" in detail.lower():
        reused = any(word in detail.lower() for word in ("different", "mismatch", "reused"))
        if reused:
            return IdempotencyConflictError
    return error_class_for(status)


def _redirect_error(reply: Reply, method: str, path: str, job_id: str | None) -> APIError:
    """Redirects are never followed (the key must not travel to another host): say where to."""
    location = reply.headers.get("location", "")
    scheme, host, port = origin_of(location) if "://" in location else ("", "", 0)
    target = f"{scheme}://{host}:{port}" if host else "another address"
    return APIError(
        f"the API redirected the request to {target}; redirects are not followed",
        status=reply.status,
        method=method,
        path=path,
        job_id=job_id,
        hint="If the API has moved, set base_url (or SIXTYFOUR_BASE_URL) to its new address.",
    )


def _json(reply: Reply, call: Call) -> Any:
    try:
        return json.loads(reply.content)
    except ValueError as exc:
        raise APIError(
            f"the API answered {reply.status} with a body that is not JSON",
            status=reply.status,
            method=call.method,
            path=call.url,
            hint="This is usually transient; retry the call.",
        ) from exc


def _require_id(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{name} must be a non-empty string, got {value!r}.")
    return value.strip()


# ---------------------------------------------------------------- POST /workflows/run


def encode_run_body(payload: Payload, specs_override: Mapping[str, Any] | None) -> bytes | None:
    """The exact request body; ``None`` when there is nothing to send."""
    parts: list[bytes] = []
    if payload is not None:
        encoded = payload.json_array if isinstance(payload, EncodedPayload) else _dumps(payload)
        parts.append(b'"webhook_payload":' + encoded)
    if specs_override is not None:
        parts.append(b'"specs_override":' + _dumps(specs_override))
    return b"{" + b",".join(parts) + b"}" if parts else None


def _dumps(value: object) -> bytes:
    try:
        return json.dumps(
            value, allow_nan=False, ensure_ascii=False, separators=(",", ":")
        ).encode()
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"cannot be sent as JSON: {exc}",
            hint="Pass plain dicts/lists of str, int, float (finite), bool and None, or use df.sixtyfour.enrich.",
        ) from exc
    except UnicodeEncodeError as exc:
        raise SerializationError(f"holds text that is not valid UTF-8: {exc.reason}") from exc


def run_workflow(
    workflow_id: str,
    *,
    webhook_payload: Payload = None,
    specs_override: Mapping[str, Any] | None = None,
    save_json: bool = False,
    result_formats: Sequence[str] | None = None,
    idempotency_key: str | None = None,
    max_retries: int | None = None,
) -> Operation[RunStarted]:
    workflow_id = _require_id("workflow_id", workflow_id)
    key = idempotency_key or str(uuid.uuid4())
    params: list[tuple[str, str]] = [("workflow_id", workflow_id)]
    if save_json:
        params.append(("save_json", "true"))
    for fmt in result_formats or ():
        if fmt not in RESULT_FORMATS:
            raise InvalidArgumentError(f"result_formats: {fmt!r} is not one of {RESULT_FORMATS}.")
        params.append(("result_formats", fmt))
    call = Call(
        "POST",
        "/workflows/run",
        params=params,
        body=encode_run_body(webhook_payload, specs_override),
        headers={"idempotency-key": key},
        post_run=True,
        max_retries=max_retries,
    )

    def parse(reply: Reply) -> RunStarted:
        try:
            data = _json(reply, call)
        except APIError:
            data = None
        if not isinstance(data, Mapping) or not data.get("job_id"):
            error = APIError(
                f"POST /workflows/run answered {reply.status} without a readable job_id",
                status=reply.status,
                method="POST",
                path="/workflows/run",
                hint=f"Retry with the same idempotency_key={key!r}: it cannot start a second run.",
            )
            # A 2xx means the server accepted the request: a run exists even though we cannot
            # read its id, and whoever handles this error must not assume that none was made.
            error.maybe_acted_before = True
            raise error
        return RunStarted.from_wire(data, idempotency_key=key)

    return Operation(call, parse)


# ---------------------------------------------------------------- reads and cancel


def list_runs(
    *,
    status: str | None = None,
    workflow_id: str | None = None,
    limit: int = 100,
    max_retries: int | None = None,
) -> Operation[list[RunSummary]]:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidArgumentError(
            f"limit must be an integer from 1 to {MAX_LIST_LIMIT}, got {limit!r}."
        )
    params: list[tuple[str, str]] = [("limit", str(limit))]
    if status is not None:
        wanted = normalize_status(status)
        if wanted not in LIST_STATUSES:
            raise InvalidArgumentError(
                f"status {status!r} is not one of {', '.join(sorted(LIST_STATUSES))}."
            )
        params.append(("status", wanted))
    if workflow_id is not None:
        params.append(("workflow_id", _require_id("workflow_id", workflow_id)))
    call = Call("GET", "/workflows/runs", params=params, max_retries=max_retries)

    def parse(reply: Reply) -> list[RunSummary]:
        data = _json(reply, call)
        items = data if isinstance(data, list) else []
        runs = [RunSummary.from_wire(item) for item in items if isinstance(item, Mapping)]
        return _unique_by_job_id(runs)

    return Operation(call, parse)


def _unique_by_job_id(runs: Sequence[RunSummary]) -> list[RunSummary]:
    """A run listed twice (a list that shifted while it was read) is still one run."""
    seen: set[str] = set()
    unique = []
    for run in runs:
        if run.job_id not in seen:
            seen.add(run.job_id)
            unique.append(run)
    return unique


def live_status(run_id: str, *, max_retries: int | None = None) -> Operation[LiveStatus]:
    run_id = _require_id("run_id", run_id)
    call = Call(
        "GET", f"/workflows/runs/{quote(run_id, safe='')}/live_status", max_retries=max_retries
    )
    return Operation(call, lambda reply: LiveStatus.from_wire(_mapping(_json(reply, call))), run_id)


def cancel_run(job_id: str, *, max_retries: int | None = None) -> Operation[CancelResult]:
    job_id = _require_id("job_id", job_id)
    call = Call("POST", "/workflows/cancel", params=[("job_id", job_id)], max_retries=max_retries)
    return Operation(
        call, lambda reply: CancelResult.from_wire(_mapping(_json(reply, call))), job_id
    )


def download_links(
    run_id: str, *, format: ResultFormat = "csv", max_retries: int | None = None
) -> Operation[list[ResultFile]]:
    run_id = _require_id("run_id", run_id)
    if format not in RESULT_FORMATS:
        raise InvalidArgumentError(f"format must be one of {RESULT_FORMATS}, got {format!r}.")
    call = Call(
        "GET",
        f"/workflows/runs/{quote(run_id, safe='')}/results/download-links",
        params=[("format", format)],
        max_retries=max_retries,
    )

    def parse(reply: Reply) -> list[ResultFile]:
        data = _json(reply, call)
        items = data if isinstance(data, list) else []
        return [ResultFile.from_wire(item) for item in items if isinstance(item, Mapping)]

    return Operation(call, parse, run_id)


def _mapping(data: Any) -> Mapping[str, Any]:
    return data if isinstance(data, Mapping) else {}


# ---------------------------------------------------------------- the download flow


def choose_file(files: Sequence[ResultFile], which: FileChoice) -> ResultFile:
    """The workflow's final output is the last block's file (Sixtyfour lists them in block order)."""
    if which == "final":
        numbered = [f for f in files if f.block_number is not None]
        return max(numbered, key=lambda f: f.block_number or 0) if numbered else files[-1]
    for item in files:
        if item.block_number == which:
            return item
    blocks = sorted({f.block_number for f in files if f.block_number is not None})
    raise InvalidArgumentError(f"no result file for block {which!r}; blocks with files: {blocks}.")


DownloadFlow = Generator[Call, Reply, pa.Table]


def download_results(
    run_id: str,
    *,
    format: ResultFormat = "csv",
    file: FileChoice = "final",
    max_retries: int | None = None,
) -> DownloadFlow:
    """A sans-I/O flow: yields the calls to make, receives their replies, returns the table.

    Inline ``results`` are used when present. A ``null`` or refused signed URL leads to fresh
    links. The signed URL is fetched with ``authenticated=False``: the key never goes there.
    """
    links_op = download_links(run_id, format=format, max_retries=max_retries)
    run_id = links_op.job_id or run_id
    problem = "signed URL missing, expired, refused, or short"
    for _ in range(MAX_LINK_REFRESHES + 1):
        reply = check((yield links_op.call), links_op.call, job_id=run_id)
        files = links_op.parse(reply)
        if not files:
            raise ResultDownloadError("the run has no result files (yet)", job_id=run_id)
        chosen = choose_file(files, file)
        if chosen.results is not None and (chosen.row_count in (0, len(chosen.results))):
            return rows_to_table(chosen.results)
        if chosen.download_url is None:
            continue
        fetch = Call(
            "GET",
            chosen.download_url,
            authenticated=False,
            expect_json=False,
            max_retries=max_retries,
        )
        file_reply = yield fetch
        if file_reply.status in _STALE_URL_STATUSES:
            continue
        check(file_reply, fetch, job_id=run_id)
        try:
            table = parse_result(file_reply.content, format)
        except ResultParseError as exc:
            # A body garbled in transit (cut mid-record) is as transient as a short one.
            problem = f"last body unreadable: {exc}"
            continue
        if chosen.row_count and table.num_rows != chosen.row_count:
            problem = f"last body held {table.num_rows} of {chosen.row_count} rows"
            continue  # a short body that still parsed: fetch it again
        return table
    raise ResultDownloadError(
        f"the result file could not be fetched after {MAX_LINK_REFRESHES + 1} sets of fresh links "
        f"({problem})",
        job_id=run_id,
    )
