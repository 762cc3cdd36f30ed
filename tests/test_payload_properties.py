"""Property tests: for generated frames, the payload says exactly what the frame holds.

Each example either fails at the first cell that JSON cannot carry exactly (the oracle below
finds it independently: infinities, bytes, lone surrogates, instants outside the years 1-9999)
or re-parses to the frame's values with nothing changed: floats bit for bit from their raw text
(float32 at float32 precision), temporals to the nanosecond, decimals digit for digit.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.extra.pandas import column, data_frames, indexes
from polars.testing.parametric import dataframes

from sixtyfour_frames._errors import SerializationError
from sixtyfour_frames._payload import ROW_KEY, build_payload
from tests.test_payload_support import check_payload, no_duplicate_keys, same_float

PROPERTY = settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_UNIT_NANOS = {"ms": 10**6, "us": 10**3, "ns": 1}
_FIRST = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
_LAST = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class Raw(str):
    """A JSON number kept as its text, so that floats can be checked at their own precision."""


def parse(text: str) -> Any:
    return json.loads(text, object_pairs_hook=no_duplicate_keys, parse_float=Raw, parse_int=Raw)


_ISO = re.compile(
    r"(?P<date>\d{4}-\d\d-\d\d)T(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)\.(?P<frac>\d{6}|\d{9})"
    r"(?P<sign>[+-])(?P<oh>\d\d):(?P<om>\d\d)(?::(?P<os>\d\d))?"
)


def iso_nanos(text: str) -> tuple[int, int]:
    """An ISO-8601 datetime as (nanoseconds since the epoch, UTC offset in seconds)."""
    match = _ISO.fullmatch(text)
    assert match, text
    day = dt.date.fromisoformat(match["date"])
    wall = (day - _EPOCH.date()).days * 86400 + int(match["h"]) * 3600 + int(match["m"]) * 60
    offset = int(match["oh"]) * 3600 + int(match["om"]) * 60 + int(match["os"] or 0)
    offset = -offset if match["sign"] == "-" else offset
    seconds = wall + int(match["s"]) - offset
    return seconds * 10**9 + int(match["frac"].ljust(9, "0")), offset


def duration_nanos(text: str) -> int:
    match = re.fullmatch(r"(-?)PT(\d+)(?:\.(\d{1,9}))?S", text)
    assert match, text
    nanos = int(match[2]) * 10**9 + int((match[3] or "").ljust(9, "0"))
    return -nanos if match[1] else nanos


# ---------------------------------------------------------------------------------------------
# Polars
# ---------------------------------------------------------------------------------------------


def polars_bad_cell(source: pl.DataFrame) -> tuple[str, int] | None:
    """The first cell (in column order, then row order) that cannot be sent exactly."""
    for name in source.columns:
        series = source.get_column(name)
        for row, value in enumerate(series.to_list()):
            if _unsendable(series.dtype, value):
                return name, row
    return None


def _unsendable(dtype: Any, value: Any) -> bool:
    if value is None:
        return False
    if dtype.is_float():
        return math.isinf(value)
    if dtype == pl.Binary:
        return True
    if isinstance(dtype, pl.Datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return not _FIRST <= moment <= _LAST
    if isinstance(dtype, (pl.List, pl.Array)):
        return any(_unsendable(dtype.inner, item) for item in value)
    if isinstance(dtype, pl.Struct):
        return any(_unsendable(field.dtype, value[field.name]) for field in dtype.fields)
    return False


def polars_matches(dtype: Any, value: Any, physical: Any, sent: Any) -> bool:
    """``sent`` (parsed JSON, numbers raw) is exactly ``value`` of ``dtype``."""
    if value is None:
        return sent is None
    if dtype.is_float():
        if math.isnan(value):
            return sent is None
        if dtype == pl.Float64:
            return isinstance(sent, Raw) and same_float(float(sent), value)
        return isinstance(sent, Raw) and np.float32(sent).tobytes() == np.float32(value).tobytes()
    if dtype.is_integer():
        return isinstance(sent, Raw) and int(sent) == value and str(int(sent)) == sent
    if dtype == pl.Boolean:
        return sent is value
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return bool(sent == value)
    if dtype == pl.Date:
        return bool(sent == value.isoformat())
    if isinstance(dtype, pl.Datetime):
        nanos, offset = iso_nanos(sent)
        expected = value.utcoffset() or dt.timedelta(0)
        return (
            nanos == physical * _UNIT_NANOS[dtype.time_unit] and offset == expected.total_seconds()
        )
    if isinstance(dtype, pl.Duration):
        return bool(duration_nanos(sent) == physical * _UNIT_NANOS[dtype.time_unit])
    if dtype == pl.Time:
        hours, minutes, rest = sent.split(":")
        seconds, fraction = rest.split(".")
        clock = (int(hours) * 3600 + int(minutes) * 60 + int(seconds)) * 10**9
        return bool(clock + int(fraction.ljust(9, "0")) == physical)
    if isinstance(dtype, pl.Decimal):
        return bool(sent == format(value, "f")) and decimal.Decimal(sent) == value
    if isinstance(dtype, (pl.List, pl.Array)):
        return len(sent) == len(value) and all(
            polars_matches(dtype.inner, v, p, s)
            for v, p, s in zip(value, physical, sent, strict=True)
        )
    if isinstance(dtype, pl.Struct):
        return list(sent) == [f.name for f in dtype.fields] and all(
            polars_matches(f.dtype, value[f.name], physical[f.name], sent[f.name])
            for f in dtype.fields
        )
    return bool(dtype == pl.Null and sent is None)


POLARS_DTYPES = [
    pl.Int8,
    pl.Int16,
    pl.Int64,
    pl.UInt8,
    pl.UInt64,
    pl.Float32,
    pl.Float64,
    pl.Boolean,
    pl.String,
    pl.Categorical,
    pl.Enum,
    pl.Date,
    pl.Datetime,
    pl.Duration,
    pl.Time,
    pl.Decimal,
    pl.Binary,
    pl.Null,
    pl.List,
    pl.Array,
    pl.Struct,
]


@PROPERTY
@given(
    source=dataframes(
        min_cols=1,
        max_cols=4,
        min_size=1,
        max_size=6,
        allowed_dtypes=POLARS_DTYPES,
        allow_infinity=True,
    )
)
def test_polars_frames_are_sent_exactly(source: pl.DataFrame) -> None:
    _check_polars(source)


def _check_polars(source: pl.DataFrame) -> None:
    bad = polars_bad_cell(source)
    if bad is not None:
        with pytest.raises(SerializationError) as info:
            build_payload(source, naive_datetimes="utc")
        assert (info.value.column, info.value.row) == bad
        return
    payload = build_payload(source, naive_datetimes="utc")
    check_payload(payload)
    physical = source.select(pl.all().to_physical()).rows()
    _keys_follow_texts(payload.row_keys, payload.json_for(payload.row_keys))
    for row, (key, values) in enumerate(zip(payload.row_keys, source.rows(), strict=True)):
        (sent,) = [parse(text) for text in payload.json_for([key])]
        assert sent.pop(ROW_KEY) == key
        for name, value, phys in zip(source.columns, values, physical[row], strict=True):
            dtype = source.schema[name]
            assert polars_matches(dtype, value, phys, sent[name]), (name, dtype, value, sent[name])


# ---------------------------------------------------------------------------------------------
# pandas
# ---------------------------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.dates(),
)
# Top-level dicts are left out: assigning one to a cell makes pandas store a Series instead.
_OBJECTS = _SCALARS | st.recursive(
    st.lists(_SCALARS, max_size=3),
    lambda inner: st.lists(
        inner | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_size=3
    ),
    max_leaves=6,
)

_PANDAS_COLUMNS = {
    "i": (np.int64, st.integers(-(2**63), 2**63 - 1)),
    "u": (np.uint64, st.integers(0, 2**64 - 1)),
    "f": (float, st.floats()),
    "f32": (np.float32, st.floats(width=32)),
    "b": (bool, st.booleans()),
    "s": (object, st.text(max_size=8) | st.none()),
    "when": (
        "datetime64[ns]",
        st.datetimes(dt.datetime(1678, 1, 1), dt.datetime(2261, 12, 31)) | st.none(),
    ),
    "o": (object, _OBJECTS),
}
# Whole rows at a time: filling a frame cell by cell is what makes data_frames slow.
PANDAS_FRAMES = data_frames(
    columns=[column(name, dtype=dtype) for name, (dtype, _) in _PANDAS_COLUMNS.items()],
    rows=st.tuples(*(elements for _, elements in _PANDAS_COLUMNS.values())),
    index=indexes(elements=st.integers(-5, 5) | st.text(max_size=2), min_size=1, max_size=6),
)


def pandas_bad_cell(source: pd.DataFrame) -> tuple[str, object] | None:
    for name in source.columns:
        for label, value in zip(source.index, source[name].tolist(), strict=True):
            if _unsendable_python(value):
                return name, label
    return None


def _unsendable_python(value: Any) -> bool:
    if isinstance(value, float):
        return math.isinf(value)
    if isinstance(value, str):
        return any(0xD800 <= ord(char) <= 0xDFFF for char in value)
    if isinstance(value, list):
        return any(_unsendable_python(item) for item in value)
    if isinstance(value, dict):
        return any(_unsendable_python(k) or _unsendable_python(v) for k, v in value.items())
    return False


def pandas_matches(value: Any, sent: Any, *, float32: bool = False) -> bool:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return sent is None
    if isinstance(value, bool):
        return sent is value
    if isinstance(value, int):
        return isinstance(sent, Raw) and int(sent) == value and "." not in sent
    if isinstance(value, float):
        if float32:
            return isinstance(sent, Raw) and np.float32(sent) == np.float32(value)
        return isinstance(sent, Raw) and same_float(float(sent), value)
    if isinstance(value, pd.Timestamp):
        nanos, offset = iso_nanos(sent)
        return nanos == value.value and offset == 0
    if isinstance(value, dt.date):
        return bool(sent == value.isoformat())
    if isinstance(value, str):
        return bool(sent == value)
    if isinstance(value, list):
        return len(sent) == len(value) and all(
            pandas_matches(v, s) for v, s in zip(value, sent, strict=True)
        )
    if isinstance(value, dict):
        return list(sent) == list(value) and all(pandas_matches(value[k], sent[k]) for k in value)
    raise AssertionError(f"unexpected value {value!r}")


@PROPERTY
@given(source=PANDAS_FRAMES)
def test_pandas_frames_are_sent_exactly(source: pd.DataFrame) -> None:
    bad = pandas_bad_cell(source)
    if bad is not None:
        with pytest.raises(SerializationError) as info:
            build_payload(source, naive_datetimes="utc")
        assert (info.value.column, info.value.row) == bad
        return
    payload = build_payload(source, naive_datetimes="utc")
    check_payload(payload)
    texts = payload.json_for(payload.row_keys)
    _keys_follow_texts(payload.row_keys, texts)
    for position, text in enumerate(texts):
        sent = parse(text)
        assert sent.pop(ROW_KEY) == payload.row_keys[position]
        assert list(sent) == list(source.columns)
        for name in source.columns:
            value = source[name].iloc[position]
            value = value.item() if isinstance(value, np.generic) and name != "f32" else value
            if name == "f32":
                value = None if np.isnan(value) else float(value)
            assert pandas_matches(value, sent[name], float32=name == "f32"), (name, value, sent)


def _keys_follow_texts(keys: list[str], texts: list[str]) -> None:
    """Two rows share a key exactly when they send the same record."""
    by_text = {text: key for key, text in zip(keys, texts, strict=True)}
    assert len(set(by_text.values())) == len(by_text)
    assert [by_text[text] for text in texts] == keys
