"""Errors raised by the emulator's state core, each tied to the status the API answers with.

The state core knows nothing of HTTP, but the API's semantics do include a status per failure
(404 for an unknown run, 400 for a bad payload…), so each error carries it for the adapter.
"""

from __future__ import annotations

from typing import Any


class EmulatorError(Exception):
    """Base class of errors raised by the emulator's Python API (misuse, not API answers)."""


class ApiError(Exception):
    """A request the emulated API rejects: ``status`` and the ``detail`` of its error body."""

    status: int = 400

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class BadRequest(ApiError):
    """400: the request is understood but not acceptable (e.g. a missing input column)."""

    status = 400


class NotFound(ApiError):
    """404: unknown workflow or run."""

    status = 404


class Conflict(ApiError):
    """409: a request with the same Idempotency-Key is still being handled."""

    status = 409


class Unprocessable(ApiError):
    """422 with a plain-string detail (e.g. an Idempotency-Key reused with another body)."""

    status = 422


class ValidationFailed(Exception):
    """422: FastAPI-style validation errors, one dict per problem (``loc``, ``msg``, ``type``…)."""

    status = 422

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} validation error(s)")
