"""A pandas or Polars DataFrame → the exact JSON records sent as ``webhook_payload``.

Every value goes through an explicit converter for its type, and the whole frame is checked
before any request: a value that JSON cannot carry exactly raises
:class:`~sixtyfour_frames.SerializationError` naming the column and the row (the pandas index
label, or the Polars row number) of the first bad value, and nothing is sent. Nothing is
rounded, truncated, re-zoned or dropped silently.

Each distinct record gets a content-addressed row key, sent as the last field
``"__sixtyfour_row"``; identical records are sent once, and the results fan back out to every
row that had them. The pandas index is never sent (the row keys replace it), so a duplicate
index or a MultiIndex is fine.

========================================  ===================================================
Value (pandas / Polars / Python)          Sent as
========================================  ===================================================
NaN, None, ``pd.NA``, ``NaT``, null       ``null``
±inf (any float column or value)          **rejected** (replace it first)
float64                                   shortest text that round-trips, as Python's
                                          ``repr``: ``0.30000000000000004``, ``1e-12``,
                                          ``-0.0``, ``1e+16``
float32 (and float16, widened exactly)    shortest text that round-trips *as float32*:
                                          ``0.1``, not ``0.10000000149011612``; parse it as
                                          float32 to get the value back bit for bit
int (any width, also > 2**53, Int128)     exact digits; JavaScript readers lose precision
                                          above 2**53, so send ids as strings if they matter
bool                                      ``true`` / ``false``
str, Categorical, Enum, pandas ``str``    JSON string, UTF-8 (no ``\\uXXXX`` for non-ASCII);
                                          ``"``, ``\\`` and control characters escaped
                                          (``\\x00`` → ``\\u0000``)
str with a lone surrogate (``"\\ud800"``)   **rejected** (not valid UTF-8)
bytes, Binary                             **rejected** (decode or base64 first)
tz-aware datetime                         ``"2024-01-01T12:00:00.000000-05:00"``: the value's
                                          own offset, always 6 fraction digits, 9 when the
                                          value has nanoseconds; a historical offset with
                                          seconds keeps them (``-04:56:02``)
naive datetime                            **rejected**, or with ``naive_datetimes="utc"``
                                          read as UTC: ``"…T12:00:00.000000+00:00"``
datetime outside the years 1-9999         **rejected**
date                                      ``"2024-01-01"``
time of day                               ``"12:30:00.000000"`` (a time with a tz: rejected)
timedelta, Duration                       ISO-8601 duration in seconds: ``"PT93600.5S"``,
                                          ``"-PT1S"``, ``"PT0S"``
Decimal (object values, Polars Decimal,   JSON string with the exact digits: ``"1.10"``
pyarrow decimal)                          (``Decimal('NaN')`` / ``Infinity``: **rejected**)
categorical (pandas)                      its values in their own type: int categories stay
                                          ints (``1``, never ``1.0``)
list, tuple, numpy array, Polars          JSON array / object, converted recursively by the
List/Array/Struct, dict with str keys     same rules; deeper than 32 levels (or a cycle):
                                          **rejected**; a non-string dict key: **rejected**
object column                             each value by its own type
Period, Interval, complex, set,           **rejected**, naming the type
any other object
========================================  ===================================================

Columns: non-string names are stringified (``0`` → ``"0"``), and two payload columns with the
same name after that (``0`` and ``"0"``, or a duplicate) are rejected, as are a column named
``__sixtyfour_row``, MultiIndex columns, a frame with no selected column and a frame with no
rows (no run is started for nothing).

The row key is ``"k"`` + 20 hex digits: an 80-bit hash of the record's JSON text without the
key (see ``_payload_keys`` for the definition). It is the same in every process and for
pandas and Polars input, and it starts with a letter so that CSV readers keep it a string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final, get_args

from sixtyfour_frames._errors import SerializationError
from sixtyfour_frames._payload_frames import ROW_KEY, read_frame
from sixtyfour_frames._payload_records import encode_records
from sixtyfour_frames._payload_values import NaiveDatetimePolicy

__all__ = ["ROW_KEY", "NaiveDatetimePolicy", "Payload", "build_payload"]

_POLICIES: Final = get_args(NaiveDatetimePolicy)


@dataclass(frozen=True)
class Payload:
    """The validated records of one frame, deduplicated, ready to be sent in chunks."""

    columns: tuple[str, ...]
    """Wire column names in order (after ``rename``), the row key excluded."""
    row_keys: list[str]
    """One per input row: the key of that row's record."""
    unique_keys: list[str]
    """The distinct keys, in first-seen order."""
    unique_json: list[str]
    """Per distinct key (same order): the JSON object text that is sent."""

    @property
    def n_rows(self) -> int:
        return len(self.row_keys)

    @property
    def n_unique(self) -> int:
        return len(self.unique_keys)

    @cached_property
    def _position(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.unique_keys)}

    def json_for(self, keys: Sequence[str]) -> list[str]:
        """The object texts for ``keys``, in that order."""
        position = self._position
        try:
            return [self.unique_json[position[key]] for key in keys]
        except KeyError as exc:
            raise KeyError(f"row key {exc.args[0]!r} is not in this payload") from None

    def body_bytes(self, keys: Sequence[str]) -> bytes:
        """A JSON array of the records for ``keys``, UTF-8: ``[{…},{…}]``."""
        return ("[" + ",".join(self.json_for(keys)) + "]").encode("utf-8")

    def records(self, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The records parsed back (for previews); all distinct records when ``keys`` is None."""
        texts = self.unique_json if keys is None else self.json_for(keys)
        return [json.loads(text) for text in texts]

    def __repr__(self) -> str:
        return f"Payload(n_rows={self.n_rows}, n_unique={self.n_unique}, columns={self.columns!r})"


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
        row_keys=records.row_keys,
        unique_keys=records.unique_keys,
        unique_json=records.unique_json,
    )
