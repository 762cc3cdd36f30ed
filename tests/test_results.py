"""Result files → pyarrow tables: CSV quirks, JSON, NDJSON, and types that never lose data."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sixtyfour_frames._results import ResultParseError, parse_result, rows_to_table

CSV = (
    b"\xef\xbb\xbf__sixtyfour_row,company_name,zip,employees,score,public,notes\r\n"
    b'k0001,"Acme, Inc.",01234,120,0.5,true,"line one\r\nline ""two"""\r\n'
    b"k0002,Globex,94105,,1e3,false,\r\n"
)


def test_csv_with_bom_multiline_cells_and_safe_types() -> None:
    table = parse_result(CSV, "csv")
    assert table.column_names[0] == "__sixtyfour_row"  # the BOM is gone from the first name
    assert table.to_pylist() == [
        {
            "__sixtyfour_row": "k0001",
            "company_name": "Acme, Inc.",
            "zip": "01234",
            "employees": 120,
            "score": 0.5,
            "public": True,
            "notes": 'line one\r\nline "two"',
        },
        {
            "__sixtyfour_row": "k0002",
            "company_name": "Globex",
            "zip": "94105",
            "employees": None,
            "score": 1000.0,
            "public": False,
            "notes": None,
        },
    ]
    assert table.schema.field("zip").type == pa.string()  # leading zeros keep it text
    assert table.schema.field("employees").type == pa.int64()


def test_digit_only_keys_stay_text() -> None:
    table = parse_result(b"__sixtyfour_row,x\n0012,1\n0013,2\n", "csv")
    assert table.column("__sixtyfour_row").to_pylist() == ["0012", "0013"]


def test_empty_csv_is_an_empty_table() -> None:
    assert parse_result(b"", "csv").num_rows == 0
    assert parse_result(b"a,b\n", "csv").column_names == ["a", "b"]


def test_json_array_and_ndjson() -> None:
    expected = [{"a": 1, "b": "x", "c": None}, {"a": None, "b": "y\nz", "c": [1, 2]}]
    json_table = parse_result(b'[{"a":1,"b":"x"},{"a":null,"b":"y\\nz","c":[1,2]}]', "json")
    nd_table = parse_result(b'{"a":1,"b":"x"}\n{"a":null,"b":"y\\nz","c":[1,2]}\n', "ndjson")
    assert json_table.to_pylist() == nd_table.to_pylist() == expected


def test_mixed_types_fall_back_to_text_instead_of_failing() -> None:
    table = rows_to_table([{"v": 1}, {"v": "one"}, {"v": {"n": 1}}])
    assert table.column("v").to_pylist() == ["1", "one", '{"n": 1}']


@pytest.mark.parametrize(
    ("content", "fmt"), [(b"{not json", "json"), (b"[1,2]", "json"), (b"[1]\n", "ndjson")]
)
def test_unreadable_files_raise_a_parse_error(content: bytes, fmt: str) -> None:
    with pytest.raises(ResultParseError):
        parse_result(content, fmt)  # type: ignore[arg-type]
