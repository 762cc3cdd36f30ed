"""Attach a workflow's output rows to the caller's frame: the join-back (design flow, step 7).

Pure data code: no I/O, no API calls. The workflow's output may come back in any order, filtered,
duplicated or one-to-many, so output rows are matched to caller rows by identity, never by
position.

Matching rules
--------------
* **Row key.** Every record travels with a ``__sixtyfour_row`` key (a content hash; identical
  records share one key, and so share their output: the fan-out). When the output has that column,
  an output row belongs to every caller row whose key is equal to it (exact text comparison; a
  null key matches nothing). The key wins even when ``on=`` is also given, because it names the
  record the workflow received, whatever the workflow did to the echoed fields.
* **``on=`` columns.** When the workflow dropped the key column, ``on`` names caller columns that
  identify a record; in the output they are looked up under ``rename.get(name, name)``. Values
  are compared as normalised text, the same way on both sides:

  - null (and NaN) never matches anything, not even another null;
  - integers and floats compare by value: ``3``, ``3.0`` and ``"3"`` match (integral floats
    within ±2**63 are written as integers, other floats in their shortest round-trip form);
  - booleans as ``true``/``false``;
  - strings exactly, with no trimming or case folding: ``"00123"`` does not match the number
    ``123``. Such a row is reported missing; it is never matched to the wrong record;
  - categoricals by their values; any other type by Arrow's own cast to text.

  With several ``on`` columns, all of them must match. If different records (different row keys)
  share the same ``on`` values, nobody can tell whose output is whose, so `JoinError` is raised.
  Without the key and without ``on``, `JoinError` is raised: never a silent positional join.

Several output rows for one key
-------------------------------
``multiple="first"`` takes the first output row in output order; ``"list"`` makes every new column
a list column (null for a row with no output); ``"explode"`` returns one row per output row, with a
caller row repeated (same index label) for each of its output rows and kept once, with nulls, when
it has none. Row order is always the caller's, then output order within a key.

Counting (`JoinStats`)
----------------------
``output_rows == distinct matched keys + output_extra + output_duplicated``: an output row is
*extra* when its key is null or matches no caller row (it is counted and not attached), and
*duplicated* when it is not the first output row of a matched key.

Attached columns
----------------
The new columns are the output's columns minus the row key, minus ``sent_columns`` (the echoed
input) and minus the ``on`` columns, in output order; then ``sixtyfour_status`` and
``sixtyfour_error`` when ``row_status`` is given (a status given for a key wins over ``"ok"`` and
``"missing"``). The caller's columns, values, dtypes, row order and index (duplicate labels and
MultiIndex included) are untouched; only ``on_conflict="overwrite"`` replaces the values of
clashing columns, in place.

pandas gets nullable dtypes, so that a missing row never turns an integer column into floats:
``Int*``/``UInt*``, ``Float*`` (on pandas 3 a NaN reads as ``<NA>``), ``boolean`` and
``string[pyarrow]``. Timestamps and durations get the usual ``datetime64``/``timedelta64`` (missing
is ``NaT``). Anything else (lists, structs, dates, decimals, all-empty null-typed columns) keeps
its Arrow type as ``pd.ArrowDtype``, never ``object``. Polars gets the Arrow types as they are.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Literal,
    NamedTuple,
    TypeAlias,
    TypeVar,
    cast,
    get_args,
)

import narwhals as nw
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from narwhals.dependencies import is_pandas_dataframe, is_polars_dataframe, is_polars_lazyframe

from sixtyfour_frames._arrow_bytes import string_bytes
from sixtyfour_frames._errors import JoinError
from sixtyfour_frames._threads import map_columns

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd
    import polars as pl

__all__ = [
    "ERROR_COLUMN",
    "ROW_KEY",
    "STATUS_COLUMN",
    "JoinStats",
    "Multiple",
    "OnConflict",
    "join_results",
]

ROW_KEY: Final = "__sixtyfour_row"
STATUS_COLUMN: Final = "sixtyfour_status"
ERROR_COLUMN: Final = "sixtyfour_error"

# One row key per row of the frame: a list of strings, or an Arrow array of (large) strings.
RowKeys: TypeAlias = "Sequence[str] | pa.Array | pa.ChunkedArray"
Multiple = Literal["first", "list", "explode"]
OnConflict = Literal["suffix", "raise", "overwrite"]

FrameT = TypeVar("FrameT", bound="pd.DataFrame | pl.DataFrame")

_log = logging.getLogger("sixtyfour_frames")
_TEXT: Final = pa.large_string()


@dataclass(frozen=True)
class JoinStats:
    """What the join did, for the run report."""

    rows_in: int
    """Rows of the caller's frame."""
    rows_matched: int
    """Caller rows that got at least one output row."""
    rows_missing: int
    """Caller rows that got none (their new columns are null)."""
    output_rows: int
    """Rows in the workflow's output."""
    output_extra: int
    """Output rows whose key (or ``on`` values) is null or matches no caller row."""
    output_duplicated: int
    """Output rows beyond the first for the same key (one-to-many or duplicates)."""
    new_columns: tuple[str, ...]
    """The added (or overwritten) columns, as named on the returned frame."""
    rows_out: int
    """Rows of the returned frame (differs from ``rows_in`` only with ``multiple="explode"``)."""


def join_results(
    frame: FrameT,
    results: pa.Table,
    *,
    row_keys: RowKeys,
    sent_columns: Sequence[str],
    on: Sequence[str] | None = None,
    rename: Mapping[str, str] | None = None,
    multiple: Multiple = "first",
    on_conflict: OnConflict = "suffix",
    suffix: str = "_sixtyfour",
    row_status: Mapping[str, tuple[str, str | None]] | None = None,
) -> tuple[FrameT, JoinStats]:
    """Attach the workflow's new columns in ``results`` to ``frame`` (see the module docstring).

    ``row_keys[i]`` is the row key of the frame's i-th row: a list of strings, or a pyarrow string
    or large_string array (chunked or not; its text is used without a copy). ``sent_columns`` are
    the wire names of the columns that were sent (echoed in the output, never attached).
    ``row_status`` maps a row key to ``(status, error message)`` and adds ``sixtyfour_status``
    (that status, else ``"ok"`` for a matched row and ``"missing"`` for one without output) and
    ``sixtyfour_error``.
    Returns a new frame of the same type and the `JoinStats`.
    """
    adapter = _adapter_for(frame)
    _check_options(multiple, on_conflict, suffix, sent_columns, on)
    if not isinstance(results, pa.Table):
        raise JoinError(f"results must be a pyarrow.Table, not {type(results).__name__}")
    record_ids = _record_ids(row_keys, adapter.height)
    keys = _match_keys(adapter, results, record_ids, on, rename)
    # Names first: a clash should fail before any of the real work.
    value_names = _new_column_names(results, [*sent_columns, *keys.output_columns])
    status_names = [STATUS_COLUMN, ERROR_COLUMN] if row_status is not None else []
    names = _attached_names([*value_names, *status_names], adapter.labels, on_conflict, suffix)

    matches = _match(keys.caller, keys.output)
    caller_rows, gather = _selection(matches, multiple)
    # The kernels release the GIL, and the columns are independent: gather them side by side,
    # the biggest first so that no long one is left running alone at the end.
    biggest_first = sorted(value_names, key=lambda name: results.column(name).nbytes, reverse=True)
    columns = map_columns(
        gather, [results.column(name) for name in biggest_first], rows=results.num_rows
    )
    gathered = dict(zip(biggest_first, columns, strict=True))
    arrays = [gathered[name] for name in value_names]
    if row_status is not None:
        arrays += _status_arrays(record_ids, row_status, matches, caller_rows)
    out = adapter.attach(caller_rows, list(zip(names, arrays, strict=True)))

    stats = JoinStats(
        rows_in=adapter.height,
        rows_matched=adapter.height - matches.caller_run.null_count,
        rows_missing=matches.caller_run.null_count,
        output_rows=results.num_rows,
        output_extra=matches.output_extra,
        output_duplicated=matches.output_duplicated,
        new_columns=tuple(names),
        rows_out=adapter.height if caller_rows is None else len(caller_rows),
    )
    _log.debug("joined results on %s: %s", keys.output_columns, stats)
    return cast("FrameT", out), stats


# -- arguments ---------------------------------------------------------------------------------


def _check_options(
    multiple: str,
    on_conflict: str,
    suffix: str,
    sent_columns: Sequence[str],
    on: Sequence[str] | None,
) -> None:
    if multiple not in get_args(Multiple):
        raise JoinError(
            f"multiple={multiple!r} is not one of {list(get_args(Multiple))}",
            hint="Pass 'first' (first output row per input row), 'list' (list columns) or "
            "'explode' (one row per output row).",
        )
    if on_conflict not in get_args(OnConflict):
        raise JoinError(
            f"on_conflict={on_conflict!r} is not one of {list(get_args(OnConflict))}",
            hint="Pass 'suffix', 'raise' or 'overwrite'.",
        )
    if not isinstance(suffix, str):
        raise JoinError(f"suffix must be a string, not {type(suffix).__name__}")
    for name, value in (("sent_columns", sent_columns), ("on", on)):
        # A bare string is a Sequence[str] too; iterating it would go letter by letter.
        if isinstance(value, str):
            raise JoinError(f"{name} must be a list of column names, not the string {value!r}")
    if on is not None and len(on) == 0:
        raise JoinError("on=[] names no column", hint="Pass on=None or at least one column name.")


def _record_ids(row_keys: RowKeys, height: int) -> pa.Array:
    if isinstance(row_keys, pa.Array | pa.ChunkedArray):
        ids = _arrow_ids(row_keys)
    else:
        try:
            ids = pa.array(row_keys, type=_TEXT)
        except (pa.ArrowException, TypeError) as exc:
            raise JoinError(
                f"row_keys must be strings (one row key per row of the frame): {exc}"
            ) from exc
    if len(ids) != height:
        raise JoinError(
            f"row_keys has {len(ids)} keys but the frame has {height} rows",
            hint="Pass exactly one row key per row of the frame, in the frame's row order.",
        )
    if ids.null_count:
        raise JoinError(f"row_keys holds {ids.null_count} null keys; every row needs its key")
    return ids


def _arrow_ids(row_keys: pa.Array | pa.ChunkedArray) -> pa.Array:
    if not (pa.types.is_string(row_keys.type) or pa.types.is_large_string(row_keys.type)):
        raise JoinError(
            "row_keys must be strings (one row key per row of the frame), "
            f"not an Arrow array of {row_keys.type}",
            hint="Pass a list of str, or a pyarrow string or large_string array.",
        )
    ids = row_keys.combine_chunks() if isinstance(row_keys, pa.ChunkedArray) else row_keys
    # Widens only the offsets: the text buffer is shared, not copied.
    return pc.cast(ids, _TEXT)


# -- what to match on --------------------------------------------------------------------------


class _Keys(NamedTuple):
    """Match keys of the caller's rows and of the output's rows, and where the latter came from."""

    caller: pa.Array
    output: pa.Array
    output_columns: list[str]


def _match_keys(
    adapter: _Frame,
    results: pa.Table,
    record_ids: pa.Array,
    on: Sequence[str] | None,
    rename: Mapping[str, str] | None,
) -> _Keys:
    if on is not None:
        _require_columns(on, adapter.labels, where="the frame")
    if ROW_KEY in results.column_names:
        # The key wins over on=: it names the record the workflow received.
        return _Keys(record_ids, _as_text(results.column(ROW_KEY)), [ROW_KEY])
    if on is None:
        raise JoinError(
            f"the workflow's output has no {ROW_KEY!r} column (the workflow dropped the row key), "
            "so its rows cannot be matched to the frame's rows",
            hint="Pass on=[...] with frame columns that identify each record (and rename= if the "
            "workflow received them under other names). Rows are never matched by position.",
        )
    wire_names = [(rename or {}).get(name, name) for name in on]
    _require_columns(wire_names, results.column_names, where="the workflow's output")
    caller_parts = [_comparable_text(adapter.arrow_column(name), name) for name in on]
    output_parts = [_comparable_text(results.column(wire), wire) for wire in wire_names]
    caller_keys = _composite_key(caller_parts)
    _check_unambiguous(caller_keys, record_ids, on, caller_parts)
    return _Keys(caller_keys, _composite_key(output_parts), wire_names)


def _require_columns(names: Sequence[str], available: Sequence[Hashable], *, where: str) -> None:
    present = set(available)
    absent = [name for name in names if name not in present]
    if absent:
        shown = ", ".join(repr(c) for c in list(available)[:20])
        raise JoinError(
            f"on= column(s) {absent} are not in {where}",
            hint=f"Available columns: {shown}. Pass rename= if the workflow received them under "
            "other names.",
        )


def _as_text(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return pc.cast(array, _TEXT)


def _comparable_text(values: pa.ChunkedArray | pa.Array, column: str) -> pa.Array:
    """Normalised text of an ``on`` column (rules in the module docstring); null never matches."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), _TEXT)
    try:
        return _float_text(array) if pa.types.is_floating(array.type) else pc.cast(array, _TEXT)
    except pa.ArrowException as exc:
        raise JoinError(
            f"on= column {column!r} of type {array.type} cannot be compared as text: {exc}",
            hint="Choose on= columns of text, integer or boolean values.",
        ) from exc


def _float_text(array: pa.Array) -> pa.Array:
    # NaN is "missing" in pandas and never equal to itself, so it must never match.
    real = pc.if_else(pc.is_nan(array), pa.scalar(None, array.type), array)
    # Integral floats are written as integers so 3.0 in one frame matches 3 in the other.
    integral = pc.and_(pc.equal(pc.floor(real), real), pc.less(pc.abs(real), 2.0**63))
    as_int = pc.cast(pc.if_else(integral, real, pa.scalar(0, array.type)), pa.int64())
    return pc.if_else(integral, pc.cast(as_int, _TEXT), pc.cast(real, _TEXT))


def _composite_key(parts: Sequence[pa.Array]) -> pa.Array:
    """One text key per row; null as soon as one part is null, so a partial match never counts."""
    if len(parts) == 1:
        return parts[0]
    # Length-prefix every part ("3:abc") so ("a:b", "c") and ("a", "b:c") cannot collide.
    framed = [
        pc.binary_join_element_wise(
            pc.cast(pc.utf8_length(part), _TEXT), part, pa.scalar(":", _TEXT)
        )
        for part in parts
    ]
    return pc.binary_join_element_wise(*framed, pa.scalar("", _TEXT))


def _check_unambiguous(
    caller_keys: pa.Array, record_ids: pa.Array, on: Sequence[str], parts: Sequence[pa.Array]
) -> None:
    """Refuse ``on`` values shared by different records: their outputs cannot be told apart."""
    pairs = pa.table({"on": caller_keys, "record": record_ids}).filter(pc.is_valid(caller_keys))
    counts = pairs.group_by("on").aggregate([("record", "count_distinct")])
    shared = counts.filter(pc.greater(counts["record_count_distinct"], 1))
    if shared.num_rows == 0:
        return
    first_row = pc.index(caller_keys, shared["on"][0]).as_py()
    example = {name: part[first_row].as_py() for name, part in zip(on, parts, strict=True)}
    raise JoinError(
        f"on={list(on)} does not identify a record: {shared.num_rows} set(s) of values belong to "
        f"several different records (for example {example}), so the workflow's output for them "
        "cannot be attributed",
        hint="Add columns to on=[...] until they identify each record, or keep the "
        f"{ROW_KEY!r} column in the workflow's output.",
    )


# -- matching ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Matches:
    """Output rows grouped by the caller key they match.

    Run ``r`` is ``sorted_output[run_offsets[r]:run_offsets[r + 1]]``: the positions of the output
    rows of one key, in output order. ``caller_run[i]`` is caller row i's run (null: no output).
    """

    caller_run: pa.Array
    run_offsets: pa.Array
    sorted_output: pa.Array
    output_extra: int
    output_duplicated: int


def _match(caller_keys: pa.Array, output_keys: pa.Array) -> _Matches:
    return _match_unique(caller_keys, output_keys) or _match_general(caller_keys, output_keys)


def _match_general(caller_keys: pa.Array, output_keys: pa.Array) -> _Matches:
    # The caller's distinct keys get integer codes; each output key is looked up among them
    # (null: an extra row). Every lookup goes into a set without duplicates, so no result depends
    # on which of several equal values a hash table happens to report.
    encoded = pc.dictionary_encode(caller_keys)  # a null key gets a null code: it never matches
    output_codes = pc.index_in(output_keys, value_set=encoded.dictionary, skip_nulls=True)
    # sort_indices is stable, so output order is kept within a key; null codes sort last.
    order = pc.sort_indices(output_codes)
    runs = pc.run_end_encode(output_codes.take(order))  # one run per distinct code
    run_offsets = pa.concat_arrays([pa.array([0], pa.int32()), runs.run_ends.cast(pa.int32())])
    rows_matched = len(output_codes) - output_codes.null_count
    keys_matched = len(runs.values) - runs.values.null_count
    return _Matches(
        caller_run=pc.index_in(encoded.indices, value_set=runs.values, skip_nulls=True),
        run_offsets=run_offsets,
        sorted_output=order,
        output_extra=output_codes.null_count,
        output_duplicated=rows_matched - keys_matched,
    )


def _match_unique(caller_keys: pa.Array, output_keys: pa.Array) -> _Matches | None:
    """The usual case in one lookup: each output row has its own key, wanted by some caller row.

    None when that is not so; `_match_general` then finds the same matches the long way.
    """
    if output_keys.null_count or len(output_keys) > len(caller_keys):
        return None  # some output row is null, or cannot be the only one of its caller key
    found = _lookup(caller_keys, output_keys)
    if found is None:
        return None
    wanted = np.zeros(len(output_keys), dtype=bool)
    wanted[found.drop_null().to_numpy()] = True
    # A repeated output key leaves all its rows but one unwanted (a lookup gives one row per
    # key), so with every row wanted, all keys are distinct and all matched.
    if not wanted.all():
        return None
    rows = pa.array(np.arange(len(output_keys) + 1, dtype=np.int32))
    return _Matches(  # one run per output row
        caller_run=found,
        run_offsets=rows,
        sorted_output=rows.slice(0, len(output_keys)),
        output_extra=0,
        output_duplicated=0,
    )


def _lookup(caller_keys: pa.Array, output_keys: pa.Array) -> pa.Array | None:
    """The output row of each caller key (null: none), or None after a hash collision."""
    caller_words, output_words = _key_words(caller_keys), _key_words(output_keys)
    if caller_words is None or output_words is None or caller_words[0] != output_words[0]:
        return pc.index_in(caller_keys, value_set=output_keys, skip_nulls=True)
    # Row keys have one length, so they fit a few 8-byte words: hashing those into numbers and
    # finding the numbers by sorting costs less than half of looking the strings up in Arrow's
    # hash table (about 0.2 s against 0.55 s for a million keys).
    caller_sorted, output_sorted = map_columns(  # numpy sorts without holding the GIL
        _sorted_hashes, [caller_words[1], output_words[1]], rows=len(caller_keys), workers=2
    )
    found = _find_sorted(caller_sorted, output_sorted)
    # Different keys may share a hash: every key found must equal the key it was found as.
    caller, output = caller_words[1], output_words[1]
    if found.null_count:
        valid = found.is_valid().to_numpy(zero_copy_only=False)
        caller, rows = caller[valid], found.drop_null().to_numpy()
    else:
        rows = found.to_numpy()
    return found if np.array_equal(caller, np.take(output, rows, axis=0)) else None


_Words = tuple[int, "npt.NDArray[np.uint64]"]
_MULTIPLIER: Final = np.uint64(0x9E3779B97F4A7C15)  # odd, so multiplying loses nothing (2**64/φ)


def _key_words(keys: pa.Array) -> _Words | None:
    """The byte length of all keys and each key as zero-padded 8-byte words; None if lengths vary."""
    if keys.null_count or len(keys) == 0:
        return None
    offsets, data = string_bytes(keys)
    lengths = np.diff(offsets)
    width = int(lengths[0])
    if width == 0 or (lengths != width).any():
        return None
    words = np.zeros((len(keys), -(-width // 8) * 8), dtype=np.uint8)
    words[:, :width] = data.reshape(len(keys), width)
    return width, words.view(np.uint64)


_Sorted = tuple["npt.NDArray[np.intp]", "npt.NDArray[np.uint64]"]


def _sorted_hashes(words: npt.NDArray[np.uint64]) -> _Sorted:
    """The order that sorts the keys' hashes, and the hashes in that order."""
    hashes = _hash(words)
    order = np.argsort(hashes)
    return order, hashes[order]


def _find_sorted(caller: _Sorted, output: _Sorted) -> pa.Array:
    """The position of each caller hash among the output hashes (null: absent).

    For a hash found several times in the output, any one of its positions.
    """
    (caller_order, caller_sorted), (output_order, output_sorted) = caller, output
    # Sorted needles make searchsorted walk forward through memory instead of jumping about.
    at = np.minimum(np.searchsorted(output_sorted, caller_sorted), len(output_sorted) - 1)
    rows = np.empty(len(caller_order), dtype=np.int32)
    rows[caller_order] = output_order[at]
    found = output_sorted[at] == caller_sorted
    if found.all():
        return pa.array(rows)
    absent = np.empty(len(caller_order), dtype=bool)
    absent[caller_order] = ~found
    return pa.array(rows, mask=absent)


def _hash(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    # Equal keys always get equal hashes; a collision only costs the slower path.
    hashed = words[:, 0] * _MULTIPLIER
    for column in range(1, words.shape[1]):
        hashed = (hashed ^ words[:, column]) * _MULTIPLIER
    return hashed ^ (hashed >> np.uint64(29))


# -- which output values go to which returned row ---------------------------------------------

_Gather = Callable[[pa.ChunkedArray], pa.Array]


def _selection(matches: _Matches, multiple: Multiple) -> tuple[pa.Array | None, _Gather]:
    """The caller rows to return (None: all, as they are) and how to gather an output column."""
    if multiple == "first":
        starts = matches.run_offsets.slice(0, len(matches.run_offsets) - 1)
        first = matches.sorted_output.take(starts.take(matches.caller_run))
        return None, lambda values: values.take(first)
    lists = _output_lists(matches)
    if multiple == "list":
        return None, lambda values: _gather_lists(values, lists)
    # A caller row without output is kept once, with nulls: give it a one-element [null] list.
    filled = pc.fill_null(lists, pa.scalar([None], type=lists.type))
    caller_rows = pc.list_parent_indices(filled)
    output_rows = pc.list_flatten(filled)
    return caller_rows, lambda values: values.take(output_rows)


def _output_lists(matches: _Matches) -> pa.Array:
    """Per caller row, the list of its output rows in output order (null when it has none)."""
    per_run = pa.ListArray.from_arrays(matches.run_offsets, matches.sorted_output)
    return per_run.take(matches.caller_run)


def _gather_lists(values: pa.ChunkedArray, lists: pa.Array) -> pa.Array:
    lengths = pc.fill_null(pc.list_value_length(lists), 0)
    offsets = pa.concat_arrays(
        [pa.array([0], pa.int32()), pc.cumulative_sum(lengths).cast(pa.int32())]
    )
    items = values.take(pc.list_flatten(lists)).combine_chunks()
    return pa.ListArray.from_arrays(offsets, items, mask=pc.is_null(lists))


def _status_arrays(
    record_ids: pa.Array,
    row_status: Mapping[str, tuple[str, str | None]],
    matches: _Matches,
    caller_rows: pa.Array | None,
) -> list[pa.Array]:
    """The status and error message of each returned row."""
    keys = pa.array(list(row_status), _TEXT)
    given_status = pa.array([status for status, _ in row_status.values()], _TEXT)
    given_error = pa.array([error for _, error in row_status.values()], _TEXT)
    at = pc.index_in(record_ids, value_set=keys)  # a Mapping's keys are unique
    found = pc.if_else(pc.is_valid(matches.caller_run), "ok", "missing").cast(_TEXT)
    status = pc.coalesce(given_status.take(at), found)
    error = given_error.take(at)
    if caller_rows is None:
        return [status, error]
    return [status.take(caller_rows), error.take(caller_rows)]


# -- naming ------------------------------------------------------------------------------------


def _new_column_names(results: pa.Table, echoed: Sequence[str]) -> list[str]:
    skip = set(echoed)
    names = [name for name in results.column_names if name not in skip]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise JoinError(
            f"the workflow's output has several columns named {repeated}",
            hint="Rename the columns in the workflow so each output column has its own name.",
        )
    return names


def _attached_names(
    names: Sequence[str], existing: Sequence[Hashable], on_conflict: OnConflict, suffix: str
) -> list[str]:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        # Output names are unique already, so the repeat is with the row_status columns.
        raise JoinError(
            f"the workflow's output has column(s) {repeated}, which row_status adds as well",
            hint="Rename those columns in the workflow, or do not ask for row statuses.",
        )
    taken = set(existing)
    clashes = [name for name in names if name in taken]
    if clashes and on_conflict == "raise":
        raise JoinError(
            f"the new column(s) {clashes} already exist in the frame",
            hint=f"Pass on_conflict='suffix' to add them as '<name>{suffix}', "
            "on_conflict='overwrite' to replace the frame's values, or rename or drop those "
            "columns of the frame first.",
        )
    if on_conflict != "suffix":
        return list(names)
    final = [name + suffix if name in taken else name for name in names]
    still = [name for name in final if name in taken or final.count(name) > 1]
    if still:
        raise JoinError(
            f"the new column(s) {clashes} clash with the frame's columns, and with "
            f"suffix={suffix!r} they would clash again as {sorted(set(still))}",
            hint="Pass another suffix=, on_conflict='overwrite', or rename the frame's columns.",
        )
    return final


# -- frames ------------------------------------------------------------------------------------


class _Frame:
    """What the join needs from a caller's frame, whatever its library."""

    def __init__(self, native: Any, height: int, labels: list[Hashable]) -> None:
        self.native = native
        self.height = height
        self.labels = labels

    def arrow_column(self, name: str) -> pa.ChunkedArray | pa.Array:
        return nw.from_native(self.native, eager_only=True).get_column(name).to_arrow()

    def attach(self, rows: pa.Array | None, columns: Sequence[tuple[str, pa.Array]]) -> Any:
        raise NotImplementedError


def _adapter_for(frame: object) -> _Frame:
    # The narwhals checks look at already-imported modules, so neither library gets imported here.
    if is_pandas_dataframe(frame):
        return _PandasFrame(frame)
    if is_polars_dataframe(frame):
        return _PolarsFrame(frame)
    if is_polars_lazyframe(frame):
        raise JoinError("join_results needs an eager frame", hint="Collect the LazyFrame first.")
    raise JoinError(f"join_results takes a pandas or Polars DataFrame, not {type(frame).__name__}")


class _PandasFrame(_Frame):
    def __init__(self, frame: pd.DataFrame) -> None:
        import pandas as pd

        if isinstance(frame.columns, pd.MultiIndex):
            raise JoinError(
                "the frame has MultiIndex columns", hint="Flatten the column labels first."
            )
        super().__init__(frame, len(frame), list(frame.columns))

    def attach(self, rows: pa.Array | None, columns: Sequence[tuple[str, pa.Array]]) -> Any:
        import pandas as pd

        frame: pd.DataFrame = self.native
        base = frame if rows is None else frame.take(rows.to_numpy(zero_copy_only=False))
        arrays = {name: _pandas_array(values) for name, values in columns}
        replaced = [name for name in arrays if name in base.columns]
        appended = {name: arr for name, arr in arrays.items() if name not in replaced}
        # The added frame shares the base's index object, so concat aligns nothing: duplicate
        # labels, NaN labels and MultiIndex come back exactly as they were.
        out = pd.concat([base, pd.DataFrame(appended, index=base.index)], axis=1)
        for name in replaced:
            position = out.columns.get_loc(name)
            if not isinstance(position, int):
                raise JoinError(
                    f"cannot overwrite {name!r}: the frame has several columns with that name",
                    hint="Pass on_conflict='suffix' or make the frame's column names unique.",
                )
            out.isetitem(position, arrays[name])  # replaces the column, keeps its position
        out.attrs = copy.deepcopy(frame.attrs)  # concat drops attrs the parts do not share
        return out


def _pandas_array(values: pa.Array | pa.ChunkedArray) -> Any:
    return values.to_pandas(types_mapper=_pandas_dtype).array


def _pandas_dtype(arrow_type: pa.DataType) -> Any:
    import pandas as pd

    nullable = _pandas_nullable_dtypes()
    if arrow_type in nullable:
        return nullable[arrow_type]
    if pa.types.is_timestamp(arrow_type) or pa.types.is_duration(arrow_type):
        return None  # pyarrow's default: datetime64 / timedelta64 with NaT for missing
    return pd.ArrowDtype(arrow_type)


@functools.cache
def _pandas_nullable_dtypes() -> dict[pa.DataType, Any]:
    import pandas as pd

    return {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.UInt8Dtype(),
        pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(),
        pa.uint64(): pd.UInt64Dtype(),
        pa.float32(): pd.Float32Dtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype("pyarrow"),
        pa.large_string(): pd.StringDtype("pyarrow"),
    }


class _PolarsFrame(_Frame):
    def __init__(self, frame: pl.DataFrame) -> None:
        super().__init__(frame, frame.height, list(frame.columns))

    def attach(self, rows: pa.Array | None, columns: Sequence[tuple[str, pa.Array]]) -> Any:
        import polars as pl

        frame: pl.DataFrame = self.native
        base = frame if rows is None else frame[cast("pl.Series", pl.from_arrow(rows))]
        # with_columns replaces a column of the same name in place, which is what "overwrite" means.
        series = [cast("pl.Series", pl.from_arrow(values)).alias(name) for name, values in columns]
        return base.with_columns(series)
