"""Read-only records the emulator hands to tests: recorded requests and runs.

Both are plain frozen dataclasses with a JSON form, so a subprocess emulator can return exactly
the same objects over its control routes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received on an API or file route (control routes excluded).

    ``headers`` has lower-cased names (repeated headers joined with ``", "``); ``query`` maps each
    name to all its values in order; ``time`` is the emulator clock when the request arrived.
    """

    route: str
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    time: float

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or None."""
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body parsed as JSON (None when the body is empty)."""
        return json.loads(self.body) if self.body else None

    @property
    def carried_credentials(self) -> bool:
        """True if the request sent ``x-api-key`` or ``Authorization``."""
        return "x-api-key" in self.headers or "authorization" in self.headers

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (the body as base64)."""
        return {
            "route": self.route,
            "method": self.method,
            "path": self.path,
            "query": {name: list(values) for name, values in self.query.items()},
            "headers": dict(self.headers),
            "body": base64.b64encode(self.body).decode("ascii"),
            "time": self.time,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordedRequest:
        """The inverse of :meth:`to_json`."""
        return cls(
            route=data["route"],
            method=data["method"],
            path=data["path"],
            query={name: list(values) for name, values in data["query"].items()},
            headers=dict(data["headers"]),
            body=base64.b64decode(data["body"]),
            time=float(data["time"]),
        )


@dataclass(frozen=True)
class RunRecord:
    """A run as the emulator's books see it (``status`` as of the call, canonical spelling)."""

    job_id: str
    workflow_id: str
    workflow_name: str
    status: str
    rows_in: int
    rows_out: int | None
    idempotency_key: str | None
    queued_at: float
    save_json: bool
    result_formats: tuple[str, ...]
    specs_override: Mapping[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "job_id": self.job_id,
            "workflow_id": self.workflow_id,
            "workflow_name": self.workflow_name,
            "status": self.status,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "idempotency_key": self.idempotency_key,
            "queued_at": self.queued_at,
            "save_json": self.save_json,
            "result_formats": list(self.result_formats),
            "specs_override": None if self.specs_override is None else dict(self.specs_override),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """The inverse of :meth:`to_json`."""
        return cls(
            job_id=data["job_id"],
            workflow_id=data["workflow_id"],
            workflow_name=data["workflow_name"],
            status=data["status"],
            rows_in=int(data["rows_in"]),
            rows_out=data["rows_out"],
            idempotency_key=data["idempotency_key"],
            queued_at=float(data["queued_at"]),
            save_json=bool(data["save_json"]),
            result_formats=tuple(data["result_formats"]),
            specs_override=data["specs_override"],
        )
