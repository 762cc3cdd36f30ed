"""Result files: rows rendered as CSV (RFC 4180), JSON or NDJSON bytes.

CSV has a header row, CRLF line ends, and quotes exactly the cells that need it (a comma, a double
quote, CR or LF), so multi-line text stays one cell. Values: null → empty cell, booleans →
``true``/``false``, numbers as JSON writes them, nested lists and objects as compact JSON.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

Record = dict[str, Any]

CSV = "csv"
JSON = "json"
NDJSON = "ndjson"
FORMATS = (CSV, JSON, NDJSON)
CONTENT_TYPES = {CSV: "text/csv", JSON: "application/json", NDJSON: "application/x-ndjson"}
UTF8_BOM = b"\xef\xbb\xbf"


def columns_of(rows: Sequence[Record], fallback: Sequence[str] = ()) -> list[str]:
    """Every key of every row, in first-seen order; ``fallback`` when there are no rows."""
    if not rows:
        return list(fallback)
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def render(rows: Sequence[Record], columns: Sequence[str], fmt: str) -> bytes:
    """The bytes of a result file in ``fmt`` (UTF-8, never a BOM: see :func:`with_bom`)."""
    if fmt == CSV:
        return _csv(rows, columns)
    if fmt == JSON:
        return json.dumps(list(rows), ensure_ascii=False).encode("utf-8")
    if fmt == NDJSON:
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    raise ValueError(f"unknown result format {fmt!r}")


def with_bom(content: bytes) -> bytes:
    """Prefix a UTF-8 byte-order mark, as some spreadsheet-oriented exports do."""
    return UTF8_BOM + content


def _csv(rows: Sequence[Record], columns: Sequence[str]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return buffer.getvalue().encode("utf-8")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
