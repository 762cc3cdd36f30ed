"""Vectorised per-dtype converters for Polars columns.

Each column becomes a :class:`Fragment`: Polars expressions that yield, for every row, the
value's JSON text (``null`` for a missing value), byte for byte what ``_payload_values`` would
write; and, when Polars' own JSON writer already writes the value that way, the expression to
hand it (so that a whole record can be one ``struct.json_encode()``). Checks run as
whole-column expressions first (``is_infinite().any()`` and the like); only when one fails is the
first bad row located. The rare values whose text Polars would write differently from the
reference (floats below 1e-4, offsets with seconds) are re-rendered one by one in Python.

Nested and object columns go through the per-value encoder, because they are rare and their
shape varies per row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo

import polars as pl

from sixtyfour_frames._payload_values import (
    INFINITY_HINT,
    MAX_DEPTH,
    NAIVE_HINT,
    NAIVE_REASON,
    ColumnRejected,
    NaiveDatetimePolicy,
    RejectedValue,
    ValueEncoder,
    format_datetime,
    format_duration_nanos,
    format_float32_text,
    format_string,
    format_wall_time,
)

_UNIT_NANOS: Final = {"ms": 1_000_000, "us": 1_000, "ns": 1}
_EPOCH: Final = dt.datetime(1970, 1, 1)
# Datetimes are accepted from 0001-01-02 to 9999-12-30 UTC, so that every local time stays
# inside the years 1-9999 that ISO-8601 (and Python) can write without an expanded year.
_FIRST_INSTANT: Final = dt.datetime(1, 1, 2)
_LAST_INSTANT: Final = dt.datetime(9999, 12, 30)
_FIRST_DAY: Final = (dt.date(1, 1, 1) - _EPOCH.date()).days
_LAST_DAY: Final = (dt.date(9999, 12, 31) - _EPOCH.date()).days
# Local mean time (offsets with seconds) ended everywhere before 1973 (Africa/Monrovia, 1972).
_LMT_END: Final = dt.datetime(1973, 1, 1)
# Polars' time-zone tables stop applying daylight saving in 2100; Python's zoneinfo goes on
# with each zone's rule, as tzdata intends. Later instants are rendered in Python.
_RULES_END: Final = dt.datetime(2099, 1, 1)
_DATE_FORMAT: Final = "%Y-%m-%dT%H:%M:%S"
_RANGE_HINT: Final = (
    "Only the years 1-9999 can be written as ISO-8601 dates; filter or clip the column."
)


def _first_true(mask: pl.Series) -> int | None:
    """Position of the first True in a boolean Series (nulls count as False)."""
    if not mask.any():  # the usual answer, in one call: locating costs two more
        return None
    hits = mask.fill_null(False).arg_true()
    return int(hits[0]) if len(hits) else None


def _reject_first(mask: pl.Series, reason: str, hint: str | None = None) -> None:
    position = _first_true(mask)
    if position is not None:
        raise ColumnRejected(reason, position, hint)


def _all_null(col: pl.Expr) -> pl.Expr:
    """``null`` on every row (a column whose values are all missing)."""
    return pl.when(col.is_null()).then(pl.lit("null")).otherwise(pl.lit("null"))


def _quoted(expr: pl.Expr) -> pl.Expr:
    """A JSON string from a String expression whose text needs no escaping, ``null`` if null."""
    return pl.concat_str([pl.lit('"'), expr, pl.lit('"')]).fill_null(pl.lit("null"))


def json_string_expr(expr: pl.Expr) -> pl.Expr:
    """A JSON string (escaped like ``json.dumps(ensure_ascii=False)``), ``null`` if null.

    Polars' own JSON writer does the escaping: encode ``{"s": value}`` and keep the value.
    """
    encoded = pl.struct(expr.alias("s")).struct.json_encode()
    return encoded.str.slice(5).str.head(-1)


@dataclass(frozen=True)
class Fragment:
    """How one column is written into each record.

    ``text`` gives each value's JSON text. ``value``, when set, gives what Polars' JSON writer
    turns into exactly that text (the value itself, or a string it only needs to quote).
    ``ready`` holds texts rendered in advance; ``text`` then reads them from the column.
    """

    text: pl.Expr
    value: pl.Expr | None = None
    ready: pl.Series | None = None


def _native(col: pl.Expr, text: pl.Expr) -> Fragment:
    return Fragment(text, col)


def _string(col: pl.Expr, string: pl.Expr) -> Fragment:
    """A value sent as a JSON string that needs no escaping (dates, times, decimals)."""
    return Fragment(_quoted(string), string)


def _ready(texts: pl.Series, name: str) -> Fragment:
    """Texts rendered in advance, held in the work frame as column ``name``."""
    return Fragment(pl.col(name), None, texts.rename(name))


def column_fragment(series: pl.Series, naive: NaiveDatetimePolicy) -> Fragment:
    """How to write every value of ``series`` (expressions on ``pl.col(series.name)``)."""
    dtype = series.dtype
    col = pl.col(series.name)
    if dtype == pl.Null:
        return _native(col, _all_null(col))
    if dtype == pl.Boolean or dtype.is_integer():
        return _native(col, col.cast(pl.String).fill_null(pl.lit("null")))
    if dtype.is_float():
        return _float_fragment(series)
    if dtype == pl.String:
        return _native(col, json_string_expr(col))
    if dtype == pl.Categorical or isinstance(dtype, pl.Enum):
        return Fragment(_categorical_text(series), col.cast(pl.String))
    if dtype == pl.Date:
        days = series.to_physical()
        outside = (days < _FIRST_DAY) | (days > _LAST_DAY)
        _reject_first(outside, "date is outside the years 1-9999", _RANGE_HINT)
        return _string(col, col.cast(pl.String))
    if isinstance(dtype, pl.Datetime):
        return _datetime_fragment(series, naive)
    if isinstance(dtype, pl.Duration):
        return _string(col, _duration_text(col, dtype.time_unit))
    if dtype == pl.Time:
        time_text = _strftime_with_nanos(col, series.to_physical(), "ns", "%H:%M:%S%.6f")
        return _string(col, time_text)
    if isinstance(dtype, pl.Decimal):
        return _string(col, col.cast(pl.String))
    if dtype == pl.Binary:
        _reject_first(
            series.is_not_null(),
            "bytes cannot be sent as JSON text",
            "Decode the bytes to text first (.cast(pl.String) for UTF-8), or base64-encode "
            "them (.bin.encode('base64')).",
        )
        return _native(col.cast(pl.String), _all_null(col))  # every value is null
    if isinstance(dtype, (pl.List, pl.Array, pl.Struct)) or dtype == pl.Object:
        return _ready(python_fragments(series, naive), series.name)
    raise ColumnRejected(f"dtype {dtype} has no JSON form", 0, "Cast the column first.")


_LOOKUP_MIN_ROWS: Final = 50_000


def _categorical_text(series: pl.Series) -> pl.Expr:
    """Each category's JSON string, encoded once and looked up by the category's code."""
    col = pl.col(series.name)
    if len(series) < _LOOKUP_MIN_ROWS:  # building the lookup costs more than it saves
        return json_string_expr(col.cast(pl.String))
    codes = series.to_physical()
    largest: Any = codes.max()
    if largest is None or largest > 4 * len(series) + 1024:  # a huge shared category pool
        return json_string_expr(col.cast(pl.String))
    seen = pl.DataFrame({"code": codes, "value": series}).drop_nulls("code").unique("code")
    texts = seen.select("code", json_string_expr(pl.col("value").cast(pl.String)).alias("text"))
    lookup = pl.repeat(None, int(largest) + 1, dtype=pl.String, eager=True)
    lookup = lookup.scatter(texts.get_column("code"), texts.get_column("text"))
    return pl.lit(lookup).gather(col.to_physical()).fill_null(pl.lit("null"))


# ---------------------------------------------------------------------------------------------
# Floats
# ---------------------------------------------------------------------------------------------


def _float_fragment(series: pl.Series) -> Fragment:
    values = series if series.dtype in (pl.Float32, pl.Float64) else series.cast(pl.Float32)
    _reject_first(values.is_infinite(), "infinity is not valid JSON", INFINITY_HINT)
    col = pl.col(series.name).cast(values.dtype)
    text = col.fill_nan(None).cast(pl.String).fill_null("null")
    odd = _repr_mismatches(values)
    if odd is None:
        return _native(col, text)  # Polars' JSON writer writes NaN as null, like the text
    rendered = series.to_frame().select(text).to_series()
    fixed = [format_float32_text(shortest) for shortest in rendered.gather(odd).to_list()]
    return _ready(rendered.scatter(odd, fixed), series.name)


def _repr_mismatches(values: pl.Series) -> pl.Series | None:
    """Rows whose Polars text differs in notation from ``repr`` (the digits always agree).

    Polars writes ``0.00001`` and ``1e-7`` where ``repr`` writes ``1e-05`` and ``1e-07``; for
    float32 it also switches to exponents earlier (``1e+13``). The bounds are conservative: a
    re-rendered value that already matched is unchanged.
    """
    value = pl.col(values.name)
    magnitude = value.abs()
    odd = (magnitude < 1e-4) & (value != 0)
    if values.dtype == pl.Float32:
        odd = odd | (magnitude >= 1e12)
    odd = (odd & value.is_not_nan()).fill_null(False)  # Polars sorts NaN above every number
    mask = values.to_frame().select(odd).to_series()  # one call: small frames pay per call
    if not mask.any():
        return None
    return mask.arg_true()


# ---------------------------------------------------------------------------------------------
# Dates and times
# ---------------------------------------------------------------------------------------------


def _ticks(moment: dt.datetime, unit: str) -> int:
    """``moment`` (naive, UTC) as a count of ``unit`` since the epoch, clipped to Int64."""
    ticks = (moment - _EPOCH) // dt.timedelta(microseconds=1) * 1000 // _UNIT_NANOS[unit]
    return min(max(ticks, -(2**63)), 2**63 - 1)


def _check_instant_range(physical: pl.Series, unit: str) -> None:
    _reject_first(
        (physical < _ticks(_FIRST_INSTANT, unit)) | (physical > _ticks(_LAST_INSTANT, unit)),
        "datetime is outside the years 1-9999",
        _RANGE_HINT,
    )


def _datetime_fragment(series: pl.Series, naive: NaiveDatetimePolicy) -> Fragment:
    dtype: Any = series.dtype
    unit = dtype.time_unit
    physical = series.to_physical()
    _check_instant_range(physical, unit)
    col = pl.col(series.name)
    if dtype.time_zone is None:
        if naive != "utc":
            _reject_first(series.is_not_null(), NAIVE_REASON, NAIVE_HINT)
        col = col.dt.replace_time_zone("UTC")
    string = _strftime_with_nanos(col, physical, unit, f"{_DATE_FORMAT}%.6f%:z")
    odd_rows = _zone_mismatches(series, physical, unit, dtype.time_zone)
    if odd_rows is None:
        return _string(col, string)
    rendered = series.to_frame().select(_quoted(string)).to_series()
    fixed = [
        _render_instant(int(value), unit, dtype.time_zone, naive)
        for value in physical.gather(odd_rows).to_list()
    ]
    return _ready(rendered.scatter(odd_rows, fixed), series.name)


def _strftime_with_nanos(col: pl.Expr, physical: pl.Series, unit: str, fmt: str) -> pl.Expr:
    """``fmt`` (with ``%.6f``), switching to nine digits on the rows that have nanoseconds."""
    micro_text = col.dt.strftime(fmt)
    if unit != "ns" or not (physical % 1000 != 0).any():
        return micro_text
    nano_text = col.dt.strftime(fmt.replace("%.6f", "%.9f"))
    return pl.when(col.dt.nanosecond() % 1000 != 0).then(nano_text).otherwise(micro_text)


def _zone_mismatches(
    series: pl.Series, physical: pl.Series, unit: str, zone: str | None
) -> pl.Series | None:
    """Rows that Polars would write with another offset than Python's zoneinfo.

    ``%:z`` drops the seconds of local-mean-time offsets (New York was UTC-04:56:02 until
    1883), and Polars applies no daylight saving after 2099.
    """
    if zone in (None, "UTC"):
        return None
    early, late = _ticks(_LMT_END, unit), _ticks(_RULES_END, unit)
    candidates = ((physical < early) | (physical >= late)).fill_null(False)
    if not candidates.any():
        return None
    rows = candidates.arg_true()
    # only non-null rows: a null slot may hold any value (pandas' NaT is -2**63), and Polars
    # would panic converting it to local time
    subset = series.gather(rows)
    offset = subset.dt.base_utc_offset() + subset.dt.dst_offset()
    has_seconds = offset.dt.total_microseconds() % 60_000_000 != 0
    odd = rows.filter((has_seconds | (subset.to_physical() >= late)).fill_null(False))
    return odd if len(odd) else None


def _render_instant(value: int, unit: str, zone: str | None, naive: NaiveDatetimePolicy) -> str:
    """A datetime given as ticks since the epoch; naive values follow the ``naive`` policy."""
    micros, extra = divmod(value * _UNIT_NANOS[unit], 1000)
    moment = _EPOCH + dt.timedelta(microseconds=micros)
    if zone is not None:
        moment = moment.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(zone))
    return format_datetime(moment, naive, extra)


def _duration_text(col: pl.Expr, unit: str) -> pl.Expr:
    """``PT<seconds>[.<fraction>]S``, with a leading ``-`` for negative durations."""
    per_second = 1_000_000_000 // _UNIT_NANOS[unit]
    digits = len(str(per_second)) - 1
    ticks = col.to_physical()
    size = ticks.abs()
    seconds = (size // per_second).cast(pl.String)
    fraction = (size % per_second).cast(pl.String).str.zfill(digits).str.strip_chars_end("0")
    return pl.concat_str(
        [
            pl.when(ticks < 0).then(pl.lit("-PT")).otherwise(pl.lit("PT")),
            seconds,
            pl.when(fraction == "").then(pl.lit("")).otherwise(pl.lit(".") + fraction),
            pl.lit("S"),
        ]
    )


# ---------------------------------------------------------------------------------------------
# Nested and object columns: per value, with the dtype telling how to read each leaf
# ---------------------------------------------------------------------------------------------

LeafEncoder = Callable[[Any, int], str]


def python_fragments(series: pl.Series, naive: NaiveDatetimePolicy) -> pl.Series:
    """Encode ``series`` value by value (nested or object dtypes)."""
    target, encode = _nested_plan(series.dtype, ValueEncoder(naive), naive, 0)
    values = series.cast(target).to_list() if target != series.dtype else series.to_list()
    out: list[str] = []
    for position, value in enumerate(values):
        try:
            out.append(encode(value, 0))
        except RejectedValue as exc:
            raise ColumnRejected(exc.reason, position, exc.hint) from exc
    return pl.Series(series.name, out, dtype=pl.String)


def _nested_plan(
    dtype: Any, generic: ValueEncoder, naive: NaiveDatetimePolicy, depth: int
) -> tuple[Any, LeafEncoder]:
    """(dtype to cast to before ``to_list``, encoder of one value of that dtype)."""
    if depth > MAX_DEPTH:
        raise ColumnRejected(
            f"dtype is nested deeper than {MAX_DEPTH} levels", 0, "Flatten the column first."
        )
    if isinstance(dtype, (pl.List, pl.Array)):
        inner_target, inner = _nested_plan(dtype.inner, generic, naive, depth + 1)
        return pl.List(inner_target), _list_encoder(inner, generic)
    if isinstance(dtype, pl.Struct):
        fields = [(f.name, *_nested_plan(f.dtype, generic, naive, depth + 1)) for f in dtype.fields]
        target = pl.Struct([pl.Field(name, t) for name, t, _ in fields])
        return target, _struct_encoder([(name, enc) for name, _, enc in fields], generic)
    if dtype in (pl.Float32, pl.Float16):
        return pl.String, _float32_text_encoder
    if isinstance(dtype, pl.Datetime):
        unit, zone = dtype.time_unit, dtype.time_zone
        return pl.Int64, _nullable(lambda v: _render_instant(v, unit, zone, naive))
    if isinstance(dtype, pl.Duration):
        factor = _UNIT_NANOS[dtype.time_unit]
        return pl.Int64, _nullable(lambda v: format_duration_nanos(v * factor))
    if dtype == pl.Time:
        return pl.Int64, _nullable(_render_time_nanos)
    return dtype, generic.encode


def _nullable(render: Callable[[Any], str]) -> LeafEncoder:
    return lambda value, depth: "null" if value is None else render(value)


def _list_encoder(inner: LeafEncoder, generic: ValueEncoder) -> LeafEncoder:
    def encode(value: Any, depth: int) -> str:
        if value is None:
            return "null"
        level = generic.enter(depth)
        return "[" + ",".join([inner(item, level) for item in value]) + "]"

    return encode


def _struct_encoder(fields: list[tuple[str, LeafEncoder]], generic: ValueEncoder) -> LeafEncoder:
    keys = [format_string(name) + ":" for name, _ in fields]

    def encode(value: Any, depth: int) -> str:
        if value is None:
            return "null"
        level = generic.enter(depth)
        parts = [
            key + enc(value[name], level) for key, (name, enc) in zip(keys, fields, strict=True)
        ]
        return "{" + ",".join(parts) + "}"

    return encode


def _float32_text_encoder(value: Any, depth: int) -> str:
    """A float32 leaf, already cast to its shortest text by Polars."""
    if value is None or value.lstrip("-").lower() == "nan":
        return "null"
    if "inf" in value.lower():
        raise RejectedValue("infinity is not valid JSON", INFINITY_HINT)
    return format_float32_text(value)


def _render_time_nanos(value: int) -> str:
    micros, extra = divmod(value, 1000)
    moment = dt.datetime.min + dt.timedelta(microseconds=micros)
    return f'"{format_wall_time(moment, extra)}"'
