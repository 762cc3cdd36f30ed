"""Identity of what is sent: the cache scope, chunking, and each chunk's fingerprint.

Chunks are cut from the records in first-seen order, so the same call always yields the same
chunks, the same fingerprints and therefore the same ledger entries and Idempotency-Keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
    keys: tuple[str, ...]
    size_bytes: int


def split_chunks(
    keys: Sequence[str],
    record_sizes: Sequence[int],
    *,
    chunk_rows: int | None = None,
    chunk_bytes: int | None = None,
) -> list[Chunk]:
    """Cut records into runs of at most ``chunk_rows`` records and ``chunk_bytes`` bytes."""
    max_rows = _positive_int("chunk_size", chunk_rows or DEFAULT_CHUNK_ROWS)
    max_bytes = _positive_int("chunk_bytes", chunk_bytes or DEFAULT_CHUNK_BYTES)
    chunks: list[Chunk] = []
    current: list[str] = []
    size = 2  # the brackets of the JSON array
    for key, record_size in zip(keys, record_sizes, strict=True):
        grows = record_size + (1 if current else 0)
        if current and (len(current) >= max_rows or size + grows > max_bytes):
            chunks.append(Chunk(len(chunks), tuple(current), size))
            current, size, grows = [], 2, record_size
        current.append(key)
        size += grows
    if current:
        chunks.append(Chunk(len(chunks), tuple(current), size))
    return chunks


def halve(chunk: Chunk, record_sizes: Mapping[str, int]) -> list[Chunk]:
    """Split a chunk the API refused as too large (413) into two."""
    if len(chunk.keys) < 2:
        raise InvalidArgumentError(
            "a single record is larger than the API accepts; shorten its longest text values."
        )
    middle = len(chunk.keys) // 2
    parts = (chunk.keys[:middle], chunk.keys[middle:])
    return [
        Chunk(chunk.index, part, 1 + len(part) + sum(record_sizes[k] for k in part))
        for part in parts
    ]


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}.")
    return value
