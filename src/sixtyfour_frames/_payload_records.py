"""Columns → record texts → row keys → the distinct records, as fast as the data allows.

With Polars installed, a chunk of rows at a time (on worker threads, since Polars and numpy
release the GIL):

1. every record's sent text is built in one Polars expression, with a placeholder where its
   key goes (``struct.json_encode()`` when Polars' writer already writes every column the
   canonical way, else a ``concat_str`` of per-column JSON texts);
2. numpy hashes each text's keyless part in a copy of Polars' buffer, and stamps the key's hex
   digits into it;
3. Polars finds duplicate keys. Keys and texts stay in Arrow arrays: no Python object per row.

Without Polars (a pandas-only install) the same texts are built value by value: slower, same
bytes. The texts and keys stay in Arrow arrays either way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sixtyfour_frames._errors import SerializationError
from sixtyfour_frames._payload_frames import (
    ROW_KEY,
    SourceColumn,
    SourceTable,
    polars_available,
)
from sixtyfour_frames._payload_keys import (
    KEY_PLACEHOLDER,
    hash_and_stamp,
    key_strings,
    keys_of_texts,
    texts_of_large_strings,
    texts_of_views,
)
from sixtyfour_frames._payload_values import (
    ColumnRejected,
    NaiveDatetimePolicy,
    encode_values,
    format_string,
)

if TYPE_CHECKING:
    import polars as pl

    from sixtyfour_frames._payload_polars import Fragment

_KEY_FIELD: Final = "," + format_string(ROW_KEY) + ':"'
_TAIL: Final = _KEY_FIELD + KEY_PLACEHOLDER + '"}'
_TAIL_BYTES: Final = len(_TAIL.encode("utf-8"))
CHUNK_ROWS: Final = 1 << 14
NATIVE_RECORDS: Final = True  # tests turn it off to check both paths give the same bytes
_WORKERS: Final = 2


@dataclass(frozen=True)
class Records:
    """Arrow arrays, so that a million records never become a million Python objects."""

    row_keys: Any  # pa.StringArray: one key per input row
    unique_keys: Any  # pa.StringArray: the distinct keys, in first-seen order
    texts: Any  # pa.ChunkedArray of large_string: per distinct key, the object text sent


def encode_records(table: SourceTable, naive: NaiveDatetimePolicy) -> Records:
    if polars_available():
        return _encode_with_polars(table, naive)
    return _encode_in_python(table, naive)


def with_key(text: str, key: str) -> str:
    """The object text as sent: the key appended as the last field."""
    return f'{text[:-1]}{_KEY_FIELD}{key}"}}'


def _field_prefixes(table: SourceTable) -> list[str]:
    """``{"name":`` for the first column, ``,"name":`` for the others."""
    return [
        ("{" if i == 0 else ",") + format_string(column.wire) + ":"
        for i, column in enumerate(table.columns)
    ]


@contextmanager
def _column_errors(column: SourceColumn, row_label: Callable[[int], object]) -> Iterator[None]:
    """Name the column and the row in any rejection raised while encoding ``column``."""
    try:
        yield
    except ColumnRejected as exc:
        raise SerializationError(
            exc.reason, column=column.label, row=row_label(exc.position), hint=exc.hint
        ) from exc


# ---------------------------------------------------------------------------------------------
# With Polars
# ---------------------------------------------------------------------------------------------


def _encode_with_polars(table: SourceTable, naive: NaiveDatetimePolicy) -> Records:
    import polars as pl

    try:
        frame, record = _record_plan(table, naive)
        chunks = list(_encoded_chunks(frame, record))
        return _collect(chunks)
    except (pl.exceptions.PanicException, pl.exceptions.PolarsError) as exc:
        raise SerializationError(f"Polars could not encode the frame: {exc}") from exc


@dataclass(frozen=True)
class _Chunk:
    """One slice of rows, encoded: the texts as sent (keys included) and the keys."""

    sent: Any  # Arrow large_string array, one per row
    keys: Any  # Arrow string array, one per row
    lane: Any  # Arrow uint64 array, one per row: equal keys have equal lanes


def _encoded_chunks(frame: pl.DataFrame, record: pl.Expr) -> Iterator[_Chunk]:
    """Encode ``CHUNK_ROWS`` rows at a time on worker threads, yielding chunks in order.

    Polars and numpy release the GIL, so on a multi-core machine the chunks are encoded in
    parallel; small chunks also keep every buffer small enough to be reused (a fresh large
    allocation costs a page fault per 4 KiB) and bound the scratch memory.
    """
    starts = range(0, frame.height, CHUNK_ROWS)
    if len(starts) == 1:
        yield _encode_chunk(frame, record)
        return
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="sixtyfour-payload") as pool:
        pending: deque[Future[_Chunk]] = deque()
        for start in starts:
            pending.append(pool.submit(_encode_chunk, frame.slice(start, CHUNK_ROWS), record))
            if len(pending) > _WORKERS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _encode_chunk(frame: pl.DataFrame, record: pl.Expr) -> _Chunk:
    import polars as pl
    import pyarrow as pa

    texts = frame.select(record.alias("text")).to_series()
    laid_out = texts_of_views(texts.to_arrow(compat_level=pl.CompatLevel.newest()))
    if laid_out is None:  # another memory layout: let Arrow convert it first
        laid_out = texts_of_large_strings(texts.to_arrow(compat_level=pl.CompatLevel.oldest()))
    stamped = None if laid_out is None else hash_and_stamp(laid_out, _TAIL_BYTES)
    if stamped is None:  # an unexpected memory layout: the same keys, value by value
        return _stamp_in_python(texts.to_list())
    sent, hex_digits, lane = stamped
    return _Chunk(sent, key_strings(hex_digits), pa.array(lane, pa.uint64()))


def _stamp_in_python(texts: list[str]) -> _Chunk:
    import pyarrow as pa

    keyless = [text[: -len(_TAIL)] + "}" for text in texts]
    keys = _python_keys(keyless)
    sent = [with_key(text, key) for text, key in zip(keyless, keys, strict=True)]
    lane = [int(key[1:17], 16) for key in keys]
    return _Chunk(
        pa.array(sent, pa.large_string()), pa.array(keys, pa.string()), pa.array(lane, pa.uint64())
    )


def _collect(chunks: list[_Chunk]) -> Records:
    """Every row's key, and each distinct record once, in first-seen order.

    The texts stay in their chunks: one array of every text would be a large fresh allocation,
    and the request bodies are cut from them chunk by chunk anyway.
    """
    import polars as pl
    import pyarrow as pa

    keys = pa.chunked_array([chunk.keys for chunk in chunks], pa.string()).combine_chunks()
    texts = pa.chunked_array([chunk.sent for chunk in chunks], pa.large_string())
    lanes = pl.Series("h", pa.chunked_array([chunk.lane for chunk in chunks], pa.uint64()))
    if lanes.n_unique() == len(keys):  # the usual case: no two rows alike
        return Records(keys, keys, texts)
    first = pl.Series("k", keys).is_first_distinct().to_arrow()
    return Records(keys, keys.filter(first), texts.filter(first))


def _record_plan(table: SourceTable, naive: NaiveDatetimePolicy) -> tuple[pl.DataFrame, pl.Expr]:
    """A frame of typed and pre-encoded columns, and the expression of each sent text.

    Each text ends with the key field holding ``KEY_PLACEHOLDER``: the keys are stamped in
    after hashing, which saves building every text twice. When Polars' JSON writer writes
    every column the canonical way, a record is one ``struct.json_encode()`` (the fastest
    path); otherwise it is a ``concat_str`` of each column's JSON text.
    """
    import polars as pl

    work: dict[str, pl.Series] = {}
    fragments = []
    for i, column in enumerate(table.columns):
        name = f"c{i}"
        with _column_errors(column, table.row_label):
            work[name], fragment = _polars_fragment(column, name, naive)
        fragments.append(fragment)
    values = [fragment.value for fragment in fragments]
    if NATIVE_RECORDS and all(value is not None for value in values):
        fields = [
            value.alias(column.wire)
            for value, column in zip(values, table.columns, strict=True)
            if value is not None
        ]
        record = pl.struct([*fields, pl.lit(KEY_PLACEHOLDER).alias(ROW_KEY)]).struct.json_encode()
        return pl.DataFrame(work), record
    parts: list[pl.Expr] = []
    for prefix, fragment in zip(_field_prefixes(table), fragments, strict=True):
        parts += [pl.lit(prefix), fragment.text]
    parts.append(pl.lit(_TAIL))
    return pl.DataFrame(work), pl.concat_str(parts)


def _polars_fragment(
    column: SourceColumn, name: str, naive: NaiveDatetimePolicy
) -> tuple[pl.Series, Fragment]:
    """The Series to hold in the work frame, and how its values are written."""
    import polars as pl

    from sixtyfour_frames._payload_polars import Fragment, column_fragment

    try:
        if not isinstance(column.values, pl.Series):
            texts = pl.Series(name, encode_values(column.values, naive), pl.String)
            return texts, Fragment(pl.col(name))
        values = column.values.rename(name)
        fragment = column_fragment(values, naive)
    except (pl.exceptions.PanicException, pl.exceptions.PolarsError) as exc:
        raise SerializationError(
            f"Polars could not encode this column: {exc}", column=column.label
        ) from exc
    if fragment.ready is not None:  # some values were rendered in Python
        return fragment.ready, fragment
    return values, fragment


# ---------------------------------------------------------------------------------------------
# Without Polars
# ---------------------------------------------------------------------------------------------


def _encode_in_python(table: SourceTable, naive: NaiveDatetimePolicy) -> Records:
    import pyarrow as pa

    columns = []
    for column in table.columns:
        assert isinstance(column.values, list)
        with _column_errors(column, table.row_label):
            columns.append(encode_values(column.values, naive))
    # one %-template per record: {"a":%s,"b":%s} (a "%" in a name is doubled)
    template = "".join(prefix.replace("%", "%%") + "%s" for prefix in _field_prefixes(table)) + "}"
    texts = [template % row for row in zip(*columns, strict=True)]
    keys = _python_keys(texts)
    first: dict[str, str] = {}
    for key, text in zip(keys, texts, strict=True):
        first.setdefault(key, text)
    sent = [with_key(text, key) for key, text in first.items()]
    return Records(
        pa.array(keys, pa.string()),
        pa.array(list(first), pa.string()),
        pa.chunked_array([pa.array(sent, pa.large_string())]),
    )


def _python_keys(texts: list[str]) -> list[str]:
    """The keys of record texts (without the key field), vectorised by numpy."""
    return keys_of_texts([text.encode("utf-8") for text in texts])
