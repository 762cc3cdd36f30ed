"""The whole exception tree, the HTTP status → class map, and error-body parsing.

Every error the library raises derives from :class:`SixtyfourError`. Transport failures
(`TransportError`) are kept apart from a remote run failing (`RunError`), because the first may be
retried and the second never is. Each error carries what is known (status, the API's ``detail``,
the job id) and a sentence on what to do; none of them ever holds the API key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


class SixtyfourError(Exception):
    """Base class of every error raised by sixtyfour-frames."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        if hint is not None:
            self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip() if self.hint else self.message


class ConfigurationError(SixtyfourError, ValueError):
    """A setting is missing or invalid (no API key, a bad base URL)."""


class InvalidArgumentError(SixtyfourError, ValueError):
    """An argument was rejected locally, before any request was sent."""


class SerializationError(SixtyfourError, ValueError):
    """A frame cannot be turned into the exact JSON records the API would receive.

    Raised before any request, so nothing was sent and nothing was paid for.
    """

    def __init__(
        self,
        reason: str,
        *,
        column: str | None = None,
        row: object | None = None,
        hint: str | None = None,
    ) -> None:
        self.column = column
        self.row = row
        self.reason = reason
        where = []
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row!r}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(f"{prefix}{reason}", hint=hint)


class JoinError(SixtyfourError, ValueError):
    """The workflow's output cannot be matched back to the caller's rows safely."""


class LedgerError(SixtyfourError):
    """The local ledger is unreadable, foreign, or locked by a stuck process."""


class TransportError(SixtyfourError):
    """The request failed below HTTP (connection refused, reset, timeout, TLS).

    ``sent`` says whether the server may have acted on the request: only a failure to connect
    (or a refusal such as a 429 before it) proves that it did not.
    """

    hint = "Check the network and SIXTYFOUR_BASE_URL; the call can be retried safely."

    def __init__(
        self,
        message: str,
        *,
        sent: bool,
        method: str = "",
        path: str = "",
        job_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.sent = sent
        self.method = method
        self.path = path
        self.job_id = job_id
        super().__init__(message, hint=hint)


class APIError(SixtyfourError):
    """The API answered with an error status.

    ``maybe_acted_before`` is True when an earlier attempt of the same call may have reached the
    server (a reset, a timeout, a 5xx): for ``POST /workflows/run`` a run may then exist even
    though this last answer is an error.
    """

    hint = ""
    maybe_acted_before: bool = False

    def __init__(
        self,
        detail: str,
        *,
        status: int,
        method: str = "",
        path: str = "",
        job_id: str | None = None,
        body: object = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.detail = detail
        self.status = status
        self.method = method
        self.path = path
        self.job_id = job_id
        self.body = body
        self.retry_after = retry_after
        where = f"{method} {path} " if method else ""
        job = f" (job {job_id})" if job_id else ""
        super().__init__(f"{where}→ {status}: {detail}{job}", hint=hint)


class BadRequestError(APIError):
    hint = "The API rejected the request as sent; fix the input named above and run again."


class AuthenticationError(APIError):
    hint = "Check SIXTYFOUR_API_KEY: it is missing, wrong, or expired (create one under Settings → API Keys)."


class InsufficientCreditsError(APIError):
    hint = "The account's balance is too low for this run; add credits, then run again."


class PermissionDeniedError(APIError):
    hint = (
        "This key may not use this workflow or feature; check the workflow's owner and your plan."
    )


class NotFoundError(APIError):
    hint = "Check the id: the workflow or run does not exist or belongs to another organisation."


class ConflictError(APIError):
    hint = "The same request is still being processed; it is retried with the same Idempotency-Key."


class IdempotencyConflictError(ConflictError):
    hint = (
        "An Idempotency-Key was reused with a different body. The frame changed between attempts; "
        "nothing new was started."
    )


class PayloadTooLargeError(APIError):
    hint = "The request body is too large; pass a smaller chunk_size."


class RequestValidationError(APIError):
    hint = "The API's validation rejected a field; the detail above names it."


class RateLimitError(APIError):
    hint = "The rate limit (500 requests per minute) was exceeded; wait a minute and try again."


class ServerError(APIError):
    hint = "Sixtyfour had a server error; the call was retried and can be retried again later."


class ResultDownloadError(SixtyfourError):
    """A run finished but its result file could not be fetched or parsed."""

    def __init__(self, message: str, *, job_id: str, hint: str | None = None) -> None:
        self.job_id = job_id
        super().__init__(
            f"{message} (job {job_id})",
            hint=hint
            or f"The run's results are kept on the server: retry with download_results({job_id!r}).",
        )


class RunError(SixtyfourError):
    """A remote run ended without completing."""

    def __init__(self, message: str, *, job_id: str, hint: str | None = None) -> None:
        self.job_id = job_id
        super().__init__(message, hint=hint)


class RunFailedError(RunError):
    """The run failed on the server; ``error_message`` and ``status_reason`` say why."""

    def __init__(
        self,
        job_id: str,
        *,
        error_message: str | None = None,
        status_reason: str | None = None,
        failed_block: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.error_message = error_message
        self.status_reason = status_reason
        self.failed_block = failed_block
        parts = [p for p in (status_reason, error_message) if p]
        block = f" at block {failed_block!r}" if failed_block else ""
        why = f": {'; '.join(parts)}" if parts else ""
        super().__init__(
            f"run {job_id} failed{block}{why}",
            job_id=job_id,
            hint=hint or "Fix the cause above; re-running pays only for the rows that failed.",
        )


class RunCancelledError(RunError):
    """The run was cancelled (by this library on Ctrl-C, by another client, or on the dashboard)."""

    def __init__(self, job_id: str, *, hint: str | None = None) -> None:
        super().__init__(f"run {job_id} was cancelled", job_id=job_id, hint=hint)


class WaitTimeoutError(RunError):
    """The wait deadline passed; the run was NOT cancelled and is still going on the server."""

    def __init__(self, job_id: str, *, timeout: float, last_status: str | None = None) -> None:
        self.timeout = timeout
        self.last_status = last_status
        status = f" (last status {last_status!r})" if last_status else ""
        super().__init__(
            f"run {job_id} did not finish within {timeout:g} s{status}",
            job_id=job_id,
            hint=f"The run is still going: wait again with wait({job_id!r}) or cancel_run({job_id!r}).",
        )


class AmbiguousSubmitError(SixtyfourError):
    """A run may or may not have been started, and the library will not guess.

    Raised when a POST /workflows/run failed after the request was sent and neither the
    Idempotency-Key replay nor the list of runs could prove which run (if any) it created.
    Nothing is ever resubmitted with a fresh key on this path.
    """

    def __init__(
        self,
        message: str,
        *,
        idempotency_key: str,
        workflow_id: str,
        candidates: Sequence[str] = (),
        hint: str | None = None,
    ) -> None:
        self.idempotency_key = idempotency_key
        self.workflow_id = workflow_id
        self.candidates = tuple(candidates)
        cands = f" candidates: {', '.join(self.candidates)}." if self.candidates else ""
        super().__init__(
            f"{message}{cands}",
            hint=hint
            or (
                "Check the runs with `sixtyfour-frames runs list`; re-running the same call "
                "reuses the same Idempotency-Key and never starts a second run blindly."
            ),
        )


_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: RequestValidationError,
    429: RateLimitError,
}


def error_class_for(status: int) -> type[APIError]:
    """The exception class for an HTTP status (5xx → ServerError, other → APIError)."""
    if status >= 500:
        return ServerError
    return _STATUS_CLASSES.get(status, APIError)


def parse_error_detail(body: bytes, *, status: int, reason: str = "") -> tuple[str, object]:
    """Extract a human-readable detail from any documented error body shape.

    Shapes: ``{"detail": "…"}``, FastAPI's ``{"detail": [{"loc","msg","type"}]}``,
    ``{"error": "…", "message": "…"}`` and ``{"error": {"code", "message"}}``. Returns the
    text and the parsed body (or the raw text when it is not JSON).
    """
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed: object = json.loads(text) if text else None
    except ValueError:
        return (text[:500] or reason or f"HTTP {status}"), text
    return _detail_from(parsed) or reason or f"HTTP {status}", parsed


def _detail_from(parsed: object) -> str:
    if not isinstance(parsed, Mapping):
        return str(parsed)[:500] if parsed is not None else ""
    detail = parsed.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(_validation_item(item) for item in detail)
    error = parsed.get("error")
    if isinstance(error, Mapping):
        return _join_error(error.get("code"), error.get("message"))
    return _join_error(error, parsed.get("message"))


def _validation_item(item: Any) -> str:
    if not isinstance(item, Mapping):
        return str(item)
    loc = ".".join(str(part) for part in item.get("loc", ()) or ())
    msg = str(item.get("msg", "invalid"))
    return f"{loc}: {msg}" if loc else msg


def _join_error(kind: object, message: object) -> str:
    parts = [str(p) for p in (kind, message) if p]
    return ": ".join(parts)
