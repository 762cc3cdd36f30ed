"""The per-value JSON encoder: the reference definition of every wire text.

Each function here turns one Python value into the exact JSON text that is sent. The vectorised
Polars path (``_payload_polars``) must produce the very same bytes; the tests check the two
against each other. This encoder is used as is for object columns (mixed values per row),
nested values, and for every column when Polars is not installed.

Nothing here knows about columns or rows: a bad value raises :class:`RejectedValue`, and the
caller adds the column and the row.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring  # C-accelerated
from typing import Any, Final, Literal

NaiveDatetimePolicy = Literal["raise", "utc"]

MAX_DEPTH: Final = 32
"""Nesting limit for lists, dicts and structs (deeper values are rejected, cycles included)."""

_BYTES_HINT: Final = (
    "Decode the bytes to text first (e.g. .decode('utf-8')), or base64-encode them."
)
NAIVE_HINT: Final = (
    "Give the column a time zone (pandas: .dt.tz_localize('UTC'), Polars: "
    ".dt.replace_time_zone('UTC')), or pass naive_datetimes='utc' to send naive values as UTC."
)
INFINITY_HINT: Final = (
    "Replace infinities before sending (e.g. with null or a large finite number)."
)
NAIVE_REASON: Final = "naive datetime (no time zone) is ambiguous"
_OBJECT_HINT: Final = "Convert the column to str, a number, a date or a list/dict first."


class RejectedValue(ValueError):
    """A single value cannot be sent as JSON without changing it silently."""

    def __init__(self, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class ColumnRejected(ValueError):
    """A column has a bad value at ``position`` (its 0-based row number)."""

    def __init__(self, reason: str, position: int, hint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position
        self.hint = hint


def encode_values(values: list[Any], naive: NaiveDatetimePolicy) -> list[str]:
    """Encode a column value by value; a rejection carries the position of the bad value."""
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
# Numbers
# ---------------------------------------------------------------------------------------------


def format_float64(value: float) -> str:
    """Python's ``repr``: the shortest text that parses back to the same double."""
    if math.isnan(value):
        return "null"
    if math.isinf(value):
        raise RejectedValue("infinity is not valid JSON", INFINITY_HINT)
    return float.__repr__(value)


def format_float32_text(shortest: str) -> str:
    """Re-render the shortest float32 digits (any notation) in ``repr`` style.

    float32 values are sent as the shortest text that parses back to the same float32
    (``0.1``, not ``0.10000000149011612``), written the way Python writes a float.
    """
    negative, digits, exponent = _split_decimal(shortest)
    return render_repr_style(negative, digits, exponent)


def _split_decimal(text: str) -> tuple[bool, str, int]:
    """``'-1.25e-7'`` → (True, '125', -7): sign, significant digits, exponent of the first digit."""
    negative = text.startswith("-")
    body = text.lstrip("+-").lower()
    mantissa, _, exp_text = body.partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, fraction = mantissa.partition(".")
    raw = (whole + fraction).lstrip("0")
    if not raw:
        return negative, "0", 0
    leading_zeros = len(whole + fraction) - len(raw)
    return negative, raw.rstrip("0"), exponent + len(whole) - 1 - leading_zeros


def render_repr_style(negative: bool, digits: str, exponent: int) -> str:
    """Write significant ``digits`` × 10**``exponent`` exactly as ``float.__repr__`` does."""
    sign = "-" if negative else ""
    if digits == "0":
        return f"{sign}0.0"
    if -4 <= exponent < 16:
        if exponent < 0:
            return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
        whole = digits[: exponent + 1].ljust(exponent + 1, "0")
        fraction = digits[exponent + 1 :] or "0"
        return f"{sign}{whole}.{fraction}"
    mantissa = digits[0] + (f".{digits[1:]}" if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def _format_numpy_float(value: Any) -> str:
    """numpy float scalars: float64 as a double, narrower floats at float32 precision."""
    import numpy as np

    if value.dtype.itemsize > 8:
        raise RejectedValue(
            f"numpy {value.dtype} has more precision than JSON numbers carry",
            "Convert it to float64 (or to a Decimal or a string) first.",
        )
    if value.dtype.itemsize == 8:
        return format_float64(float(value))
    if np.isnan(value):
        return "null"
    if np.isinf(value):
        return format_float64(float(value))  # raises with the standard message
    return format_float32_text(np.format_float_scientific(np.float32(value), unique=True, trim="-"))


# ---------------------------------------------------------------------------------------------
# Dates and times
# ---------------------------------------------------------------------------------------------


def format_wall_time(value: dt.datetime | dt.time, nanos: int = 0) -> str:
    """``HH:MM:SS.ffffff``: always microseconds, nine digits when nanoseconds are set."""
    fraction = f"{value.microsecond:06d}" + (f"{nanos:03d}" if nanos else "")
    return f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{fraction}"


def format_datetime(value: dt.datetime, naive: NaiveDatetimePolicy, nanos: int = 0) -> str:
    """ISO-8601 with the value's own offset: ``2024-01-01T12:00:00.000000-05:00``.

    Always six fraction digits, nine when ``nanos`` (0-999) is set; an offset with seconds
    keeps them (``-04:56:02``), as ``datetime.isoformat`` writes it.
    """
    text = dt.datetime.isoformat(value, timespec="microseconds")
    if value.utcoffset() is None:
        if naive != "utc":
            raise RejectedValue(NAIVE_REASON, NAIVE_HINT)
        text += "+00:00"
    if nanos:
        text = f"{text[:26]}{nanos:03d}{text[26:]}"  # after "YYYY-MM-DDTHH:MM:SS.ffffff"
    return f'"{text}"'


def format_time(value: dt.time, nanos: int = 0) -> str:
    if value.tzinfo is not None:
        raise RejectedValue(
            "a time of day with a time zone has no fixed offset", "Convert it to a string first."
        )
    return f'"{format_wall_time(value, nanos)}"'


def format_duration_nanos(nanos: int) -> str:
    """ISO-8601 duration in seconds: ``PT93600.000005S``, ``-PT1.5S``, ``PT0S``."""
    sign = "-" if nanos < 0 else ""
    seconds, fraction = divmod(abs(nanos), 1_000_000_000)
    frac_text = f".{fraction:09d}".rstrip("0") if fraction else ""
    return f'"{sign}PT{seconds}{frac_text}S"'


def _timedelta_nanos(value: dt.timedelta) -> int:
    nanos = (value.days * 86400 + value.seconds) * 1_000_000_000 + value.microseconds * 1000
    return nanos + int(getattr(value, "nanoseconds", 0))  # pandas.Timedelta keeps nanoseconds


_NUMPY_UNIT_NANOS: Final = {
    "W": 604_800 * 10**9,
    "D": 86_400 * 10**9,
    "h": 3_600 * 10**9,
    "m": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "ns": 1,
}


def _numpy_nanos(value: Any) -> int:
    """A numpy datetime64/timedelta64 as an exact integer count of nanoseconds."""
    import numpy as np

    unit, count = np.datetime_data(value.dtype)
    if unit not in _NUMPY_UNIT_NANOS:
        raise RejectedValue(
            f"numpy {value.dtype} has no fixed length in seconds",
            "Convert it to a datetime64[us] or timedelta64[us] first.",
        )
    return int(value.astype(np.int64)) * count * _NUMPY_UNIT_NANOS[unit]


def _format_numpy_datetime(value: Any, naive: NaiveDatetimePolicy) -> str:
    nanos = _numpy_nanos(value)
    micros, extra = divmod(nanos, 1000)
    try:
        moment = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)
    except OverflowError as exc:
        raise RejectedValue(f"{value!r} is outside the years 1-9999") from exc
    return format_datetime(moment, naive, extra)


# ---------------------------------------------------------------------------------------------
# The dispatcher
# ---------------------------------------------------------------------------------------------


def format_string(value: str) -> str:
    """A JSON string, UTF-8 (no ASCII escaping); lone surrogates are rejected."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RejectedValue(
                f"text contains a lone surrogate ({value[exc.start]!r}) that is not valid UTF-8",
                "Fix the text's encoding (e.g. .encode('utf-8', 'surrogatepass').decode('utf-8')).",
            ) from exc
    return str(encode_basestring(value))


def format_decimal(value: decimal.Decimal) -> str:
    """A JSON string with the exact digits (``"1.10"``), never a lossy float."""
    if not value.is_finite():
        raise RejectedValue(f"Decimal {value} is not a number", "Replace it with None or a value.")
    return f'"{value:f}"'


Handler = Callable[[Any, int], str]


class ValueEncoder:
    """Encode arbitrary Python values, one at a time, into canonical JSON text.

    The converter is chosen by the value's type, once per type (then cached).
    """

    def __init__(self, naive: NaiveDatetimePolicy) -> None:
        self.naive = naive
        self._handlers: dict[type, Handler] = {
            str: lambda v, d: format_string(v),
            int: lambda v, d: int.__repr__(v),
            float: lambda v, d: format_float64(v),
            bool: lambda v, d: "true" if v else "false",
            type(None): lambda v, d: "null",
            list: self._sequence,
            tuple: self._sequence,
            dict: self._mapping,
        }

    def encode(self, value: object, depth: int = 0) -> str:
        """The JSON text for ``value``; raises :class:`RejectedValue` when it has none."""
        kind = type(value)
        handler = self._handlers.get(kind)
        if handler is None:
            handler = self._handlers[kind] = self._handler_for(kind)
        return handler(value, depth)

    def _handler_for(self, kind: type) -> Handler:
        if kind.__name__ in ("NAType", "NaTType") and kind.__module__.startswith("pandas"):
            return lambda v, d: "null"
        if issubclass(kind, bool):
            return lambda v, d: "true" if v else "false"
        if issubclass(kind, str):
            return lambda v, d: format_string(str(v))
        if issubclass(kind, int):
            return lambda v, d: int.__repr__(int(v))
        if issubclass(kind, float):
            return lambda v, d: format_float64(float(v))
        if issubclass(kind, dt.datetime):
            return lambda v, d: format_datetime(v, self.naive, int(getattr(v, "nanosecond", 0)))
        if issubclass(kind, dt.date):
            return lambda v, d: f'"{v.isoformat()}"'
        if issubclass(kind, dt.time):
            return lambda v, d: format_time(v)
        if issubclass(kind, dt.timedelta):
            return lambda v, d: format_duration_nanos(_timedelta_nanos(v))
        if issubclass(kind, decimal.Decimal):
            return lambda v, d: format_decimal(v)
        if issubclass(kind, Mapping):
            return self._mapping
        if issubclass(kind, list):
            return self._sequence
        if kind.__module__ == "numpy":
            return self._numpy
        return _rejection_for(kind)

    def _numpy(self, value: Any, depth: int) -> str:
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.ndim == 0:
                return self.encode(value[()], depth)
            return self._sequence(value, depth)
        if isinstance(value, np.bool_):
            return "true" if value else "false"
        if isinstance(value, np.integer):
            return int.__repr__(int(value))
        if isinstance(value, np.floating):
            return _format_numpy_float(value)
        if isinstance(value, np.datetime64):
            return "null" if np.isnat(value) else _format_numpy_datetime(value, self.naive)
        if isinstance(value, np.timedelta64):
            return "null" if np.isnat(value) else format_duration_nanos(_numpy_nanos(value))
        if isinstance(value, np.str_):
            return format_string(str(value))
        if isinstance(value, np.bytes_):
            raise RejectedValue("bytes cannot be sent as JSON text", _BYTES_HINT)
        raise RejectedValue(
            f"values of type {_type_name(type(value))} have no JSON form", _OBJECT_HINT
        )

    def enter(self, depth: int) -> int:
        """The depth one level down; rejects values nested deeper than MAX_DEPTH."""
        if depth >= MAX_DEPTH:
            raise RejectedValue(
                f"value is nested deeper than {MAX_DEPTH} levels (or contains itself)",
                "Flatten the structure or send it as a JSON string.",
            )
        return depth + 1

    def _sequence(self, value: Any, depth: int) -> str:
        inner = self.enter(depth)
        return "[" + ",".join([self.encode(item, inner) for item in value]) + "]"

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> str:
        inner = self.enter(depth)
        parts = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise RejectedValue(
                    f"dict key {key!r} ({_type_name(type(key))}) is not a string",
                    "JSON object keys must be strings; convert the keys first.",
                )
            parts.append(f"{format_string(key)}:{self.encode(item, inner)}")
        return "{" + ",".join(parts) + "}"


_SHORT_MODULES: Final = frozenset({"numpy", "pandas", "polars", "pyarrow"})


def _rejection_for(kind: type) -> Handler:
    """The handler of a type with no JSON form: it raises, naming the type."""
    if issubclass(kind, (bytes, bytearray, memoryview)):
        reason, hint = "bytes cannot be sent as JSON text", _BYTES_HINT
    elif issubclass(kind, tuple):  # a named tuple would lose its names as an array
        reason = f"values of type {_type_name(kind)} have no JSON form"
        hint = "Convert them to dicts (._asdict()) or plain lists first."
    else:
        reason, hint = f"values of type {_type_name(kind)} have no JSON form", _OBJECT_HINT

    def reject(value: Any, depth: int) -> str:
        raise RejectedValue(reason, hint)

    return reject


def _type_name(kind: type) -> str:
    """``complex``, ``pandas.Period``, ``mymodule.Custom``: the type as users know it."""
    module = kind.__module__
    if module == "builtins":
        return kind.__qualname__
    package = module.split(".")[0]
    return f"{package if package in _SHORT_MODULES else module}.{kind.__qualname__}"
