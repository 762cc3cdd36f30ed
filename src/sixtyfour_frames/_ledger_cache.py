"""The row cache's storage format and set arithmetic, with pyarrow and no SQL.

Why batches of keys instead of one SQLite row per key: a million-key lookup as a join over a
per-key B-tree costs about two microseconds per probe plus the Python cost of every fetched row
(5-9 s for a million keys on a small shared machine), while the same matching done by Arrow hash
kernels over whole arrays takes well under two seconds there. So each ``cache_put`` stores its keys
as a :class:`KeyBatch` (record keys and the id of the stored results that hold their rows), encoded
as a compressed Arrow IPC blob in one ``cache_batches`` row, and a lookup decodes the scope's
batches and matches them against the query with one ``is_in``.

"Latest put wins": batches are read newest first (a larger row id is a later put), and the answer
is filled oldest first so that the newest owner is written last. Keys are distinct within a batch
but may repeat across batches until a merge removes the older copies.

A lookup pays a fixed cost per batch (about 0.2 ms to decode) on top of the per-key work, so the
many small batches of a chunked call are merged: once the newest run of small batches is
:data:`MERGE_RUN` long, it becomes one batch (see :func:`newest_to_merge`).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from sixtyfour_frames._errors import InvalidArgumentError

Keys: TypeAlias = Iterable[str] | pa.Array | pa.ChunkedArray
"""Record keys: Python strings, or an Arrow string array (used without a Python object per key)."""
KEY_TYPE = pa.large_string()  # 64-bit offsets: a scope's keys may exceed 2 GiB of text together
OWNER_TYPE = pa.int64()
MAX_BATCH_BYTES = 64 * 1024 * 1024  # well under SQLite's 1 GB blob limit, whatever the key length
# Merge runs of small batches only: a merged batch is usually no longer small, so each key is
# rewritten about once (merging large batches too would rewrite the scope again and again).
SMALL_BATCH_BYTES = 256 * 1024  # about 8,000 keys of 32 characters
MERGE_RUN = 64
_SCHEMA = pa.schema([("record_key", KEY_TYPE), ("result_id", OWNER_TYPE)])
_IPC_OPTIONS = ipc.IpcWriteOptions(compression="zstd")


@dataclass(frozen=True)
class KeyBatch:
    """Distinct record keys and, for each, the ``results.id`` whose rows hold it."""

    keys: pa.Array
    owners: pa.Array

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def key_bytes(self) -> int:
        return int(self.keys.nbytes)


def key_list(record_keys: Keys) -> list[str]:
    """The keys as a list of strings; a lone string or a non-string key is refused."""
    if isinstance(record_keys, pa.Array | pa.ChunkedArray):
        return cast(list[str], checked_key_array(record_keys).to_pylist())
    if isinstance(record_keys, str | bytes):
        raise InvalidArgumentError("record keys must be an iterable of strings, not one string")
    keys = list(record_keys)
    # One type check per distinct type, not per key: a million isinstance calls cost 0.1-0.5 s.
    if not all(issubclass(kind, str) for kind in set(map(type, keys))):
        # A number or bytes would be converted silently and never match the text stored.
        raise InvalidArgumentError("every record key must be a string")
    return keys


def checked_key_array(record_keys: Keys) -> pa.Array:
    """The keys as an Arrow array; an Arrow array of strings is used as it is (no Python
    string per key), anything else is checked like :func:`key_list`."""
    if isinstance(record_keys, pa.ChunkedArray):
        record_keys = record_keys.combine_chunks()
    if not isinstance(record_keys, pa.Array):
        return key_array(key_list(record_keys))
    if not (pa.types.is_string(record_keys.type) or pa.types.is_large_string(record_keys.type)):
        raise InvalidArgumentError(f"record keys must be strings, not {record_keys.type}")
    if record_keys.null_count:
        raise InvalidArgumentError("record keys must not be null")
    return record_keys.cast(KEY_TYPE)


def key_array(keys: Sequence[str]) -> pa.Array:
    return pa.array(keys, type=KEY_TYPE)


def fresh_batch(keys: pa.Array, result_id: int) -> KeyBatch:
    distinct = pc.unique(keys)
    return KeyBatch(distinct, pa.repeat(pa.scalar(result_id, OWNER_TYPE), len(distinct)))


def split_for_storage(batch: KeyBatch) -> list[KeyBatch]:
    """``batch`` in slices small enough for one blob each (none when it is empty)."""
    n_slices = max(1, -(-batch.key_bytes // MAX_BATCH_BYTES))
    step = max(1, -(-len(batch) // n_slices))
    return [
        KeyBatch(batch.keys.slice(start, step), batch.owners.slice(start, step))
        for start in range(0, len(batch), step)
    ]


def encode(batch: KeyBatch) -> bytes:
    table = pa.Table.from_arrays([batch.keys, batch.owners], schema=_SCHEMA)
    sink = io.BytesIO()
    with ipc.new_stream(sink, _SCHEMA, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    return sink.getvalue()


def decode(blob: bytes) -> KeyBatch:
    table = ipc.open_stream(blob).read_all()
    if not table.schema.equals(_SCHEMA):
        raise pa.ArrowInvalid(f"unexpected row cache batch schema: {table.schema}")
    return KeyBatch(
        table.column("record_key").combine_chunks(), table.column("result_id").combine_chunks()
    )


def digest(blob: bytes) -> str:
    """Identifies a batch, so repeating the same put (a retry after a crash) adds nothing."""
    return hashlib.sha256(blob).hexdigest()


def find(query: pa.Array, newest_first: Sequence[KeyBatch]) -> tuple[list[str], list[int]]:
    """The stored occurrences of the query keys, newest first: (keys, their owners).

    The hash table is built over the query and the stored keys are streamed through it, which is
    cheap whichever side is larger (inserting into a hash table costs more than probing it).
    """
    if not len(query) or not newest_first:
        return [], []
    stored = _concat(newest_first)
    hit = pc.is_in(stored.keys, value_set=query)
    return stored.keys.filter(hit).to_pylist(), stored.owners.filter(hit).to_pylist()


def latest(keys: Sequence[str], owners: Sequence[int], job_of: Mapping[int, str]) -> dict[str, str]:
    """``{key: job id}`` from occurrences ordered newest first: the newest occurrence wins."""
    if len(job_of) == 1:  # one run only (the common case): no precedence to settle
        (job,) = job_of.values()
        return dict.fromkeys(keys, job)
    # Oldest first into the dict, so the newest owner of a key is written last.
    return dict(zip(reversed(keys), map(job_of.__getitem__, reversed(owners)), strict=True))


def merge(newest_first: Sequence[KeyBatch]) -> KeyBatch:
    """One batch holding each key once, with the owner from its newest batch."""
    stored = _concat(newest_first)
    first_seen = pc.index_in(stored.keys, value_set=stored.keys)  # the first = the newest
    is_first = pc.equal(first_seen, pa.array(range(len(stored)), type=first_seen.type))
    return KeyBatch(stored.keys.filter(is_first), stored.owners.filter(is_first))


def newest_to_merge(key_bytes_newest_first: Sequence[int]) -> int:
    """How many of the newest batches to merge now: the run of small ones, once it is long.

    Only a run that starts at the newest batch is merged, so the merged batch can take the newest
    place without changing which put is later than which.
    """
    run = 0
    for size in key_bytes_newest_first:
        if size >= SMALL_BATCH_BYTES:
            break
        run += 1
    return run if run >= MERGE_RUN else 0


def without(batch: KeyBatch, removed: pa.Array) -> KeyBatch:
    """``batch`` minus every key of ``removed``."""
    keep = pc.invert(pc.is_in(batch.keys, value_set=removed))
    return KeyBatch(batch.keys.filter(keep), batch.owners.filter(keep))


def count_present(candidates: pa.Array, stored: Sequence[KeyBatch]) -> int:
    """How many distinct ``candidates`` appear in any of ``stored``."""
    if not stored or not len(candidates):
        return 0
    present = pc.is_in(pc.unique(candidates), value_set=_concat(stored).keys)
    return int(pc.sum(present).as_py() or 0)


def count_distinct(stored: Sequence[KeyBatch]) -> int:
    return len(pc.unique(_concat(stored).keys)) if stored else 0


def _concat(batches: Sequence[KeyBatch]) -> KeyBatch:
    return KeyBatch(
        pa.concat_arrays([b.keys for b in batches]),
        pa.concat_arrays([b.owners for b in batches]),
    )
