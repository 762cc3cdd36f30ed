"""Differential tests: the vectorised Polars path against the per-value reference encoder.

The reference (``_payload_values``) defines every wire text; the fast path must match it byte
for byte on many values, including the awkward ones (subnormals, exponent boundaries, historical
time-zone offsets, nanoseconds). The row-key hash is checked the same way against its plain
Python definition, and the fallbacks (no Polars, no numpy, an unexpected memory layout) must give
the very same payload.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import json
import math
import random
import struct
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl
import pytest

import sixtyfour_frames._payload_frames as frames_module
import sixtyfour_frames._payload_keys as keys_module
import sixtyfour_frames._payload_records as records_module
from sixtyfour_frames import SerializationError
from sixtyfour_frames._payload import build_payload
from sixtyfour_frames._payload_keys import key_hex, keys_of_texts, record_key
from sixtyfour_frames._payload_values import (
    ValueEncoder,
    format_float32_text,
    render_repr_style,
)
from tests.test_payload_support import check_payload, same_float, same_float32, value_text

ZONES = ["UTC", "America/New_York", "Europe/Paris", "Asia/Kolkata", "Africa/Monrovia"]


def _random_doubles(count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    values: list[float] = []
    while len(values) < count:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            values.append(value)
    decimals = [round(rng.uniform(-1, 1) * 10 ** rng.randint(-12, 24), rng.randint(0, 9))]
    powers = [sign * 10.0**exp for exp in range(-30, 30) for sign in (1, -1)]
    return (
        values + decimals * 1 + powers + [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]
    )


def test_the_repr_renderer_is_repr() -> None:
    for value in _random_doubles(20_000, seed=1):
        text = repr(value)
        assert format_float32_text(text) == text  # re-rendering repr's digits changes nothing
    assert render_repr_style(False, "1", 16) == "1e+16"
    assert render_repr_style(True, "15", -5) == "-1.5e-05"
    assert render_repr_style(False, "123", 1) == "12.3"
    assert render_repr_style(False, "5", 3) == "5000.0"


def test_polars_float64_text_is_repr_for_many_values() -> None:
    values = _random_doubles(50_000, seed=2)
    texts = value_text(pl.DataFrame({"x": values}))
    assert texts == [repr(value) for value in values]
    assert all(same_float(float(text), value) for text, value in zip(texts, values, strict=True))


def test_polars_float32_text_is_the_shortest_float32_text() -> None:
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, 20_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    texts = value_text(pl.DataFrame({"x": pl.Series(values)}))
    # the reference takes numpy's shortest float32 digits: the same text means the same digits
    assert texts == [ValueEncoder("raise").encode(value) for value in values]
    assert all(same_float32(text, value) for text, value in zip(texts, values, strict=True))


def _random_instants(count: int, seed: int) -> list[dt.datetime]:
    rng = random.Random(seed)
    first = dt.datetime(1, 1, 2, tzinfo=dt.UTC).timestamp()
    last = dt.datetime(9999, 12, 30, tzinfo=dt.UTC).timestamp()
    picks = [rng.uniform(first, last) for _ in range(count // 2)]
    picks += [rng.uniform(-3e9, 3e9) for _ in range(count // 2)]  # 1875-2065: DST and LMT
    return [
        dt.datetime.fromtimestamp(int(pick), dt.UTC).replace(microsecond=rng.randrange(10**6))
        for pick in picks
    ]


@pytest.mark.parametrize("zone", ZONES)
def test_polars_datetime_text_matches_the_reference(zone: str) -> None:
    instants = _random_instants(2000, seed=len(zone))
    series = pl.Series("x", instants, dtype=pl.Datetime("us", "UTC")).dt.convert_time_zone(zone)
    texts = value_text(pl.DataFrame({"x": series}))
    encode = ValueEncoder("raise").encode
    assert texts == [encode(instant.astimezone(ZoneInfo(zone))) for instant in instants]
    for text, instant in zip(texts, instants, strict=True):
        assert dt.datetime.fromisoformat(json.loads(text)) == instant


def test_polars_naive_datetime_as_utc_matches_the_reference() -> None:
    instants = [instant.replace(tzinfo=None) for instant in _random_instants(1000, seed=9)]
    texts = value_text(pl.DataFrame({"x": instants}), naive_datetimes="utc")
    assert texts == [ValueEncoder("utc").encode(instant) for instant in instants]


def test_polars_durations_dates_and_times_match_the_reference() -> None:
    rng = random.Random(4)
    spans = [dt.timedelta(microseconds=rng.randint(-(10**15), 10**15)) for _ in range(2000)]
    days = [dt.date.fromordinal(rng.randint(1, dt.date.max.toordinal())) for _ in range(2000)]
    times = [
        dt.time(rng.randrange(24), rng.randrange(60), rng.randrange(60), rng.randrange(10**6))
        for _ in range(2000)
    ]
    encode = ValueEncoder("raise").encode
    for values in (spans, days, times):
        assert value_text(pl.DataFrame({"x": values})) == [encode(value) for value in values]


def test_nanosecond_durations_and_datetimes_match_pandas_objects() -> None:
    stamps = pd.Series(
        pd.to_datetime(["2024-01-01 00:00:00.000000001", "1999-12-31 23:59:59.999999999"])
    )
    stamps = stamps.dt.tz_localize("Europe/Paris")
    spans = pd.Series(pd.to_timedelta(["1ns", "-3ns", "1 day 1us"]))
    for series in (stamps, spans):
        typed = value_text(pl.DataFrame({"x": pl.from_pandas(series)}))
        objects = value_text(pd.DataFrame({"x": series.astype(object)}))
        assert typed == objects


# ---------------------------------------------------------------------------------------------
# The row-key hash
# ---------------------------------------------------------------------------------------------


def _random_records(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = 'ab"{}é😀\x00 ,:'
    records = ["{}", '{"a":1}', '{"' + "x" * 3000 + '":1}']
    records += [
        "{" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90))) + "}"
        for _ in range(count)
    ]
    return records


@pytest.mark.parametrize("block", [1, 3, 1 << 15])
def test_the_vectorised_hash_is_the_definition(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    monkeypatch.setattr(keys_module, "_BLOCK_WORDS", block)
    records = _random_records(600, seed=block)
    assert keys_of_texts([record.encode() for record in records]) == [
        record_key(record) for record in records
    ]


def test_known_keys() -> None:
    assert record_key("{}") == "k72fe4701c6f664b927b9"
    assert record_key('{"a":1}') == "k217c9b30bad572d54f8c"


def test_every_word_and_the_length_change_the_key() -> None:
    base = '{"name":"Acme Corporation","n":1}'
    keys = {record_key(base)}
    for position in range(1, len(base) - 1):
        keys.add(record_key(base[:position] + "~" + base[position + 1 :]))
    keys.add(record_key(base[:-1] + " }"))
    assert len(keys) == len(base) - 2 + 1 + 1


def test_hex_digits_are_big_endian() -> None:
    digits = key_hex(np.array([0x0123456789ABCDEF], np.uint64), np.array([0xFEDC << 48], np.uint64))
    assert bytes(digits[0, :20]) == b"0123456789abcdeffedc"


# ---------------------------------------------------------------------------------------------
# Fallbacks give the same payload
# ---------------------------------------------------------------------------------------------


def _rich_pandas_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i %s %d": [1, 2, 1, 3],
            "I": pd.array([1, None, 1, 2**62], dtype="Int64"),
            "f": [0.1 + 0.2, np.nan, 0.1 + 0.2, 1e-7],
            "f32": np.array([0.1, 1e-6, 0.1, 1e20], dtype=np.float32),
            "s": ["Acme", None, "Acme", 'q"\x00é😀'],
            "cat": pd.Categorical([1, None, 1, 2]),
            "b": [True, False, True, False],
            "t": pd.DatetimeIndex(
                [dt.datetime(2024, 1, 1), dt.datetime(1850, 6, 1), dt.datetime(2024, 1, 1), None]
            ).tz_localize("America/New_York"),
            "naive": pd.Series(
                ["2024-01-01 00:00:00.000000001", None, "2024-01-01 00:00:00.000000001", "2000"],
                dtype="datetime64[ns]",
                index=["w", "x", "y", "z"],
            ),
            "td": pd.to_timedelta(["1s", None, "1s", "-2ns"]),
            "d": [dt.date(2024, 1, 1), None, dt.date(2024, 1, 1), dt.date(1, 1, 1)],
            "obj": pd.Series([[1, {"a": 0.5}], None, [1, {"a": 0.5}], "x"], dtype=object),
        },
        index=["w", "x", "y", "z"],
    )


def test_without_polars_the_payload_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    source = _rich_pandas_frame()
    fast = build_payload(source, naive_datetimes="utc")
    monkeypatch.setattr(frames_module, "polars_available", lambda: False)
    monkeypatch.setattr(records_module, "polars_available", lambda: False)
    slow = build_payload(source, naive_datetimes="utc")
    assert slow == fast
    assert check_payload(slow)[0] == check_payload(slow)[2]
    with pytest.raises(Exception, match="naive datetime") as info:
        build_payload(source)
    assert getattr(info.value, "row", None) == "w"


def test_an_unexpected_memory_layout_gives_the_same_payload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = _rich_pandas_frame()
    fast = build_payload(source, naive_datetimes="utc")
    monkeypatch.setattr(records_module, "hash_and_stamp", lambda array, tail: None)
    assert build_payload(source, naive_datetimes="utc") == fast


def _flat_polars_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "s": ["Acme", None, 'q"\x00é😀'],
            "c": pl.Series(["x", None, "y"], dtype=pl.Categorical),
            "e": pl.Series(["lo", "hi", None], dtype=pl.Enum(["lo", "hi"])),
            "i": pl.Series([2**100, None, -1], dtype=pl.Int128),
            "f": [0.1 + 0.2, float("nan"), None],
            "f32": pl.Series([0.1, None, 3.5], dtype=pl.Float32),
            "b": [True, None, False],
            "d": [dt.date(5, 1, 1), None, dt.date(2024, 2, 29)],
            "t": pl.Series(
                [dt.datetime(2024, 1, 1, 12), None, dt.datetime(2000, 6, 1)]
            ).dt.replace_time_zone("Europe/Paris"),
            "span": [dt.timedelta(seconds=-1.5), None, dt.timedelta(0)],
            "clock": [dt.time(1, 2, 3, 4), None, dt.time(0)],
            "dec": pl.Series(
                [decimal.Decimal("1.10"), None, decimal.Decimal("-3.00")], dtype=pl.Decimal(5, 2)
            ),
            "n": pl.Series([None, None, None], dtype=pl.Null),
            "": [1, 2, 3],
        }
    )


def _as_arrow_backed_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    # Arrow-backed dtypes keep dates as dates (numpy-backed pandas would make them datetimes)
    return frame.drop("i").to_pandas(use_pyarrow_extension_array=True)


@pytest.mark.parametrize("convert", [lambda frame: frame, _as_arrow_backed_pandas])
def test_both_ways_of_building_records_give_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch, convert: Any
) -> None:
    source = convert(_flat_polars_frame())
    native = build_payload(source)
    monkeypatch.setattr(records_module, "NATIVE_RECORDS", False)
    assert build_payload(source) == native


def test_chunking_and_threads_do_not_change_the_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    source = pl.DataFrame(
        {
            "a": rng.integers(0, 50, 5000),
            "s": rng.choice(["x", "y", "é"], 5000),
            "f": rng.normal(size=5000).round(1),
        }
    )
    whole = build_payload(source)
    monkeypatch.setattr(records_module, "CHUNK_ROWS", 97)
    chunked = build_payload(source)
    assert chunked == whole
    as_text = source.with_columns(pl.col("f").cast(pl.String))  # -0.0 is not 0.0 on the wire
    assert whole.n_unique == as_text.unique().height


def test_bodies_are_cut_from_the_stored_texts_across_encoding_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(records_module, "CHUNK_ROWS", 7)  # many encoding chunks
    frame = pl.DataFrame({"i": range(50), "s": [f"é{i % 9}" for i in range(50)]})
    payload = build_payload(pl.concat([frame, frame.head(10), frame.slice(30, 5)]))
    assert payload.texts is not None and payload.texts.num_chunks > 1
    assert (payload.n_rows, payload.n_unique) == (65, 50)
    texts = payload.unique_json

    def expected(positions: Any) -> bytes:
        return ("[" + ",".join(texts[int(i)] for i in positions) + "]").encode()

    cases: list[Any] = [range(50), range(5, 23), range(49, 50), range(3, 3)]
    cases.append(np.array([40, 2, 17, 2], dtype=np.int64))
    for positions in cases:
        assert payload.body_for(positions) == expected(positions)
    assert payload.body_bytes(payload.unique_keys[::-1]) == expected(range(49, -1, -1))
    assert payload.record_sizes.tolist() == [len(text.encode()) for text in texts]
    with pytest.raises(KeyError, match="k0000"):
        payload.positions_of([payload.unique_keys[0], "k" + "0" * 20])


def test_an_object_column_of_dates_is_read_whole_and_a_datetime_among_them_keeps_its_time() -> None:
    dates = [dt.date(2024, 2, 29), None, dt.date(1, 1, 1), pd.NaT]
    as_objects = build_payload(pd.DataFrame({"d": pd.Series(dates, dtype=object)}))
    as_polars = build_payload(
        pl.DataFrame({"d": [dt.date(2024, 2, 29), None, dt.date(1, 1, 1), None]})
    )
    assert as_objects.unique_json == as_polars.unique_json

    mixed = pd.Series([dt.date(2024, 1, 1), dt.datetime(2024, 1, 1, 5, 30)], dtype=object)
    sent = build_payload(pd.DataFrame({"d": mixed}), naive_datetimes="utc").records()
    assert [record["d"] for record in sent] == ["2024-01-01", "2024-01-01T05:30:00.000000+00:00"]
    with pytest.raises(SerializationError, match="naive"):
        build_payload(pd.DataFrame({"d": mixed}))


def test_texts_are_copied_from_polars_buffers_or_else_converted_by_arrow() -> None:
    import pyarrow as pa

    from sixtyfour_frames._payload_keys import texts_of_large_strings, texts_of_views

    long = [f'{{"name":"company {i}","note":"{"é" * (i % 40)}"}}' for i in range(5000)]
    series = pl.Series("t", long)
    from_views = texts_of_views(series.to_arrow(compat_level=pl.CompatLevel.newest()))
    converted = texts_of_large_strings(series.to_arrow(compat_level=pl.CompatLevel.oldest()))
    assert from_views is not None and converted is not None
    for (data, offsets), expected in ((from_views, long), (converted, long)):
        bounds = offsets.tolist()
        assert [data[a:b].tobytes().decode() for a, b in itertools.pairwise(bounds)] == expected
        assert bounds[-1] == data.size - 8 and data[-8:].sum() == 0
    views = pa.array(long, pa.string_view())
    assert texts_of_views(pa.array(["short", *long], pa.string_view())) is None  # inline text
    assert texts_of_views(views.slice(3)) is None and texts_of_views(pa.array(long)) is None
    assert texts_of_large_strings(pa.array([*long, None], pa.large_string())) is None


def test_a_payload_without_its_texts_keeps_its_keys_and_refuses_to_build_bodies() -> None:
    payload = build_payload(pl.DataFrame({"a": [1, 2, 1]}))
    keys_only = payload.without_texts()
    assert keys_only.row_keys == payload.row_keys and keys_only.n_unique == 2
    assert keys_only != payload and keys_only == payload.without_texts()
    with pytest.raises(RuntimeError, match="released"):
        keys_only.body_for(range(2))


def test_texts_of_sent_records_are_released_and_the_rest_still_build_the_same_bodies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(records_module, "CHUNK_ROWS", 7)  # storage chunks of 7 records
    payload = build_payload(pl.DataFrame({"i": range(40), "s": [f"ü{i}" for i in range(40)]}))
    released = payload.release_texts_below(15)  # chunks 0-6 and 7-13 go; 14-20 stays whole
    assert released.texts is not None and payload.texts is not None
    assert released.texts.nbytes < payload.texts.nbytes
    assert released.texts_from == 15 and released.release_texts_below(10) is released
    assert released.body_for(range(15, 40)) == payload.body_for(range(15, 40))
    assert released.body_for(np.array([39, 15], dtype=np.int64)) == payload.body_for(
        np.array([39, 15], dtype=np.int64)
    )
    assert released.record_sizes.tolist() == payload.record_sizes.tolist()
    assert released.row_keys == payload.row_keys
    for sent in (range(14, 16), np.array([3], dtype=np.int64)):
        with pytest.raises(RuntimeError, match="released"):
            released.body_for(sent)
    with pytest.raises(RuntimeError, match="released"):
        _ = released.unique_json
    done = released.without_texts()
    assert done.texts is None and done.record_sizes.tolist() == payload.record_sizes.tolist()
