"""Frame adapters: a pandas or Polars DataFrame → the payload's columns, named and checked.

This is where column names are resolved (``columns=``, ``rename=``, stringified labels,
collisions, the reserved row-key name) and where each pandas column is handed to the fastest
converter that keeps it exact: a typed Polars Series when Polars is installed and the dtype is
known, otherwise the list of its Python values for the per-value encoder.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from sixtyfour_frames._errors import SerializationError

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

ROW_KEY: Final = "__sixtyfour_row"


@dataclass(frozen=True)
class SourceColumn:
    """One payload column: its wire name, its name in the frame, and its values."""

    wire: str
    label: str
    values: pl.Series | list[Any]  # typed values (vectorised path) or Python values (per value)


@dataclass(frozen=True)
class SourceTable:
    columns: list[SourceColumn]
    n_rows: int
    row_label: Callable[[int], object]  # row position → what error messages call the row


def polars_available() -> bool:
    try:
        import polars  # noqa: F401
    except ImportError:
        return False
    return True


def read_frame(
    frame: object, columns: Sequence[object] | None, rename: Mapping[Any, str] | None
) -> SourceTable:
    """The selected, renamed columns of a pandas or Polars DataFrame."""
    kind = _frame_kind(frame)
    if kind == "polars":
        return _read_polars(frame, columns, rename)
    return _read_pandas(frame, columns, rename)


def _frame_kind(frame: object) -> str:
    """ "pandas" or "polars" (subclasses included), without importing either library."""
    pandas, polars = sys.modules.get("pandas"), sys.modules.get("polars")
    if polars is not None and isinstance(frame, polars.DataFrame):
        return "polars"
    if pandas is not None and isinstance(frame, pandas.DataFrame):
        return "pandas"
    if polars is not None and isinstance(frame, polars.LazyFrame):
        raise SerializationError(
            "a LazyFrame must be collected before its rows can be sent",
            hint="Call .collect() on the columns you need first.",
        )
    kind = type(frame)
    raise SerializationError(
        f"expected a pandas or Polars DataFrame, got {kind.__module__}.{kind.__qualname__}",
        hint="Convert the data to a pandas.DataFrame or a polars.DataFrame first.",
    )


# ---------------------------------------------------------------------------------------------
# Column names
# ---------------------------------------------------------------------------------------------


def _select(
    labels: list[Any], columns: Sequence[object] | None, rename: Mapping[Any, str] | None
) -> list[tuple[int, str, str]]:
    """(position in the frame, name in the frame as text, wire name) for each payload column.

    Labels that are not strings are sent as ``str(label)``; two payload columns that end up
    with the same wire name (a duplicate label, ``0`` and ``"0"``, or a ``rename``) are an
    error, never a silent overwrite.
    """
    names = [label if isinstance(label, str) else str(label) for label in labels]
    if columns is None:
        positions = list(range(len(labels)))
    else:
        if isinstance(columns, str):
            raise SerializationError(
                f"columns must be a list of names, not the string {columns!r}",
                hint=f"Pass columns=[{columns!r}].",
            )
        positions = [_position_of(wanted, labels, names) for wanted in columns]
    for key in rename or {}:
        _position_of(key, labels, names)  # a typo in rename= must not go unnoticed
    picked = [(pos, names[pos], _wire_name(labels[pos], names[pos], rename)) for pos in positions]
    _check_unique(picked, labels)
    return picked


def _position_of(wanted: object, labels: list[Any], names: list[str]) -> int:
    """The frame position of a requested column: by label first, then by its text."""
    matches = [i for i, label in enumerate(labels) if _same_label(label, wanted)]
    if not matches and isinstance(wanted, str):
        matches = [i for i, name in enumerate(names) if name == wanted]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise SerializationError(
            f"column {wanted!r} appears {len(matches)} times in the frame",
            hint="Give the columns distinct names first.",
        )
    available = ", ".join(repr(name) for name in names)
    raise SerializationError(
        f"column {wanted!r} is not in the frame", hint=f"Available columns: {available}."
    )


def _same_label(label: object, wanted: object) -> bool:
    """Equal labels of comparable kinds (``1`` is not ``True``, ``0`` is not ``"0"``)."""
    if isinstance(label, bool) != isinstance(wanted, bool):
        return False
    if isinstance(label, str) != isinstance(wanted, str):
        return False
    try:
        return bool(label == wanted)
    except (TypeError, ValueError):
        return False


def _wire_name(label: object, name: str, rename: Mapping[Any, str] | None) -> str:
    if not rename:
        return name
    for key in (label, name):
        try:
            if key in rename:
                wire = rename[key]
                break
        except TypeError:  # an unhashable label
            continue
    else:
        return name
    if not isinstance(wire, str):
        raise SerializationError(
            f"rename maps {name!r} to {wire!r}, which is not a string", column=name
        )
    return wire


def _check_unique(picked: list[tuple[int, str, str]], labels: list[Any]) -> None:
    seen: dict[str, int] = {}
    for position, name, wire in picked:
        if wire == ROW_KEY:
            raise SerializationError(
                f"the name {ROW_KEY!r} is reserved for the row key",
                column=name,
                hint="Rename or drop that column.",
            )
        _check_text(wire, name)
        if seen.get(wire) == position:
            raise SerializationError(f"column {name!r} is listed twice in columns=", column=name)
        if wire in seen:
            first, second = labels[seen[wire]], labels[position]
            both = (
                f"the frame has two columns named {first!r}"
                if _same_label(first, second)
                else f"frame columns {first!r} and {second!r} would both be sent as {wire!r}"
            )
            raise SerializationError(
                both, column=name, hint="Drop one, or give them distinct names with rename=."
            )
        seen[wire] = position


def _check_text(wire: str, name: str) -> None:
    try:
        wire.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SerializationError(
            "the column name contains a lone surrogate, which is not valid UTF-8",
            column=name,
            hint="Rename the column.",
        ) from exc


def _empty_checks(picked: list[tuple[int, str, str]], n_rows: int) -> None:
    if not picked:
        raise SerializationError(
            "no columns to send", hint="Select at least one column (columns=[...])."
        )
    if n_rows == 0:
        raise SerializationError(
            "the frame has no rows: there is nothing to send (no run is started for 0 rows)"
        )


# ---------------------------------------------------------------------------------------------
# Polars
# ---------------------------------------------------------------------------------------------


def _read_polars(
    frame: Any, columns: Sequence[object] | None, rename: Mapping[Any, str] | None
) -> SourceTable:
    picked = _select(list(frame.columns), columns, rename)
    _empty_checks(picked, frame.height)
    sources = [
        SourceColumn(wire, name, frame.to_series(position)) for position, name, wire in picked
    ]
    return SourceTable(sources, frame.height, lambda position: position)


# ---------------------------------------------------------------------------------------------
# pandas
# ---------------------------------------------------------------------------------------------


def _read_pandas(
    frame: Any, columns: Sequence[object] | None, rename: Mapping[Any, str] | None
) -> SourceTable:
    import pandas as pd

    if isinstance(frame.columns, pd.MultiIndex):
        raise SerializationError(
            "the frame has MultiIndex columns, which have no single JSON name",
            hint="Flatten them first, e.g. df.columns = ['_'.join(map(str, c)) for c in df.columns].",
        )
    picked = _select(list(frame.columns), columns, rename)
    _empty_checks(picked, len(frame))
    vectorised = polars_available()
    sources = [
        SourceColumn(wire, name, _pandas_values(frame.iloc[:, position], vectorised))
        for position, name, wire in picked
    ]
    index = frame.index
    return SourceTable(sources, len(frame), lambda position: _plain(index[position]))


def _plain(label: object) -> object:
    """A numpy scalar label as the Python value it stands for (``20``, not ``np.int64(20)``)."""
    item = getattr(label, "item", None)
    if type(label).__module__ == "numpy" and callable(item):
        return item()
    return label


def _pandas_values(series: pd.Series[Any], vectorised: bool) -> pl.Series | list[Any]:
    """A typed Polars Series when the dtype converts exactly, else the Python values."""
    import pandas as pd

    if isinstance(series.dtype, pd.SparseDtype):
        series = cast(Any, series).sparse.to_dense()
    if vectorised:
        converted = _pandas_to_polars(series)
        if converted is not None:
            return converted
    return _python_values(series)


_EXACT_KINDS: Final = frozenset("biufmM")  # numpy bool, int, uint, float, timedelta, datetime


def _pandas_to_polars(series: pd.Series[Any]) -> pl.Series | None:
    """Zero-copy where possible; None when the dtype needs the per-value encoder."""
    import numpy as np
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    dtype = series.dtype
    if isinstance(dtype, (pd.PeriodDtype, pd.IntervalDtype)):
        return None  # rejected value by value, naming the type
    if _is_object(dtype) and not _typed_objects(series):
        return None  # mixed values; and pyarrow would recurse without end into a cyclic list
    try:
        if isinstance(dtype, np.dtype) and dtype.kind in _EXACT_KINDS:
            return pl.Series("v", series.to_numpy(), nan_to_null=False)
        array = pa.array(series, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError, UnicodeError, OverflowError):
        return None
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type) and not _is_text(array.type.value_type):
        array = array.dictionary_decode()  # a categorical of numbers: its values, ints stay ints
    if _is_object(dtype) and not (_is_text(array.type) or pa.types.is_date32(array.type)):
        return None  # an object column is typed only when it is all text or all dates
    if _needs_python(array.type):
        return None
    if pa.types.is_date64(array.type):
        array = array.cast(pa.date32())  # Polars would read date64 as a (naive) datetime
    try:
        return pl.Series("v", array)
    except (Exception, pl.exceptions.PanicException):  # any type Polars cannot hold exactly
        return None  # goes value by value


def _typed_objects(series: pd.Series[Any]) -> bool:
    """An object column of only text, or of only ``datetime.date`` (what ``.dt.date`` gives).

    pandas counts a ``datetime`` as a date too, and pyarrow would drop its time of day: such a
    column goes value by value, where the datetime is written (or rejected) as a datetime.
    """
    import pandas as pd

    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind == "string":
        return True
    if kind != "date":
        return False
    present = series.to_numpy(dtype=object)[series.notna().to_numpy()]  # an ndarray iterates fast
    return set(map(type, present)) == {dt.date}


def _is_text(arrow_type: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))


def _is_object(dtype: object) -> bool:
    import numpy as np

    return isinstance(dtype, np.dtype) and dtype.kind == "O"


def _needs_python(arrow_type: Any) -> bool:
    """Arrow types that Polars would not keep exactly (or cannot hold at all)."""
    import pyarrow as pa

    if isinstance(arrow_type, pa.ExtensionType):
        return True
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return True
    if pa.types.is_fixed_size_binary(arrow_type) or pa.types.is_binary_view(arrow_type):
        return True
    if pa.types.is_interval(arrow_type) or pa.types.is_decimal256(arrow_type):
        return True  # Polars would turn an interval into a list, and panic on decimal256
    if pa.types.is_struct(arrow_type):
        return any(_needs_python(field.type) for field in arrow_type)
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return _needs_python(arrow_type.value_type)
    if pa.types.is_fixed_size_list(arrow_type) or pa.types.is_list_view(arrow_type):
        return _needs_python(arrow_type.value_type)
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None:
        return not _polars_knows_zone(arrow_type.tz)
    return False


def _polars_knows_zone(zone: str) -> bool:
    """Polars accepts IANA names; fixed offsets such as '+05:30' go value by value."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if zone[:1] in "+-":
        return False
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _python_values(series: pd.Series[Any]) -> list[Any]:
    """The column's values as Python objects, keeping what ``tolist()`` would lose."""
    import numpy as np
    import pandas as pd

    numpy_dtype = getattr(series.dtype, "numpy_dtype", series.dtype)
    if isinstance(numpy_dtype, np.dtype) and numpy_dtype.kind == "f" and numpy_dtype.itemsize < 8:
        # float32 keeps its own (shorter) text: iterate numpy scalars, not widened floats.
        return list(series.to_numpy(dtype=np.float32, na_value=np.nan))
    values = series.array
    if isinstance(values, pd.arrays.DatetimeArray) and not (values.nanosecond != 0).any():
        # plain datetimes format several times faster than pandas Timestamps
        return list(values.to_pydatetime())
    return series.tolist()
