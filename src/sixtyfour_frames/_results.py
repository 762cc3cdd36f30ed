"""Downloaded result bytes → ``pyarrow.Table``. No HTTP, no pandas, no Polars.

CSV is parsed as text first and typed afterwards with rules that never lose information: a
column becomes integer only when every value is a plain integer without leading zeros (so ZIP
codes such as ``"01234"`` stay text), float only when every value is a plain decimal, boolean
only for ``true``/``false``. The row key column always stays text.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from sixtyfour_frames._arrow_bytes import string_bytes
from sixtyfour_frames._threads import map_columns

if TYPE_CHECKING:
    import numpy.typing as npt

ResultFormat = Literal["csv", "json", "ndjson"]
RESULT_FORMATS: tuple[ResultFormat, ...] = ("csv", "json", "ndjson")

_BOM = b"\xef\xbb\xbf"
_INT = r"^-?(0|[1-9][0-9]{0,17})$"  # ≤ 18 digits: always fits int64
_FLOAT = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
_BOOL = r"^(true|false|True|False|TRUE|FALSE)$"


class ResultParseError(ValueError):
    """The bytes are not a readable result file of the expected format."""


def parse_result(
    content: bytes, fmt: ResultFormat, *, text_columns: Iterable[str] = ()
) -> pa.Table:
    """Parse one result file; ``text_columns`` are never converted from text."""
    data = content[len(_BOM) :] if content.startswith(_BOM) else content
    try:
        if fmt == "csv":
            return _parse_csv(data, frozenset(text_columns))
        if fmt == "ndjson":
            return _parse_ndjson(data)
        return rows_to_table(_json_rows(data))
    except (pa.ArrowInvalid, ValueError, UnicodeDecodeError) as exc:
        raise ResultParseError(f"unreadable {fmt} result: {exc}") from exc


def rows_to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Inline ``results`` or a JSON array → a table; mixed-type columns fall back to JSON text."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = {name: _column([row.get(name) for row in rows]) for name in names}
    return pa.table(columns) if columns else pa.table({})


def _column(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array(
            [v if v is None or isinstance(v, str) else json.dumps(v) for v in values], pa.string()
        )


def _json_rows(data: bytes) -> list[Mapping[str, Any]]:
    parsed = json.loads(data.decode("utf-8")) if data.strip() else []
    if isinstance(parsed, Mapping):  # some APIs wrap rows: {"results": [...]}
        parsed = parsed.get("results", parsed.get("data", [parsed]))
    if not isinstance(parsed, list) or not all(isinstance(r, Mapping) for r in parsed):
        raise ResultParseError("a JSON result must be an array of objects")
    return parsed


def _parse_ndjson(data: bytes) -> pa.Table:
    if not data.strip():
        return pa.table({})
    lines = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    if not all(isinstance(r, Mapping) for r in lines):
        raise ResultParseError("every NDJSON line must be an object")
    return rows_to_table(lines)


def _parse_csv(data: bytes, text_columns: frozenset[str]) -> pa.Table:
    header = _csv_header(data)
    if not header:
        return pa.table({})
    table = _read_text_csv(data, header)

    def typed(name: str) -> pa.ChunkedArray:
        column = table.column(name)
        return column if name in text_columns or name.startswith("__") else _narrow(column)

    columns = map_columns(typed, table.column_names, rows=table.num_rows)
    return pa.table(dict(zip(table.column_names, columns, strict=True)))


# pyarrow's default 1 MiB blocks parse about twice as fast as 16 MiB ones, but a row longer than a
# block (a long multi-line cell) fails to parse; only such files pay for the big blocks.
_BLOCK: Final = 1 << 20
_BIG_BLOCK: Final = 1 << 24


def _read_text_csv(data: bytes, header: Sequence[str]) -> pa.Table:
    try:
        return _read_csv_blocks(data, header, _BLOCK)
    except pa.ArrowInvalid:
        # Any failure is retried with the big blocks, so errors are the ones they give.
        return _read_csv_blocks(data, header, _BIG_BLOCK)


def _read_csv_blocks(data: bytes, header: Sequence[str], block_size: int) -> pa.Table:
    return pa_csv.read_csv(
        io.BytesIO(data),
        read_options=pa_csv.ReadOptions(use_threads=True, block_size=block_size),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )


def _csv_header(data: bytes) -> list[str]:
    # csv.reader reads lazily: only the first record (which may hold quoted newlines) is decoded.
    head = data[: 1 << 16].decode("utf-8", errors="replace")
    return next(csv.reader(io.StringIO(head)), [])


_SAMPLE = 1_000


def _narrow(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column typed by the module's rules; each rule is decided exactly as its regex says."""
    if column.null_count == len(column):
        return column
    # A text column fails on its first values almost always: test a sample before scanning all.
    # Byte checks, not the regex engine: compiling a pattern costs more than a small file's parse.
    sample = column.slice(0, _SAMPLE)
    first = _first_value(sample)  # one Python check settles the usual text column
    rest = column.slice(_SAMPLE)  # checked only when the sample passes
    if _could_be(_INT, first) and _plain_ints(sample) and _plain_ints(rest):
        return pc.cast(column, pa.int64())
    if _could_be(_FLOAT, first) and _floats(sample) and _floats(rest):
        return pc.cast(column, pa.float64())
    if _could_be(_BOOL, first) and _booleans(sample) and _booleans(rest):
        # Every present value is one of the six words, and only the true ones have 4 letters.
        return pc.equal(pc.binary_length(column), 4)
    return column


def _first_value(values: pa.ChunkedArray) -> str | None:
    present = pc.drop_null(values)
    return cast(str, present[0].as_py()) if len(present) else None


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _could_be(pattern: str, first: str | None) -> bool:
    """False when the first value already fails ``pattern`` (None: no value to test)."""
    return first is None or _compiled(pattern).fullmatch(first) is not None


def _floats(values: pa.ChunkedArray) -> bool:
    """Whether every present value matches `_FLOAT` (the regex only for the rare exponents)."""
    if _plain_decimals(values):
        return True
    return _float_bytes_only(values) and _all_match(values, _FLOAT)


_FLOAT_BYTES: Final = np.zeros(256, dtype=bool)
_FLOAT_BYTES[list(b"0123456789+-.eE")] = True


def _float_bytes_only(values: pa.ChunkedArray) -> bool:
    """False when some byte cannot be part of a number: text fails here, not in the regex."""
    return all(_FLOAT_BYTES[_spans(chunk)[2]].all() for chunk in _present_chunks(values))


def _all_match(values: pa.ChunkedArray, pattern: str) -> bool:
    # Nulls are skipped; a sample with no value at all passes, leaving it to the full scan.
    return bool(pc.all(pc.match_substring_regex(values, pattern), min_count=0).as_py())


_ZERO: Final = ord("0")
_MINUS: Final = ord("-")
_BOOL_WORDS: Final = pa.array(["true", "false", "True", "False", "TRUE", "FALSE"], pa.string())


def _plain_ints(column: pa.ChunkedArray) -> bool:
    """Whether every present value matches `_INT`: ``-?(0|[1-9][0-9]{0,17})``."""
    return all(_plain_int_chunk(chunk) for chunk in _present_chunks(column))


def _plain_int_chunk(array: pa.Array) -> bool:
    starts, ends, data = _spans(array)
    lengths = ends - starts
    if lengths.min() < 1:
        return False
    minus = data[starts] == _MINUS
    digits = lengths - minus
    if digits.min() < 1 or digits.max() > 18:
        return False
    # The only bytes that are not digits must be the leading minus signs.
    if _non_digits(data) != np.count_nonzero(minus):
        return False
    leading_zero = (data[starts + minus] == _ZERO) & (digits > 1)
    return not leading_zero.any()


def _plain_decimals(column: pa.ChunkedArray) -> bool:
    """Whether every present value is ``-?(0|[1-9][0-9]*)(\\.[0-9]+)?``: `_FLOAT` without exponent.

    False says nothing: the caller then asks the regex (exponents are rare, and slow to check here).
    """
    return all(_plain_decimal_chunk(chunk) for chunk in _present_chunks(column))


def _plain_decimal_chunk(array: pa.Array) -> bool:
    starts, ends, data = _spans(array)
    lengths = ends - starts
    if lengths.min() < 1:
        return False
    minus = data[starts] == _MINUS
    dot = pc.find_substring(array, ".").to_numpy()  # the first dot in the value; -1: none
    has_dot = dot >= 0
    # Those first dots and the leading minus signs must be all the bytes that are not digits.
    if _non_digits(data) != np.count_nonzero(has_dot) + np.count_nonzero(minus):
        return False
    whole = np.where(has_dot, dot, lengths) - minus  # digits before the dot
    if whole.min() < 1 or (has_dot & (dot >= lengths - 1)).any():
        return False
    return not ((data[starts + minus] == _ZERO) & (whole > 1)).any()


def _booleans(column: pa.ChunkedArray) -> bool:
    """Whether every present value matches `_BOOL` (a null is never in the set)."""
    hits = pc.sum(pc.is_in(column, value_set=_BOOL_WORDS)).as_py() or 0
    return bool(hits == len(column) - column.null_count)


def _non_digits(data: npt.NDArray[np.uint8]) -> int:
    # uint8 arithmetic wraps, so every byte below "0" lands above 9 too.
    return int(np.count_nonzero((data - _ZERO) > 9))


def _present_chunks(column: pa.ChunkedArray) -> Iterator[pa.Array]:
    # Chunk by chunk (a read block each), the temporary arrays stay small and in the CPU's cache.
    for chunk in column.chunks:
        # A null's bytes are unspecified, so they must not be scanned.
        present = chunk.drop_null() if chunk.null_count else chunk
        if len(present):
            yield present


def _spans(
    array: pa.Array,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """Start and end of every value of a string array without nulls, in ``data``: its bytes."""
    offsets, data = string_bytes(array)
    return offsets[:-1], offsets[1:], data


def is_parseable_format(fmt: str) -> bool:
    return fmt in RESULT_FORMATS
