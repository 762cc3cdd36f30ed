r"""A pandas or Polars DataFrame → the exact JSON records sent as ``webhook_payload``.

Every value goes through an explicit converter for its type, and the whole frame is checked
before any request: a value that JSON cannot carry exactly raises
:class:`~sixtyfour_frames.SerializationError` naming the column and the row (the pandas index
label, or the Polars row number) of the first bad value, and nothing is sent. Nothing is
rounded, truncated, re-zoned or dropped silently.

Each distinct record gets a content-addressed row key, sent as its last field
``"__sixtyfour_row"``; identical records are sent once, and the results fan back out to every
row that had them. The pandas index is never sent (the row keys replace it), so a duplicate
index or a MultiIndex is fine. The same values give the same text, and so the same key,
whether they come from pandas or Polars.

=========================================  ==================================================
Value (pandas / Polars / Python object)    Sent as
=========================================  ==================================================
NaN, None, ``pd.NA``, ``NaT``, null        ``null``
±inf (float column, object, nested)        **rejected**: replace it first
float64                                    the shortest text that round-trips, written as
                                           Python's ``repr``: ``0.30000000000000004``,
                                           ``1e-12``, ``-0.0``, ``1e+16``
float32 (float16: widened exactly)         the shortest text that round-trips *as float32*,
                                           in the same style: ``0.1``, not
                                           ``0.10000000149011612``; read it as float32 to
                                           get the value back bit for bit
int (any width; > 2**53; Int128)           exact digits. JavaScript readers lose precision
                                           above 2**53: send such ids as strings
bool                                       ``true`` / ``false``
str, pandas ``str``/``string``             JSON string in UTF-8 (no ``\uXXXX`` for non-ASCII);
                                           ``"``, ``\`` and control characters escaped
                                           (``\x00`` → ``\u0000``)
str with a lone surrogate (``"\ud800"``)  **rejected** (not valid UTF-8)
bytes, Binary                              **rejected**: decode or base64-encode first
tz-aware datetime                          ``"2024-01-01T12:00:00.000000-05:00"``: the value's
                                           own offset, always 6 fraction digits, 9 when the
                                           value has nanoseconds; a historical offset keeps
                                           its seconds (``-04:56:02``); daylight saving goes
                                           on after 2099 as in Python's ``zoneinfo``
naive datetime                             **rejected**, or with ``naive_datetimes="utc"``
                                           read as UTC: ``"2024-01-01T12:00:00.000000+00:00"``
datetime outside 0001-01-02..9999-12-30    **rejected**
date                                       ``"2024-01-01"``
time of day                                ``"12:30:00.000000"`` (with a tz: **rejected**)
timedelta, Duration                        ISO-8601 duration in seconds: ``"PT7200S"``,
                                           ``"-PT1.5S"``, ``"PT0.000000001S"``
Decimal (object values, Polars/Arrow       JSON string with the exact digits: ``"1.10"``;
decimal)                                   ``Decimal('NaN')`` / ``Infinity``: **rejected**
Categorical, Enum                          their values in their own type: int categories
                                           stay ints (``1``, never ``1.0``)
list, tuple, numpy array, dict with str    JSON array / object, each element by these rules;
keys, Polars List/Array/Struct             deeper than 32 levels (or a cycle), a non-string
                                           dict key, a named tuple: **rejected**
object column                              each value by its own type
Period, Interval, complex, set, Arrow      **rejected**, naming the type
interval, any other object
=========================================  ==================================================

Columns: names that are not strings are stringified (``0`` → ``"0"``); two payload columns
with the same name after that (``0`` and ``"0"``, a duplicate, or a ``rename`` onto another
name) are rejected, as are a column named ``__sixtyfour_row``, MultiIndex columns, a frame
with no selected column, and a frame without rows (no run is started for nothing).

The row key is ``"k"`` + 20 hex digits: an 80-bit hash of the record's JSON text without the
key field (defined in ``_payload_keys``). It is the same in every process and on every
platform, and it starts with a letter so that CSV readers keep it a string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Final, cast, get_args

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_frames._errors import SerializationError
from sixtyfour_frames._payload_frames import ROW_KEY, read_frame
from sixtyfour_frames._payload_records import encode_records
from sixtyfour_frames._payload_values import NaiveDatetimePolicy

__all__ = ["ROW_KEY", "NaiveDatetimePolicy", "Payload", "build_payload"]

_POLICIES: Final = get_args(NaiveDatetimePolicy)
_COMMA: Final = pa.scalar(",", pa.large_string())


@dataclass(frozen=True, eq=False)
class Payload:
    """The validated records of one frame, deduplicated, ready to be sent in chunks.

    Keys and texts are held in Arrow arrays (a million records would otherwise be millions of
    Python objects); the list views (``row_keys``, ``unique_keys``, ``unique_json``) are built
    on first use, for small frames and inspection.
    """

    columns: tuple[str, ...]
    """Wire column names in order (after ``rename``), the row key excluded."""
    row_key_array: pa.Array
    """One per input row: the key of that row's record (Arrow strings)."""
    unique_key_array: pa.Array
    """The distinct keys, in first-seen order (Arrow strings)."""
    texts: pa.ChunkedArray | None
    """Per distinct key (same order): the JSON object text that is sent (Arrow large strings);
    None once released (:meth:`without_texts`)."""
    texts_from: int = 0
    """The texts of the distinct records before this position were released (they were sent)."""

    @property
    def n_rows(self) -> int:
        return len(self.row_key_array)

    @property
    def n_unique(self) -> int:
        return len(self.unique_key_array)

    @cached_property
    def row_keys(self) -> list[str]:
        """One per input row: the key of that row's record."""
        return cast(list[str], self.row_key_array.to_pylist())

    @cached_property
    def unique_keys(self) -> list[str]:
        """The distinct keys, in first-seen order."""
        return cast(list[str], self.unique_key_array.to_pylist())

    @cached_property
    def unique_json(self) -> list[str]:
        """Per distinct key (same order): the JSON object text that is sent."""
        return cast(list[str], self._texts_at(range(self.n_unique)).to_pylist())

    @cached_property
    def record_sizes(self) -> npt.NDArray[np.int64]:
        """Per distinct key (same order): the size of its object text in UTF-8 bytes."""
        return np.asarray(pc.binary_length(self._texts).to_numpy(), dtype=np.int64)

    def positions_of(self, keys: Sequence[str]) -> npt.NDArray[np.int64]:
        """Where ``keys`` are among the distinct keys (``KeyError`` for a key not in here)."""
        found = pc.index_in(pa.array(keys, pa.string()), value_set=self.unique_key_array)
        if found.null_count:
            missing = keys[pc.index(pc.is_null(found), True).as_py()]
            raise KeyError(f"row key {missing!r} is not in this payload")
        return np.asarray(found.to_numpy(), dtype=np.int64)

    def json_for(self, keys: Sequence[str]) -> list[str]:
        """The object texts for ``keys``, in that order."""
        return cast(list[str], self._texts_at(self.positions_of(keys)).to_pylist())

    def body_for(self, positions: range | npt.NDArray[np.int64]) -> bytes:
        """A JSON array of the distinct records at ``positions``, UTF-8: ``[{…},{…}]``.

        Built by Arrow's join kernel from the stored texts: no Python string per record.
        """
        texts = self._texts_at(positions)
        if len(texts) == 0:
            return b"[]"
        values = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
        one_list = pa.LargeListArray.from_arrays(pa.array([0, len(values)], pa.int64()), values)
        joined = pc.binary_join(one_list, _COMMA)[0]
        return b"".join((b"[", joined.as_buffer(), b"]"))

    def body_bytes(self, keys: Sequence[str]) -> bytes:
        """A JSON array of the records for ``keys``, UTF-8: ``[{…},{…}]``."""
        return self.body_for(self.positions_of(keys))

    def records(self, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The records parsed back (for previews); all distinct records when ``keys`` is None."""
        texts = self.unique_json if keys is None else self.json_for(keys)
        return [json.loads(text) for text in texts]

    def without_texts(self) -> Payload:
        """The same payload without its texts: once every chunk is sent, only the keys are
        needed (to join the results back), and the texts are most of the payload's memory."""
        return self._keeping_sizes(replace(self, texts=None, texts_from=self.n_unique))

    def release_texts_below(self, position: int) -> Payload:
        """The same payload without the texts of the distinct records before ``position``
        (they were sent): a long call does not hold every record's text until its last chunk.
        Storage chunks are freed whole; bodies of those records can no longer be built."""
        if position <= self.texts_from:
            return self
        kept, start = [], 0
        for chunk in self._texts.chunks:
            start += len(chunk)
            kept.append(_blank(len(chunk)) if start <= position else chunk)
        texts = pa.chunked_array(kept, pa.large_string())
        return self._keeping_sizes(replace(self, texts=texts, texts_from=position))

    def _keeping_sizes(self, released: Payload) -> Payload:
        # The sizes are still needed to split a chunk the API refuses as too large (413).
        released.__dict__["record_sizes"] = self.record_sizes
        return released

    @property
    def _texts(self) -> pa.ChunkedArray:
        if self.texts is None:
            raise RuntimeError("this payload's texts were released (without_texts)")
        return self.texts

    def _texts_at(self, positions: range | npt.NDArray[np.int64]) -> Any:
        texts = self._texts
        if len(positions) and int(np.min(positions)) < self.texts_from:
            raise RuntimeError(
                f"the texts of the records before position {self.texts_from} were released "
                "(they were sent)"
            )
        return self._select(texts, positions)

    @staticmethod
    def _select(values: Any, positions: range | npt.NDArray[np.int64]) -> Any:
        if isinstance(positions, range) and positions.step == 1:
            return values.slice(positions.start, len(positions))
        return values.take(pa.array(np.asarray(positions, dtype=np.int64)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Payload):
            return NotImplemented
        return (
            self.columns == other.columns
            and self.row_key_array.equals(other.row_key_array)
            and self.unique_key_array.equals(other.unique_key_array)
            and self.texts_from == other.texts_from
            and (self.texts is None) == (other.texts is None)
            and (self.texts is None or self.texts.equals(other.texts))
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Payload(n_rows={self.n_rows}, n_unique={self.n_unique}, columns={self.columns!r})"


def _blank(count: int) -> pa.Array:
    """``count`` empty texts: offsets only, no text bytes."""
    offsets = pa.py_buffer(np.zeros(count + 1, dtype=np.int64))
    return pa.Array.from_buffers(pa.large_string(), count, [None, offsets, pa.py_buffer(b"")])


def build_payload(
    frame: object,
    *,
    columns: Sequence[str] | None = None,
    rename: Mapping[str, str] | None = None,
    naive_datetimes: NaiveDatetimePolicy = "raise",
) -> Payload:
    """Validate ``frame`` and turn it into the records that would be sent (see module docs).

    ``columns`` selects and orders the payload columns (default: all); ``rename`` maps a frame
    column to its name on the wire. Raises :class:`SerializationError` for anything that cannot
    be sent exactly.
    """
    if naive_datetimes not in _POLICIES:
        raise SerializationError(
            f"naive_datetimes must be one of {', '.join(map(repr, _POLICIES))}, "
            f"not {naive_datetimes!r}"
        )
    table = read_frame(frame, columns, rename)
    records = encode_records(table, naive_datetimes)
    return Payload(
        columns=tuple(column.wire for column in table.columns),
        row_key_array=records.row_keys,
        unique_key_array=records.unique_keys,
        texts=records.texts,
    )
