"""Files in and out for the CLI: CSV, Parquet and NDJSON, chosen by extension."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from sixtyfour_frames._errors import InvalidArgumentError

_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}


def _format(path: Path) -> str:
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise InvalidArgumentError(
            f"{path}: unknown file type {path.suffix!r}; use .csv, .parquet or .ndjson."
        ) from None


def read_frame(path: Path) -> Any:
    """A Polars frame (fast, exact types) read from ``path``."""
    import polars as pl

    fmt = _format(path)
    if not path.exists():
        raise InvalidArgumentError(f"{path}: no such file.")
    if fmt == "csv":
        return pl.read_csv(path, infer_schema_length=10_000)
    if fmt == "parquet":
        return pl.read_parquet(path)
    return pl.read_ndjson(path)


def write_frame(frame: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = _format(path)
    if fmt == "csv":
        frame.write_csv(path)
    elif fmt == "parquet":
        frame.write_parquet(path)
    else:
        frame.write_ndjson(path)


def write_table(table: pa.Table, path: Path) -> None:
    import polars as pl

    frame = pl.from_arrow(table)
    write_frame(frame, path)
