"""Downloaded result bytes → ``pyarrow.Table``. No HTTP, no pandas, no Polars.

CSV is parsed as text first and typed afterwards with rules that never lose information: a
column becomes integer only when every value is a plain integer without leading zeros (so ZIP
codes such as ``"01234"`` stay text), float only when every value is a plain decimal, boolean
only for ``true``/``false``. The row key column always stays text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

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
    table = pa_csv.read_csv(
        io.BytesIO(data),
        read_options=pa_csv.ReadOptions(use_threads=True, block_size=1 << 24),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    return pa.table(
        {
            name: column if name in text_columns or name.startswith("__") else _narrow(column)
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    )


def _csv_header(data: bytes) -> list[str]:
    # csv.reader reads lazily: only the first record (which may hold quoted newlines) is decoded.
    head = data[: 1 << 16].decode("utf-8", errors="replace")
    return next(csv.reader(io.StringIO(head)), [])


_SAMPLE = 1_000


def _narrow(column: pa.ChunkedArray) -> pa.ChunkedArray:
    present = pc.drop_null(column)
    if len(present) == 0:
        return column
    # A text column fails on its first values almost always: test a sample before scanning all.
    sample = present.slice(0, _SAMPLE)
    for pattern, target in ((_INT, pa.int64()), (_FLOAT, pa.float64())):
        if _all_match(sample, pattern) and _all_match(present, pattern):
            return pc.cast(column, target)
    if _all_match(sample, _BOOL) and _all_match(present, _BOOL):
        return pc.equal(pc.utf8_lower(column), "true")
    return column


def _all_match(values: pa.ChunkedArray, pattern: str) -> bool:
    return bool(pc.all(pc.match_substring_regex(values, pattern)).as_py())


def is_parseable_format(fmt: str) -> bool:
    return fmt in RESULT_FORMATS
