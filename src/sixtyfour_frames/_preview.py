"""``preview``: what an enrich call would send and pay for, without any API call."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sixtyfour_frames._chunks import cache_scope
from sixtyfour_frames._client import Client
from sixtyfour_frames._config import BASE_URL_ENV, DEFAULT_BASE_URL
from sixtyfour_frames._enrich import EnrichOptions, options_from
from sixtyfour_frames._errors import SerializationError
from sixtyfour_frames._frames import eager
from sixtyfour_frames._ledger import Ledger
from sixtyfour_frames._payload import build_payload


@dataclass(frozen=True)
class Preview:
    """rows → unique → already cached → billable, and the first records exactly as sent."""

    workflow_id: str
    rows: int = 0
    unique: int = 0
    cached: int = 0
    billable: int = 0
    columns: tuple[str, ...] = ()
    records: list[dict[str, Any]] = field(default_factory=list)
    error: SerializationError | None = None

    def __str__(self) -> str:
        if self.error is not None:
            return f"Nothing would be sent: {self.error}"
        return (
            f"{self.rows} rows → {self.unique} unique → {self.cached} already in the ledger → "
            f"{self.billable} billable; columns sent: {', '.join(self.columns)}"
        )


def preview(
    frame: Any,
    workflow_id: str,
    *,
    sample: int = 5,
    ledger: Ledger | None = None,
    client: Client | None = None,
    **kwargs: Any,
) -> Preview:
    """Build and validate the payload and check the ledger's row cache; send nothing.

    The cache is looked up for ``client``'s API server (default: ``SIXTYFOUR_BASE_URL`` or the
    production API); no API key is needed.
    """
    base_url = client.base_url if client is not None else _configured_base_url()
    options = options_from(kwargs)
    options.validate()
    try:
        payload = build_payload(
            eager(frame),
            columns=options.columns,
            rename=options.rename,
            naive_datetimes=options.naive_datetimes,
        )
    except SerializationError as error:
        return Preview(workflow_id=workflow_id, error=error)
    cached = _cached_count(
        payload.unique_keys, workflow_id, options.specs_override, options, ledger, base_url
    )
    return Preview(
        workflow_id=workflow_id,
        rows=payload.n_rows,
        unique=payload.n_unique,
        cached=cached,
        billable=payload.n_unique - cached,
        columns=payload.columns,
        records=payload.records(payload.unique_keys[:sample]),
    )


def _configured_base_url() -> str:
    return os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL


def _cached_count(
    keys: list[str],
    workflow_id: str,
    specs_override: Mapping[str, Any] | None,
    options: EnrichOptions,
    ledger: Ledger | None,
    base_url: str,
) -> int:
    if not options.cache or options.refresh:
        return 0
    own = ledger is None
    book = ledger or Ledger()
    try:
        scope = cache_scope(workflow_id, specs_override, base_url=base_url)
        return len(book.cache_lookup(scope, keys))
    finally:
        if own:
            book.close()
