"""The payload: one test per row of the serializer table (notes/reliability.md §6), then names,
deduplication, row keys and the Payload API.

Every payload is re-parsed with duplicate-key detection and its keys recomputed with the
reference hash (``check_payload``); floats are compared bit for bit.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import sixtyfour_frames._payload_records as records_module
from sixtyfour_frames._errors import SerializationError
from sixtyfour_frames._payload import ROW_KEY, build_payload
from tests.test_payload_support import (
    LIBS,
    check_payload,
    frame,
    rejected,
    same_float,
    same_float32,
    strict_loads,
    value_text,
    wire,
    wire_column,
)

Unit = Literal["ms", "us", "ns"]


# ---------------------------------------------------------------------------------------------
# §6: NaN / None / pd.NA / NaT → null
# ---------------------------------------------------------------------------------------------


def test_pandas_missing_values_of_every_kind_are_null() -> None:
    source = pd.DataFrame(
        {
            "float": [1.5, np.nan],
            "object": ["a", None],
            "int": pd.array([1, pd.NA], dtype="Int64"),
            "float_na": pd.array([0.5, pd.NA], dtype="Float64"),
            "bool": pd.array([True, pd.NA], dtype="boolean"),
            "str": pd.array(["x", pd.NA], dtype="str"),
            "string": pd.array(["y", pd.NA], dtype="string"),
            "when": pd.DatetimeIndex([dt.datetime(2024, 1, 1), None]).tz_localize("UTC"),
            "span": pd.TimedeltaIndex([dt.timedelta(seconds=1), None]),
            "mixed": pd.Series([pd.NA, pd.NaT], dtype=object),
        }
    )
    first, second = wire(source)
    assert first["int"] == 1 and type(first["int"]) is int
    assert all(value is None for value in second.values())


def test_polars_null_and_nan_are_null() -> None:
    source = pl.DataFrame(
        {
            "x": [1.5, None, float("nan")],
            "i": [1, None, 2],
            "s": ["a", None, "b"],
            "n": pl.Series([None, None, None], dtype=pl.Null),
        }
    )
    assert wire(source) == [
        {"x": 1.5, "i": 1, "s": "a", "n": None},
        {"x": None, "i": None, "s": None, "n": None},
        {"x": None, "i": 2, "s": "b", "n": None},
    ]


# ---------------------------------------------------------------------------------------------
# §6: ±inf → rejected (column and row named)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_pandas_infinity_is_rejected_with_the_index_label(value: float) -> None:
    source = pd.DataFrame({"score": [1.0, 2.0, value]}, index=["a", "b", "c"])
    with rejected("score", "c", "infinity is not valid JSON"):
        build_payload(source)


@pytest.mark.parametrize("dtype", [pl.Float64, pl.Float32])
def test_polars_infinity_is_rejected_with_the_row_number(dtype: Any) -> None:
    source = pl.DataFrame({"score": pl.Series([1.0, None, float("-inf")], dtype=dtype)})
    with rejected("score", 2, "infinity"):
        build_payload(source)


def test_infinity_in_an_object_column_is_rejected() -> None:
    source = pd.DataFrame({"score": pd.Series(["a", 1, float("inf")], dtype=object)})
    with rejected("score", 2, "not valid JSON"):
        build_payload(source)


def test_the_error_says_what_to_do() -> None:
    with pytest.raises(SerializationError) as info:
        build_payload(pd.DataFrame({"x": [np.inf]}))
    assert "Replace infinities" in str(info.value)
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------------------------
# §6: float precision → shortest round-trip text, as repr()
# ---------------------------------------------------------------------------------------------

TRICKY_FLOATS = [
    0.1 + 0.2,
    1 / 3,
    1e-12,
    -0.0,
    0.0,
    5e-324,
    2.2250738585072014e-308,
    1e16,
    1e22,
    1e23,
    123456789.123456789,
    9007199254740993.0,
    1e-5,
    1.5e-7,
    0.0001,
    1e15,
    -1.7976931348623157e308,
]


@pytest.mark.parametrize("lib", LIBS)
def test_float64_is_sent_as_its_shortest_repr(lib: str) -> None:
    source = frame(lib, {"x": TRICKY_FLOATS})
    assert value_text(source) == [repr(value) for value in TRICKY_FLOATS]
    for sent, value in zip(wire_column(source), TRICKY_FLOATS, strict=True):
        assert same_float(sent, value)


@pytest.mark.parametrize("lib", LIBS)
def test_float32_is_sent_as_its_own_shortest_text(lib: str) -> None:
    values = np.array([0.1, 1 / 3, 1e-40, 3.4028235e38, 16777216.0, 1e13, -0.0, 1e-5], np.float32)
    source = (
        pd.DataFrame({"x": values}) if lib == "pandas" else pl.DataFrame({"x": pl.Series(values)})
    )
    texts = value_text(source)
    assert texts[:6] == [
        "0.1",
        "0.33333334",
        "1e-40",
        "3.4028235e+38",
        "16777216.0",
        "10000000000000.0",
    ]
    assert texts[6:] == ["-0.0", "1e-05"]
    assert all(same_float32(text, value) for text, value in zip(texts, values, strict=True))


def test_float16_is_sent_exactly_at_float32_precision() -> None:
    values = np.array([0.1, 1.0], dtype=np.float16)
    for source in (pd.DataFrame({"x": values}), pl.DataFrame({"x": pl.Series(values)})):
        texts = value_text(source)
        assert texts == ["0.099975586", "1.0"]
        assert np.float32(texts[0]) == np.float32(values[0])


# ---------------------------------------------------------------------------------------------
# §6: numpy ints / bools, int > 2**53
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
def test_ints_and_bools_are_exact(lib: str) -> None:
    source = frame(
        lib,
        {
            "i": np.array([2**53 + 1, -(2**63)], dtype=np.int64),
            "u": np.array([2**64 - 1, 0], dtype=np.uint64),
            "small": np.array([7, -1], dtype=np.int8),
            "b": np.array([True, False]),
        },
    )
    assert value_text(source.select("u") if lib == "polars" else source[["u"]], "u") == [
        "18446744073709551615",
        "0",
    ]
    first, second = wire(source)
    assert first == {"i": 9007199254740993, "u": 2**64 - 1, "small": 7, "b": True}
    assert second == {"i": -(2**63), "u": 0, "small": -1, "b": False}


def test_polars_int128_is_exact() -> None:
    source = pl.DataFrame({"x": pl.Series([2**100, None], dtype=pl.Int128)})
    assert value_text(source) == ["1267650600228229401496703205376", "null"]


def test_numpy_scalars_in_an_object_column_are_plain_json() -> None:
    values = [np.int64(3), np.float64(0.5), np.bool_(True), np.float32(0.1), np.str_("s")]
    source = pd.DataFrame({"x": pd.Series(values, dtype=object)})
    assert value_text(source) == ["3", "0.5", "true", "0.1", '"s"']


# ---------------------------------------------------------------------------------------------
# §6: Decimal → exact string; NaN → rejected
# ---------------------------------------------------------------------------------------------


def test_decimal_values_are_exact_strings() -> None:
    cases = [
        pd.DataFrame({"x": [decimal.Decimal("1.10"), None, decimal.Decimal("-0.0000001")]}),
        pd.DataFrame(
            {
                "x": pd.Series(
                    [decimal.Decimal("1.10"), None, decimal.Decimal("-0.0000001")],
                    dtype=pd.ArrowDtype(pa.decimal128(12, 7)),
                )
            }
        ),
        pl.DataFrame(
            {
                "x": pl.Series(
                    [decimal.Decimal("1.10"), None, decimal.Decimal("-0.0000001")],
                    dtype=pl.Decimal(12, 7),
                )
            }
        ),
    ]
    assert value_text(cases[0]) == ['"1.10"', "null", '"-0.0000001"']
    assert value_text(cases[1]) == ['"1.1000000"', "null", '"-0.0000001"']
    assert value_text(cases[2]) == ['"1.1000000"', "null", '"-0.0000001"']


@pytest.mark.parametrize("bad", ["NaN", "sNaN", "Infinity"])
def test_decimal_nan_is_rejected(bad: str) -> None:
    source = pd.DataFrame({"price": [decimal.Decimal("1"), decimal.Decimal(bad)]}, index=[10, 20])
    with rejected("price", 20, "is not a number"):
        build_payload(source)


# ---------------------------------------------------------------------------------------------
# §6: tz-aware datetime → ISO-8601 with its own offset, microseconds
# ---------------------------------------------------------------------------------------------


def _aware(lib: str, values: Sequence[dt.datetime | None], zone: str, unit: Unit = "us") -> Any:
    naive = [None if value is None else value.replace(tzinfo=None) for value in values]
    if lib == "pandas":
        index = pd.DatetimeIndex(naive, dtype=f"datetime64[{unit}]")
        return pd.DataFrame({"x": index.tz_localize(zone)})
    series = pl.Series("x", naive, dtype=pl.Datetime(unit)).dt.replace_time_zone(zone)
    return pl.DataFrame({"x": series})


@pytest.mark.parametrize("lib", LIBS)
def test_aware_datetimes_keep_their_offset_and_microseconds(lib: str) -> None:
    values = [dt.datetime(2024, 1, 1, 12), dt.datetime(2024, 7, 1, 12, 0, 0, 5), None]
    assert value_text(_aware(lib, values, "America/New_York")) == [
        '"2024-01-01T12:00:00.000000-05:00"',
        '"2024-07-01T12:00:00.000005-04:00"',
        "null",
    ]
    assert value_text(_aware(lib, values[:1], "UTC")) == ['"2024-01-01T12:00:00.000000+00:00"']


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
def test_every_time_unit_gives_the_same_text(lib: str, unit: Unit) -> None:
    values = [dt.datetime(2024, 3, 10, 1, 30, 0, 123000)]
    assert value_text(_aware(lib, values, "Asia/Kolkata", unit)) == [
        '"2024-03-10T01:30:00.123000+05:30"'
    ]


@pytest.mark.parametrize("lib", LIBS)
def test_nanoseconds_are_kept_when_present(lib: str) -> None:
    stamps = ["2024-01-01 12:00:00.123456789", "2024-01-01 12:00:00.123456000"]
    source: Any
    if lib == "pandas":
        source = pd.DataFrame({"x": pd.to_datetime(stamps).as_unit("ns").tz_localize("UTC")})
    else:
        series = pl.Series("x", stamps).str.to_datetime(time_unit="ns", time_zone="UTC")
        source = pl.DataFrame({"x": series})
    assert value_text(source) == [
        '"2024-01-01T12:00:00.123456789+00:00"',
        '"2024-01-01T12:00:00.123456+00:00"',
    ]


@pytest.mark.parametrize("lib", LIBS)
def test_historical_offsets_keep_their_seconds(lib: str) -> None:
    # New York used local mean time (UTC-04:56:02) until 1883; %:z would print -04:56.
    values = [dt.datetime(1850, 1, 1, 0, 0), dt.datetime(2024, 1, 1)]
    assert value_text(_aware(lib, values, "America/New_York")) == [
        '"1850-01-01T00:00:00.000000-04:56:02"',
        '"2024-01-01T00:00:00.000000-05:00"',
    ]


def test_pandas_nat_next_to_old_and_far_future_instants() -> None:
    # pandas stores NaT as -2**63 under the null mask; Polars must never convert that slot
    stamps = ["2024-01-01 00:00:00.000000001", None, "1850-01-01", "2150-07-01"]
    index = pd.DatetimeIndex(stamps, dtype="datetime64[ns]").tz_localize("America/New_York")
    assert value_text(pd.DataFrame({"x": index})) == [
        '"2024-01-01T00:00:00.000000001-05:00"',
        "null",
        '"1850-01-01T00:00:00.000000-04:56:02"',
        '"2150-07-01T00:00:00.000000-04:00"',  # daylight saving goes on after 2099
    ]


def test_fixed_offset_pandas_datetimes_keep_their_offset() -> None:
    stamps = ["2024-01-01T12:00:00+05:30", "2024-01-02T00:00:00.000001-08:00"]
    source = pd.DataFrame({"x": pd.to_datetime(stamps[:1], format="ISO8601")})
    assert value_text(source) == ['"2024-01-01T12:00:00.000000+05:30"']
    mixed = pd.DataFrame({"x": [dt.datetime.fromisoformat(stamp) for stamp in stamps]})
    assert value_text(mixed) == [
        '"2024-01-01T12:00:00.000000+05:30"',
        '"2024-01-02T00:00:00.000001-08:00"',
    ]


def test_datetimes_outside_years_1_to_9999_are_rejected() -> None:
    source = pl.DataFrame(
        {"x": pl.Series([0, 2**62], dtype=pl.Datetime("us")).dt.replace_time_zone("UTC")}
    )
    with rejected("x", 1, "outside the years 1-9999"):
        build_payload(source)


# ---------------------------------------------------------------------------------------------
# §6: naive datetime → rejected unless naive_datetimes="utc"
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
def test_naive_datetimes_are_rejected_at_the_first_value(lib: str) -> None:
    source = frame(lib, {"x": [None, dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2)]})
    if lib == "pandas":
        source.index = pd.Index(["a", "b", "c"])
    with rejected("x", "b" if lib == "pandas" else 1, "naive datetime"):
        build_payload(source)


@pytest.mark.parametrize("lib", LIBS)
def test_naive_datetimes_can_be_sent_as_utc(lib: str) -> None:
    source = frame(lib, {"x": [dt.datetime(2024, 1, 1, 12, 0, 0, 7), None]})
    assert value_text(source, naive_datetimes="utc") == [
        '"2024-01-01T12:00:00.000007+00:00"',
        "null",
    ]


def test_naive_datetime_objects_follow_the_same_policy() -> None:
    source = pd.DataFrame({"x": pd.Series(["a", dt.datetime(2024, 1, 1)], dtype=object)})
    with rejected("x", 1, "naive datetime"):
        build_payload(source)
    assert value_text(source, naive_datetimes="utc") == [
        '"a"',
        '"2024-01-01T00:00:00.000000+00:00"',
    ]


def test_an_all_null_naive_column_is_fine() -> None:
    source = pl.DataFrame({"x": pl.Series([None, None], dtype=pl.Datetime("us"))})
    assert value_text(source) == ["null", "null"]


def test_an_unknown_policy_is_rejected() -> None:
    with pytest.raises(SerializationError, match="naive_datetimes"):
        build_payload(pd.DataFrame({"x": [1]}), naive_datetimes="local")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# §6: ns precision / NaT in numpy
# ---------------------------------------------------------------------------------------------


def test_numpy_datetime64_keeps_nanoseconds_and_nat_is_null() -> None:
    values = np.array(["2024-01-01T00:00:00.000000001", "NaT"], dtype="datetime64[ns]")
    assert value_text(pd.DataFrame({"x": values}), naive_datetimes="utc") == [
        '"2024-01-01T00:00:00.000000001+00:00"',
        "null",
    ]
    objects = pd.DataFrame({"x": pd.Series(list(values), dtype=object)})
    assert value_text(objects, naive_datetimes="utc") == [
        '"2024-01-01T00:00:00.000000001+00:00"',
        "null",
    ]


# ---------------------------------------------------------------------------------------------
# §6: timedelta / date / time / Period / Interval
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
def test_durations_are_iso_8601_seconds(lib: str) -> None:
    values = [
        dt.timedelta(hours=2),
        dt.timedelta(seconds=-1.5),
        dt.timedelta(days=1, microseconds=5),
        dt.timedelta(0),
        None,
    ]
    assert value_text(frame(lib, {"x": values})) == [
        '"PT7200S"',
        '"-PT1.5S"',
        '"PT86400.000005S"',
        '"PT0S"',
        "null",
    ]


def test_pandas_timedeltas_keep_nanoseconds() -> None:
    source = pd.DataFrame({"x": pd.to_timedelta(["1ns", "-1 days +00:00:00.000000001"])})
    assert value_text(source) == ['"PT0.000000001S"', '"-PT86399.999999999S"']


@pytest.mark.parametrize("lib", LIBS)
def test_dates_and_times(lib: str) -> None:
    source = frame(
        lib,
        {
            "d": [dt.date(2024, 1, 2), None, dt.date(1, 1, 1)],
            "t": [dt.time(12, 30, 1, 5), dt.time(0, 0), None],
        },
    )
    assert wire(source) == [
        {"d": "2024-01-02", "t": "12:30:01.000005"},
        {"d": None, "t": "00:00:00.000000"},
        {"d": "0001-01-01", "t": None},
    ]


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (pd.period_range("2024-01", periods=2, freq="M"), "pandas.Period"),
        (pd.interval_range(0, 2), "pandas.Interval"),
    ],
)
def test_period_and_interval_are_rejected_naming_the_type(values: Any, kind: str) -> None:
    source = pd.DataFrame({"x": values}, index=[7, 8])
    with rejected("x", 7, f"values of type {kind} have no JSON form"):
        build_payload(source)


# ---------------------------------------------------------------------------------------------
# §6: categoricals → their values in their own type
# ---------------------------------------------------------------------------------------------


def test_pandas_int_categories_stay_ints() -> None:
    source = pd.DataFrame({"x": pd.Categorical([1, None, 2, 1])})
    assert value_text(source) == ["1", "null", "2", "1"]


@pytest.mark.parametrize("lib", LIBS)
def test_string_categoricals_are_their_values(lib: str) -> None:
    source: Any
    if lib == "pandas":
        source = pd.DataFrame({"x": pd.Categorical(["b", None, 'a"'])})
    else:
        source = pl.DataFrame({"x": pl.Series(["b", None, 'a"'], dtype=pl.Categorical)})
    assert value_text(source) == ['"b"', "null", '"a\\""']


def test_polars_enums_are_their_values() -> None:
    source = pl.DataFrame({"x": pl.Series(["lo", None, "hi"], dtype=pl.Enum(["lo", "hi"]))})
    assert value_text(source) == ['"lo"', "null", '"hi"']


def test_categories_of_mixed_types_are_sent_value_by_value() -> None:
    source = pd.DataFrame({"x": pd.Categorical([1, "a", None, 1.5])})
    assert value_text(source) == ["1", '"a"', "null", "1.5"]


# ---------------------------------------------------------------------------------------------
# §6: nested list / dict / np.array / struct, with a depth limit
# ---------------------------------------------------------------------------------------------


def test_pandas_nested_values_are_json_arrays_and_objects() -> None:
    values = [
        [1, 2.5, None],
        {"a": [1, {"b": np.array([0.1], dtype=np.float32)}]},
        np.array([[1, 2], [3, 4]]),
        (True, "x"),
        [],
        {},
    ]
    source = pd.DataFrame({"x": pd.Series(values, dtype=object)})
    assert value_text(source) == [
        "[1,2.5,null]",
        '{"a":[1,{"b":[0.1]}]}',
        "[[1,2],[3,4]]",
        '[true,"x"]',
        "[]",
        "{}",
    ]


def test_polars_lists_arrays_and_structs() -> None:
    source = pl.DataFrame(
        {
            "l": pl.Series([[0.1, None], None], dtype=pl.List(pl.Float32)),
            "a": pl.Series([[1, 2], [3, 4]], dtype=pl.Array(pl.Int64, 2)),
            "s": [{"n": 1, "when": dt.date(2024, 1, 1)}, None],
            "t": pl.Series([[dt.datetime(2024, 1, 1)], None]).cast(
                pl.List(pl.Datetime("ns", "Europe/Paris"))
            ),
        }
    )
    assert wire(source) == [
        {
            "l": [0.1, None],
            "a": [1, 2],
            "s": {"n": 1, "when": "2024-01-01"},
            "t": ["2024-01-01T01:00:00.000000+01:00"],
        },
        {"l": None, "a": [3, 4], "s": None, "t": None},
    ]


def test_bad_values_inside_nested_values_are_found() -> None:
    inner_inf = pl.DataFrame({"l": pl.Series([[0.5], [1.0, float("inf")]])})
    with rejected("l", 1, "infinity"):
        build_payload(inner_inf)
    inner_naive = pl.DataFrame({"l": [[dt.datetime(2024, 1, 1)]]})
    with rejected("l", 0, "naive datetime"):
        build_payload(inner_naive)
    bad_key = pd.DataFrame({"d": pd.Series([{"a": 1}, {1: "x"}], dtype=object)})
    with rejected("d", 1, "is not a string"):
        build_payload(bad_key)


def test_nesting_deeper_than_the_limit_is_rejected() -> None:
    deep: list[Any] = [1]
    for _ in range(40):
        deep = [deep]
    with rejected("x", 0, "nested deeper than 32 levels"):
        build_payload(pd.DataFrame({"x": pd.Series([deep], dtype=object)}))
    ok: list[Any] = [1]
    for _ in range(31):
        ok = [ok]
    assert value_text(pd.DataFrame({"x": pd.Series([ok], dtype=object)})) == [
        "[" * 32 + "1" + "]" * 32
    ]


def test_a_value_that_contains_itself_is_rejected() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with rejected("x", 0, "contains itself"):
        build_payload(pd.DataFrame({"x": pd.Series([loop], dtype=object)}))


# ---------------------------------------------------------------------------------------------
# §6: bytes → rejected
# ---------------------------------------------------------------------------------------------


def test_bytes_are_rejected_with_a_hint() -> None:
    source = pd.DataFrame({"blob": pd.Series(["ok", b"\xff"], dtype=object, index=[3, 4])})
    with rejected("blob", 4, "bytes cannot be sent"):
        build_payload(source)
    with pytest.raises(SerializationError, match="base64"):
        build_payload(source)


def test_polars_binary_is_rejected_without_a_panic() -> None:
    source = pl.DataFrame({"blob": [None, b"x"]})
    with rejected("blob", 1, "bytes cannot be sent"):
        build_payload(source)


def test_arrow_binary_in_pandas_is_rejected() -> None:
    source = pd.DataFrame({"blob": pd.Series([b"x"], dtype=pd.ArrowDtype(pa.binary()))})
    with rejected("blob", 0, "bytes"):
        build_payload(source)


# ---------------------------------------------------------------------------------------------
# §6: lone surrogates → rejected; "\x00" and emoji → escaped / UTF-8
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [object, pd.StringDtype("python")])
def test_lone_surrogates_are_rejected_naming_column_and_row(dtype: Any) -> None:
    source = pd.DataFrame({"name": pd.Series(["ok", "bad \ud800"], dtype=dtype, index=["p", "q"])})
    with rejected("name", "q", "lone surrogate"):
        build_payload(source)


@pytest.mark.parametrize("lib", LIBS)
def test_control_characters_are_escaped_and_unicode_is_utf8(lib: str) -> None:
    source = frame(lib, {"x": ["a\x00b", 'q"\\\n\t\x1f\x7f', "é😀\u2028"]})
    assert value_text(source) == ['"a\\u0000b"', '"q\\"\\\\\\n\\t\\u001f\x7f"', '"é😀\u2028"']
    payload = build_payload(source)
    body = payload.body_bytes(payload.unique_keys)
    assert "é😀".encode() in body and b"\\u00e9" not in body
    assert wire_column(source) == ["a\x00b", 'q"\\\n\t\x1f\x7f', "é😀\u2028"]


# ---------------------------------------------------------------------------------------------
# §6: complex / set / custom object → rejected naming the type
# ---------------------------------------------------------------------------------------------


class Custom:
    pass


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (pd.Series([1 + 2j]), "complex"),
        (pd.Series([1, {1, 2}], dtype=object), "set"),
        (pd.Series([1, frozenset()], dtype=object), "frozenset"),
        (pd.Series([Custom()], dtype=object), "tests.test_payload.Custom"),
    ],
)
def test_unknown_objects_are_rejected_naming_the_type(values: pd.Series[Any], kind: str) -> None:
    with pytest.raises(SerializationError, match=f"type {kind}"):
        build_payload(pd.DataFrame({"x": values}))


def test_polars_object_columns_go_value_by_value() -> None:
    good = pl.DataFrame({"x": pl.Series([{"a": 1}, None], dtype=pl.Object)})
    assert value_text(good) == ['{"a":1}', "null"]
    bad = pl.DataFrame({"x": pl.Series([1, Custom()], dtype=pl.Object)})
    with rejected("x", 1, "Custom"):
        build_payload(bad)


# ---------------------------------------------------------------------------------------------
# §6: mixed object column → each value by its own type
# ---------------------------------------------------------------------------------------------


def test_mixed_object_columns_are_sent_per_value() -> None:
    values = [1, "a", 2.5, None, True, 10**30, dt.date(2024, 1, 1), [1]]
    source = pd.DataFrame({"x": pd.Series(values, dtype=object)})
    assert value_text(source) == [
        "1",
        '"a"',
        "2.5",
        "null",
        "true",
        str(10**30),
        '"2024-01-01"',
        "[1]",
    ]


# ---------------------------------------------------------------------------------------------
# pandas extension and Arrow-backed dtypes
# ---------------------------------------------------------------------------------------------


def _arrow(values: list[Any], arrow_type: Any) -> pd.DataFrame:
    return pd.DataFrame({"x": pd.Series(values, dtype=pd.ArrowDtype(arrow_type))})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (_arrow([dt.date(2024, 1, 1), None], pa.date64()), ['"2024-01-01"', "null"]),
        (_arrow([decimal.Decimal("1.5"), None], pa.decimal256(50, 1)), ['"1.5"', "null"]),
        (_arrow([[0.1, None], None], pa.list_(pa.float32())), ["[0.1,null]", "null"]),
        (
            _arrow([{"a": 1, "b": "x"}, None], pa.struct([("a", pa.int64()), ("b", pa.string())])),
            ['{"a":1,"b":"x"}', "null"],
        ),
        (_arrow([dt.time(1, 2, 3, 4), None], pa.time64("ns")), ['"01:02:03.000004"', "null"]),
        (_arrow([dt.timedelta(seconds=5), None], pa.duration("s")), ['"PT5S"', "null"]),
        (_arrow([None, None], pa.null()), ["null", "null"]),
        (pd.DataFrame({"x": pd.arrays.SparseArray([0, 1.5, 0])}), ["0.0", "1.5", "0.0"]),
        (pd.DataFrame({"x": pd.Categorical([0.1, None, 1e-7])}), ["0.1", "null", "1e-07"]),
        (
            pd.DataFrame({"x": pd.Categorical(pd.DatetimeIndex(["2024-01-01", None], tz="UTC"))}),
            ['"2024-01-01T00:00:00.000000+00:00"', "null"],
        ),
        (
            pd.DataFrame(
                {"x": pd.DatetimeIndex(["2024-07-01"]).tz_localize("dateutil/Europe/Paris")}
            ),
            ['"2024-07-01T00:00:00.000000+02:00"'],
        ),
    ],
)
def test_pandas_extension_dtypes(source: pd.DataFrame, expected: list[str]) -> None:
    assert value_text(source) == expected


def test_arrow_intervals_and_named_tuples_are_rejected() -> None:
    interval = pa.scalar((1, 2, 3), type=pa.month_day_nano_interval()).as_py()
    with rejected("x", 0, "MonthDayNano have no JSON form"):
        build_payload(_arrow([interval], pa.month_day_nano_interval()))
    pair = collections.namedtuple("pair", "a b")
    with rejected("x", 0, "pair have no JSON form"):
        build_payload(pd.DataFrame({"x": pd.Series([pair(1, 2)], dtype=object)}))


# ---------------------------------------------------------------------------------------------
# §6: column names
# ---------------------------------------------------------------------------------------------


def test_non_string_column_names_are_stringified() -> None:
    source = pd.DataFrame({0: [1], 2.5: [2], None: [3], "a": [4]})
    payload = build_payload(source)
    assert payload.columns == ("0", "2.5", "None", "a")
    assert check_payload(payload) == [{"0": 1, "2.5": 2, "None": 3, "a": 4}]


def test_names_that_collide_once_stringified_are_rejected() -> None:
    with pytest.raises(SerializationError, match="frame columns 0 and '0' would both be sent"):
        build_payload(pd.DataFrame({0: [1], "0": [2]}))


def test_duplicate_column_names_are_rejected() -> None:
    source = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(SerializationError, match="two columns named 'a'") as info:
        build_payload(source)
    assert info.value.column == "a"


@pytest.mark.parametrize("lib", LIBS)
def test_a_column_named_like_the_row_key_is_rejected(lib: str) -> None:
    with rejected(ROW_KEY, None, "reserved for the row key"):
        build_payload(frame(lib, {ROW_KEY: [1], "a": [2]}))
    with rejected("a", None, "reserved"):
        build_payload(frame(lib, {"a": [2]}), rename={"a": ROW_KEY})


def test_multiindex_columns_are_rejected_with_a_hint() -> None:
    source = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2)]))
    with pytest.raises(SerializationError, match=r"MultiIndex columns.*Flatten"):
        build_payload(source)


def test_column_names_are_escaped() -> None:
    source = pd.DataFrame({'we"ird\n': [1], "é": [2]})
    payload = build_payload(source)
    assert payload.unique_json[0].startswith('{"we\\"ird\\n":1,"é":2,')
    assert check_payload(payload) == [{'we"ird\n': 1, "é": 2}]


# ---------------------------------------------------------------------------------------------
# §6: index — never sent; duplicates and MultiIndex are fine
# ---------------------------------------------------------------------------------------------


def test_the_index_is_never_sent_and_may_repeat() -> None:
    source = pd.DataFrame({"a": [1, 2, 1]}, index=pd.Index([5, 5, 5], name="id"))
    payload = build_payload(source)
    assert check_payload(payload) == [{"a": 1}, {"a": 2}, {"a": 1}]
    assert payload.n_rows == 3 and payload.n_unique == 2


def test_a_multiindex_is_fine_and_named_in_errors() -> None:
    index = pd.MultiIndex.from_tuples([("x", 1), ("x", 2)])
    assert wire(pd.DataFrame({"a": [1, 2]}, index=index)) == [{"a": 1}, {"a": 2}]
    with rejected("a", ("x", 2), "infinity"):
        build_payload(pd.DataFrame({"a": [1.0, np.inf]}, index=index))


# ---------------------------------------------------------------------------------------------
# §6: empty frames and zero columns → rejected
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
def test_a_frame_without_rows_is_rejected(lib: str) -> None:
    with pytest.raises(SerializationError, match="no rows"):
        build_payload(frame(lib, {"a": []}))


def test_a_frame_without_columns_is_rejected() -> None:
    for source in (pd.DataFrame(index=[1, 2, 3]), pl.DataFrame()):
        with pytest.raises(SerializationError, match="no columns"):
            build_payload(source)
    with pytest.raises(SerializationError, match="no columns"):
        build_payload(pd.DataFrame({"a": [1]}), columns=[])


# ---------------------------------------------------------------------------------------------
# §6: LazyFrame and other inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (pl.DataFrame({"a": [1]}).lazy(), "LazyFrame must be collected"),
        ({"a": [1]}, "got builtins.dict"),
        (np.array([1]), "got numpy.ndarray"),
        (pd.Series([1]), "got pandas.Series"),
    ],
)
def test_other_inputs_are_rejected_naming_the_type(source: object, match: str) -> None:
    with pytest.raises(SerializationError, match=match):
        build_payload(source)


# ---------------------------------------------------------------------------------------------
# columns= and rename=
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
def test_columns_select_and_order_and_rename_names_them(lib: str) -> None:
    source = frame(lib, {"a": [1], "b": [2], "c": [3]})
    payload = build_payload(source, columns=["c", "a"], rename={"c": "company"})
    assert payload.columns == ("company", "a")
    assert check_payload(payload) == [{"company": 3, "a": 1}]


def test_columns_accept_non_string_labels() -> None:
    source = pd.DataFrame({0: [1], "b": [2]})
    labels: Any = [0]  # pandas labels need not be strings (the annotation says str)
    rename: Any = {0: "zero"}
    assert build_payload(source, columns=labels, rename=rename).columns == ("zero",)
    assert build_payload(source, columns=["0"]).columns == ("0",)


@pytest.mark.parametrize("lib", LIBS)
def test_an_unknown_column_lists_the_available_ones(lib: str) -> None:
    with pytest.raises(SerializationError, match=r"'zz' is not in the frame.*'a', 'b'"):
        build_payload(frame(lib, {"a": [1], "b": [2]}), columns=["zz"])


def test_a_rename_of_an_unknown_column_is_rejected() -> None:
    with pytest.raises(SerializationError, match=r"'nme' is not in the frame.*'name'"):
        build_payload(pd.DataFrame({"name": ["Acme"]}), rename={"nme": "company_name"})


def test_a_column_selected_twice_is_rejected() -> None:
    with pytest.raises(SerializationError, match="listed twice"):
        build_payload(pd.DataFrame({"a": [1]}), columns=["a", "a"])


def test_renaming_onto_another_column_is_rejected() -> None:
    with pytest.raises(SerializationError, match="would both be sent as 'b'"):
        build_payload(pd.DataFrame({"a": [1], "b": [2]}), rename={"a": "b"})


def test_columns_must_be_a_list() -> None:
    with pytest.raises(SerializationError, match="list of names"):
        build_payload(pd.DataFrame({"a": [1]}), columns="a")


def test_unselected_bad_columns_do_not_matter() -> None:
    source = pd.DataFrame({"a": [1], "bad": [np.inf]})
    assert wire(source, columns=["a"]) == [{"a": 1}]


# ---------------------------------------------------------------------------------------------
# Deduplication and keys
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
def test_identical_rows_share_one_key_and_are_sent_once(lib: str) -> None:
    source = frame(lib, {"name": ["Acme", "Beta", "Acme", "Acme"], "n": [3, 4, 3, 3]})
    payload = build_payload(source)
    check_payload(payload)
    assert payload.n_rows == 4 and payload.n_unique == 2
    keys = payload.row_keys
    assert keys[0] == keys[2] == keys[3] != keys[1]
    assert payload.unique_keys == [keys[0], keys[1]]


def test_a_different_value_or_column_order_gives_a_different_key() -> None:
    base = build_payload(pd.DataFrame({"a": [1], "b": [2]})).unique_keys[0]
    assert build_payload(pd.DataFrame({"a": [1], "b": [3]})).unique_keys[0] != base
    assert build_payload(pd.DataFrame({"b": [2], "a": [1]})).unique_keys[0] != base
    assert build_payload(pd.DataFrame({"a": [1], "c": [2]})).unique_keys[0] != base
    assert build_payload(pd.DataFrame({"a": [1.0], "b": [2]})).unique_keys[0] != base


def test_pandas_and_polars_give_the_same_keys() -> None:
    data = {"name": ["Acme", None], "n": [1, 2], "x": [0.1, None]}
    from_pandas = build_payload(pd.DataFrame(data))
    from_polars = build_payload(pl.DataFrame(data))
    assert from_pandas.unique_json == from_polars.unique_json
    assert from_pandas.row_keys == from_polars.row_keys


def test_keys_are_fixed_forever() -> None:
    # The row cache in the ledger relies on these never changing between versions.
    payload = build_payload(pd.DataFrame({"company_name": ["Acme"], "n": [3]}))
    assert payload.unique_json == [
        '{"company_name":"Acme","n":3,"__sixtyfour_row":"ke0b825f74644d8a313c4"}'
    ]


def test_keys_are_the_same_in_another_process() -> None:
    script = textwrap.dedent(
        """
        import pandas as pd
        from sixtyfour_frames._payload import build_payload
        frame = pd.DataFrame({"name": ["Ünïcode 😀", "b"], "x": [0.1, None]})
        print(",".join(build_payload(frame).row_keys))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    here = build_payload(pd.DataFrame({"name": ["Ünïcode 😀", "b"], "x": [0.1, None]}))
    assert done.stdout.strip().split(",") == here.row_keys


def test_duplicates_across_chunks_are_sent_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records_module, "CHUNK_ROWS", 3)
    values = [1, 2, 3, 1, 4, 2, 5, 1, 5, 6]
    payload = build_payload(pl.DataFrame({"a": values}))
    assert check_payload(payload) == [{"a": value} for value in values]
    assert payload.n_unique == 6
    assert payload.records() == [
        {"a": value, ROW_KEY: key}
        for value, key in zip([1, 2, 3, 4, 5, 6], payload.unique_keys, strict=True)
    ]


def test_polars_failures_become_serialization_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import sixtyfour_frames._payload_polars as polars_module

    def panic(*args: Any, **kwargs: Any) -> Any:
        raise pl.exceptions.PanicException("boom")

    monkeypatch.setattr(polars_module, "column_fragment", panic)
    with pytest.raises(SerializationError, match="Polars could not encode") as info:
        build_payload(pl.DataFrame({"a": [1]}))
    assert info.value.column == "a"


# ---------------------------------------------------------------------------------------------
# The Payload API
# ---------------------------------------------------------------------------------------------


def test_payload_api() -> None:
    payload = build_payload(pd.DataFrame({"a": [1, 2, 1], "b": ["x", "y", "x"]}))
    first, second = payload.unique_keys
    assert payload.json_for([second, first]) == [payload.unique_json[1], payload.unique_json[0]]
    body = payload.body_bytes([second, second])
    assert strict_loads(body) == [{"a": 2, "b": "y", ROW_KEY: second}] * 2
    assert payload.records([first]) == [{"a": 1, "b": "x", ROW_KEY: first}]
    assert len(payload.records()) == 2
    assert repr(payload) == "Payload(n_rows=3, n_unique=2, columns=('a', 'b'))"
    with pytest.raises(KeyError, match="not in this payload"):
        payload.json_for(["knope"])
    assert payload.body_bytes([]) == b"[]"
