"""Identity of what is sent: the cache scope, chunking, and each chunk's fingerprint.

Chunks are cut from the records in first-seen order, so the same call always yields the same
chunks, the same fingerprints and therefore the same ledger entries and Idempotency-Keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from sixtyfour_frames._errors import InvalidArgumentError

DEFAULT_CHUNK_ROWS = 5_000
# The API's maximum body size is not documented; 8 MiB is far below what JSON APIs usually take.
DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def cache_scope(
    workflow_id: str, specs_override: Mapping[str, Any] | None, *, base_url: str
) -> str:
    """Rows enriched by the same workflow, overrides and API server may be reused.

    The server is part of the scope so that rows from a local emulator (or a staging API) are
    never served as if the production API had produced them.
    """
    text = canonical_json(
        {"api": base_url.rstrip("/"), "workflow_id": workflow_id, "specs_override": specs_override}
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def fingerprint(scope: str, body: bytes) -> str:
    """One logical submission: the scope plus the exact records sent."""
    return hashlib.sha256(scope.encode() + b"\x00" + body).hexdigest()


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Chunk:
    index: int
    keys: pa.Array
    """The chunk's record keys (Arrow strings: a large call holds no Python string per key)."""
    positions: npt.NDArray[np.int64]
    """Where the chunk's records are in the payload's distinct records."""
    size_bytes: int


def split_chunks(
    record_sizes: npt.NDArray[np.int64],
    *,
    chunk_rows: int | None = None,
    chunk_bytes: int | None = None,
) -> list[tuple[int, int, int]]:
    """Cut records into runs of at most ``chunk_rows`` records and ``chunk_bytes`` bytes.

    ``record_sizes`` are the records' UTF-8 sizes, in order. Returns ``(start, stop, body
    size)`` per run; a record larger than ``chunk_bytes`` goes alone.
    """
    max_rows = _positive_int("chunk_size", chunk_rows or DEFAULT_CHUNK_ROWS)
    max_bytes = _positive_int("chunk_bytes", chunk_bytes or DEFAULT_CHUNK_BYTES)
    # body of records [a, b) = "[" + each record and its "," (or the closing "]")
    ends = np.concatenate(([0], np.cumsum(record_sizes + 1, dtype=np.int64)))
    runs: list[tuple[int, int, int]] = []
    start, total = 0, len(record_sizes)
    while start < total:
        fits = int(np.searchsorted(ends, ends[start] + max_bytes - 1, side="right")) - 1
        stop = min(start + max_rows, total, max(fits, start + 1))
        runs.append((start, stop, 1 + int(ends[stop] - ends[start])))
        start = stop
    return runs


def halve(chunk: Chunk, record_sizes: npt.NDArray[np.int64]) -> list[Chunk]:
    """Split a chunk the API refused as too large (413) into two."""
    if len(chunk.keys) < 2:
        raise InvalidArgumentError(
            "a single record is larger than the API accepts; shorten its longest text values."
        )
    middle = len(chunk.keys) // 2
    halves = [
        (chunk.keys[:middle], chunk.positions[:middle]),
        (chunk.keys[middle:], chunk.positions[middle:]),
    ]
    return [
        Chunk(
            chunk.index,
            keys,
            positions,
            1 + len(keys) + int(record_sizes[positions].sum()),
        )
        for keys, positions in halves
    ]


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}.")
    return value
