"""Helpers shared by the payload tests (no tests here).

Every payload a test builds is checked the same way: the body re-parses as a JSON array with no
duplicate keys, each object ends with the row key, the key is the reference hash of the text
before it, and the rows fan out to the right distinct objects.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pandas as pd
import polars as pl
import pytest

from sixtyfour_frames._errors import SerializationError
from sixtyfour_frames._payload import ROW_KEY, Payload, build_payload
from sixtyfour_frames._payload_keys import record_key

LIBS = ["pandas", "polars"]
KEY_PATTERN = re.compile(r"k[0-9a-f]{20}")
_KEY_SUFFIX = re.compile(r',"__sixtyfour_row":"(k[0-9a-f]{20})"\}$')


def frame(lib: str, data: Mapping[str, Any], **pandas_options: Any) -> Any:
    """A pandas or Polars DataFrame from the same column data."""
    if lib == "pandas":
        return pd.DataFrame(dict(data), **pandas_options)
    return pl.DataFrame(dict(data))


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys in a JSON object: {keys}"
    return dict(pairs)


def strict_loads(text: str | bytes) -> Any:
    """``json.loads`` that rejects duplicate keys and the non-JSON constants NaN/Infinity."""

    def no_constants(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, object_pairs_hook=no_duplicate_keys, parse_constant=no_constants)


def check_payload(payload: Payload) -> list[dict[str, Any]]:
    """Validate the payload's invariants; return each row's record without the key."""
    assert payload.n_rows == len(payload.row_keys)
    assert payload.n_unique == len(payload.unique_keys) == len(payload.unique_json)
    assert len(set(payload.unique_keys)) == payload.n_unique
    assert set(payload.row_keys) == set(payload.unique_keys)
    assert list(dict.fromkeys(payload.row_keys)) == payload.unique_keys  # first-seen order
    body = payload.body_bytes(payload.unique_keys)
    parsed = strict_loads(body.decode("utf-8"))
    assert isinstance(parsed, list) and len(parsed) == payload.n_unique
    for key, text, record in zip(payload.unique_keys, payload.unique_json, parsed, strict=True):
        assert KEY_PATTERN.fullmatch(key)
        match = _KEY_SUFFIX.search(text)
        assert match and match.group(1) == key, text
        assert record_key(text[: match.start()] + "}") == key  # the reference definition
        assert list(record) == [*payload.columns, ROW_KEY]
        assert record[ROW_KEY] == key
    by_key = dict(zip(payload.unique_keys, parsed, strict=True))
    rows = []
    for key in payload.row_keys:
        record = dict(by_key[key])
        del record[ROW_KEY]
        rows.append(record)
    return rows


def wire(source: Any, **options: Any) -> list[dict[str, Any]]:
    """The records the API would receive for each row of ``source`` (key removed)."""
    return check_payload(build_payload(source, **options))


def wire_column(source: Any, column: str = "x", **options: Any) -> list[Any]:
    return [row[column] for row in wire(source, **options)]


def wire_texts(source: Any, **options: Any) -> list[str]:
    """Each row's object text exactly as sent, without the key field."""
    payload = build_payload(source, **options)
    check_payload(payload)
    return [_KEY_SUFFIX.sub("}", text) for text in payload.json_for(payload.row_keys)]


def value_text(source: Any, column: str = "x", **options: Any) -> list[str]:
    """The exact JSON text of each value of a one-column frame."""
    prefix = "{" + json.dumps(column) + ":"
    texts = wire_texts(source, **options)
    assert all(text.startswith(prefix) and text.endswith("}") for text in texts)
    return [text[len(prefix) : -1] for text in texts]


@contextmanager
def rejected(column: str | None, row: object, match: str) -> Iterator[None]:
    """Expect a SerializationError naming ``column`` and ``row``."""
    with pytest.raises(SerializationError, match=match) as info:
        yield
    assert info.value.column == column
    assert info.value.row == row
    assert info.value.row is None or type(info.value.row) is type(row)


def same_float(a: float, b: float) -> bool:
    """Bit-for-bit equality (so -0.0 differs from 0.0)."""
    return struct.pack("<d", a) == struct.pack("<d", b)


def same_float32(text: str, value: float) -> bool:
    import numpy as np

    return bool(np.float32(text).tobytes() == np.float32(value).tobytes())


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)
