"""Columns → record texts → row keys → the distinct records, as fast as the data allows.

With Polars installed, every record's text is assembled by one ``concat_str`` of per-column
fragments, hashed by numpy, and deduplicated by Polars; Python only touches the final lists.
Without Polars (a pandas-only install), the same texts are built value by value.
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
from sixtyfour_frames._payload_keys import KEY_LENGTH, hash_padded, key_text, record_key
from sixtyfour_frames._payload_values import (
    NaiveDatetimePolicy,
    RejectedValue,
    ValueEncoder,
    format_string,
)

if TYPE_CHECKING:
    import polars as pl

_KEY_FIELD: Final = "," + format_string(ROW_KEY) + ':"'
CHUNK_ROWS: Final = 1 << 16
_WORKERS: Final = 2


@dataclass(frozen=True)
class Records:
    row_keys: list[str]
    unique_keys: list[str]
    unique_json: list[str]


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
    from sixtyfour_frames._payload_polars import ColumnRejected

    try:
        yield
    except ColumnRejected as exc:
        raise SerializationError(
            exc.reason, column=column.label, row=row_label(exc.position), hint=exc.hint
        ) from exc


def python_fragments(values: list[Any], naive: NaiveDatetimePolicy) -> list[str]:
    """Encode values one by one; a rejection carries the position of the first bad value."""
    from sixtyfour_frames._payload_polars import ColumnRejected

    encode = ValueEncoder(naive).encode
    out: list[str] = []
    append = out.append
    try:
        for value in values:
            append(encode(value))
    except RejectedValue as exc:
        raise ColumnRejected(exc.reason, len(out), exc.hint) from exc
    return out


# ---------------------------------------------------------------------------------------------
# With Polars
# ---------------------------------------------------------------------------------------------


def _encode_with_polars(table: SourceTable, naive: NaiveDatetimePolicy) -> Records:
    import polars as pl

    try:
        frame, record = _record_plan(table, naive)
        return _collect(_encoded_chunks(frame, record))
    except (pl.exceptions.PanicException, pl.exceptions.PolarsError) as exc:
        raise SerializationError(f"Polars could not encode the frame: {exc}") from exc


@dataclass(frozen=True)
class _Chunk:
    """One slice of rows, encoded: every row's key, and the chunk's first-seen records."""

    keys: pl.Series  # String, one per row
    new: pl.Series  # Boolean, one per row: first occurrence of its key within the chunk
    sent: pl.Series  # String, one per True in ``new``: the object text with the key


def _encoded_chunks(frame: pl.DataFrame, record: pl.Expr) -> Iterator[_Chunk]:
    """Encode ``CHUNK_ROWS`` rows at a time on worker threads, yielding chunks in order.

    Polars and numpy release the GIL, so the workers run while the caller turns finished
    chunks into Python lists; small chunks also keep every buffer reusable (large fresh
    allocations are slow) and the peak memory bounded.
    """
    starts = range(0, frame.height, CHUNK_ROWS)
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

    texts = frame.select(record.alias("t")).to_series()
    keys = _keys_of(texts)
    new = keys.is_first_distinct()
    sent = pl.select(
        pl.concat_str(
            [texts.filter(new).str.head(-1), pl.lit(_KEY_FIELD), keys.filter(new), pl.lit('"}')]
        ).alias("j")
    ).to_series()
    return _Chunk(keys, new, sent)


def _collect(chunks: Iterator[_Chunk]) -> Records:
    """Concatenate the chunks' keys, keeping each record once (first-seen order)."""
    row_keys: list[str] = []
    unique_keys: list[str] = []
    unique_json: list[str] = []
    seen: set[str] = set()
    for chunk in chunks:
        row_keys += chunk.keys.to_list()
        candidates = chunk.keys.filter(chunk.new).to_list()
        texts = chunk.sent.to_list()
        if not seen.isdisjoint(candidates):  # a record already sent by an earlier chunk
            fresh = [key not in seen for key in candidates]
            candidates = [key for key, keep in zip(candidates, fresh, strict=True) if keep]
            texts = [text for text, keep in zip(texts, fresh, strict=True) if keep]
        seen.update(candidates)
        unique_keys += candidates
        unique_json += texts
    return Records(row_keys, unique_keys, unique_json)


def _record_plan(table: SourceTable, naive: NaiveDatetimePolicy) -> tuple[pl.DataFrame, pl.Expr]:
    """A frame of typed and pre-encoded columns, and the expression of each record's text."""
    import polars as pl

    from sixtyfour_frames._payload_polars import column_fragment

    work: dict[str, pl.Series] = {}
    parts: list[pl.Expr] = []
    for i, (column, prefix) in enumerate(zip(table.columns, _field_prefixes(table), strict=True)):
        name = f"c{i}"
        with _column_errors(column, table.row_label):
            fragment = _fragment(column, name, naive, column_fragment)
        if isinstance(fragment, pl.Series):
            work[name] = fragment.rename(name)
            fragment = pl.col(name)
        else:
            assert isinstance(column.values, pl.Series)
            work[name] = column.values.rename(name)
        parts += [pl.lit(prefix), fragment]
    parts.append(pl.lit("}"))
    return pl.DataFrame(work), pl.concat_str(parts)


def _fragment(
    column: SourceColumn,
    name: str,
    naive: NaiveDatetimePolicy,
    column_fragment: Callable[[Any, NaiveDatetimePolicy], Any],
) -> Any:
    import polars as pl

    try:
        if isinstance(column.values, pl.Series):
            return column_fragment(column.values.rename(name), naive)
        return pl.Series(name, python_fragments(column.values, naive), dtype=pl.String)
    except (pl.exceptions.PanicException, pl.exceptions.PolarsError) as exc:
        raise SerializationError(
            f"Polars could not encode this column: {exc}", column=column.label
        ) from exc


def _keys_of(texts: pl.Series) -> pl.Series:
    """The row key of every record text (vectorised; see ``_payload_keys``)."""
    import numpy as np
    import polars as pl
    import pyarrow as pa

    lengths = texts.str.len_bytes().cast(pl.Int64)
    padding = pl.lit("\0" * 7).str.head((8 - pl.lit(lengths) % 8) % 8)
    padded = pl.select(pl.concat_str([pl.lit(texts), padding]).alias("p")).to_series()
    array = padded.to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    _, offset_buffer, data = array.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    first, second = hash_padded(data, offsets, lengths.to_numpy())
    key_bytes, key_offsets = key_text(first, second)
    keys = pa.Array.from_buffers(
        pa.string(), len(texts), [None, pa.py_buffer(key_offsets), pa.py_buffer(key_bytes)]
    )
    return pl.Series("k", keys)


# ---------------------------------------------------------------------------------------------
# Without Polars
# ---------------------------------------------------------------------------------------------


def _encode_in_python(table: SourceTable, naive: NaiveDatetimePolicy) -> Records:
    columns = []
    for column in table.columns:
        assert isinstance(column.values, list)
        with _column_errors(column, table.row_label):
            columns.append(python_fragments(column.values, naive))
    prefixes = _field_prefixes(table)
    texts = [
        "".join([part for pair in zip(prefixes, row, strict=True) for part in pair]) + "}"
        for row in zip(*columns, strict=True)
    ]
    keys = _python_keys(texts)
    first: dict[str, str] = {}
    for key, text in zip(keys, texts, strict=True):
        first.setdefault(key, text)
    return Records(keys, list(first), [with_key(text, key) for key, text in first.items()])


def _python_keys(texts: list[str]) -> list[str]:
    try:
        import numpy as np
    except ImportError:
        return [record_key(text) for text in texts]
    encoded = [text.encode("utf-8") for text in texts]
    lengths = np.fromiter((len(data) for data in encoded), dtype=np.int64, count=len(encoded))
    padded = b"".join(data + b"\0" * (-len(data) % 8) for data in encoded)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(lengths + (-lengths % 8), out=offsets[1:])
    first, second = hash_padded(padded, offsets, lengths)
    key_bytes, _ = key_text(first, second)
    text = key_bytes.decode("ascii")
    return [text[i : i + KEY_LENGTH] for i in range(0, len(text), KEY_LENGTH)]
