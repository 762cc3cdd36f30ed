"""Helpers for the emulator's tests: payloads, schema validators, request shortcuts."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from sixtyfour_frames.emulator import Emulator

OPENAPI_PATH = Path(__file__).resolve().parents[1] / "contract" / "sixtyfour-openapi.json"
OPENAPI_URI = "urn:sixtyfour-openapi"
# Building a TLS context loads the CA bundle (~70 ms); the emulator is plain HTTP, so build it once.
TLS = ssl.create_default_context()
PACE = 1.0  # seconds per row per block on the manual clock
COMPANY_WF = Emulator.workflow_id("company_enrichment")
LEAD_WF = Emulator.workflow_id("lead_enrichment")


def companies(count: int, *, start: int = 0) -> list[dict[str, Any]]:
    """``count`` company records with a row key, as a client would send them."""
    return [
        {"company_name": f"Company {index}", "__sixtyfour_row": index}
        for index in range(start, start + count)
    ]


class Schemas:
    """Validators for the OpenAPI document's component schemas, ``$ref``s resolved in-document."""

    def __init__(self) -> None:
        self.document = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
        resource = Resource.from_contents(self.document, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(OPENAPI_URI, resource)

    def _validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        return Draft202012Validator(schema, registry=self._registry, format_checker=FormatChecker())

    def _ref(self, name: str) -> dict[str, Any]:
        return {"$ref": f"{OPENAPI_URI}#/components/schemas/{name}"}

    def check(self, name: str, body: Any) -> None:
        """Raise ``ValidationError`` unless ``body`` is a valid ``name``."""
        self._validator(self._ref(name)).validate(body)

    def check_list(self, name: str, body: Any) -> None:
        """Raise unless ``body`` is a JSON array of valid ``name`` items."""
        self._validator({"type": "array", "items": self._ref(name)}).validate(body)

    def check_response(self, path: str, method: str, body: Any, status: int = 200) -> None:
        """Validate against the schema the document declares for this operation and status."""
        operation = self.document["paths"][path][method.lower()]
        content = operation["responses"][str(status)]["content"]["application/json"]
        schema = json.loads(json.dumps(content["schema"]).replace('"#/', f'"{OPENAPI_URI}#/'))
        self._validator(schema).validate(body)


def start_run(
    http: httpx.Client,
    records: Any,
    *,
    workflow_id: str = COMPANY_WF,
    key: str | None = None,
    **params: Any,
) -> str:
    """POST a run and return its job id (asserting a 200)."""
    headers = {} if key is None else {"Idempotency-Key": key}
    response = http.post(
        "/workflows/run",
        params={"workflow_id": workflow_id, **params},
        json={"webhook_payload": records},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def live(http: httpx.Client, job_id: str) -> dict[str, Any]:
    """GET live_status (asserting a 200)."""
    response = http.get(f"/workflows/runs/{job_id}/live_status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def links(http: httpx.Client, job_id: str, fmt: str | None = None) -> list[dict[str, Any]]:
    """GET download-links (asserting a 200)."""
    params = {} if fmt is None else {"format": fmt}
    response = http.get(f"/workflows/runs/{job_id}/results/download-links", params=params)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


def finish(emulator: Emulator) -> None:
    """Move the manual clock far enough for any test run to end."""
    emulator.advance(100_000)
