"""Result files → pyarrow tables: CSV quirks, JSON, NDJSON, and types that never lose data."""

from __future__ import annotations

import csv
import io
import itertools
import re
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# -- typing rules: the byte-level checks decide exactly as the regular expressions say ----------

INT_RULE = re.compile(r"-?(0|[1-9][0-9]{0,17})")
FLOAT_RULE = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
BOOL_RULE = re.compile(r"true|false|True|False|TRUE|FALSE")


def typed_by_the_rules(values: list[str | None]) -> list[Any]:
    """The rules of the module docstring, in plain Python."""
    present = [v for v in values if v is not None]
    if not present:
        return values
    for rule, convert in ((INT_RULE, int), (FLOAT_RULE, float)):
        if all(rule.fullmatch(v) for v in present):
            return [None if v is None else convert(v) for v in values]
    if all(BOOL_RULE.fullmatch(v) for v in present):
        return [None if v is None else v.lower() == "true" for v in values]
    return values


TRICKY = [
    "0", "-0", "00", "01", "-01", "7", "-7", "9" * 18, "-" + "9" * 18, "9" * 19, "1" + "0" * 18,
    "0.5", "-0.5", "00.5", "10.25", "1.", ".5", "-.5", "1.2.3", "1e5", "1E-3", "-2.5e+10", "1e",
    "1e+", "1e5.3", "+1", "--1", "-", "", " 1", "1 ", "inf", "nan", "1_000", "0x1F", "١٢",
    "true", "false", "True", "FALSE", "tRue", "yes", "t", "1\n",
]  # fmt: skip


@st.composite
def text_columns(draw: st.DrawFn) -> list[str | None]:
    numbers = st.one_of(
        st.integers(-(10**20), 10**20).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    )
    noise = st.text(alphabet="0123456789-+.eE x", max_size=6)
    value = st.one_of(numbers, st.sampled_from(TRICKY), noise, st.none())
    common = draw(st.sampled_from([numbers, st.sampled_from(["true", "False", "TRUE"]), value]))
    return draw(st.lists(st.one_of(common, common, common, value), max_size=12))


@settings(max_examples=400, derandomize=True, deadline=None)
@given(
    values=text_columns(), cuts=st.lists(st.integers(0, 12), max_size=3), sample=st.integers(1, 4)
)
def test_column_types_follow_the_rules(
    values: list[str | None], cuts: list[int], sample: int
) -> None:
    from sixtyfour_frames import _results

    bounds = sorted({0, len(values), *(min(c, len(values)) for c in cuts)})
    column = pa.chunked_array(
        [pa.array(values[a:b], pa.string()) for a, b in itertools.pairwise(bounds)], pa.string()
    )
    # A short sample, so that the full scans are what decides.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_results, "_SAMPLE", sample)
        typed = _results._narrow(column)
    assert with_types(typed.to_pylist()) == with_types(typed_by_the_rules(values))


def with_types(values: list[Any]) -> list[tuple[type, Any]]:
    return [(type(v), v) for v in values]  # 1 == 1.0 == True, but not as a pair with the type


DECIMAL_RULE = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")


@settings(max_examples=300, derandomize=True, deadline=None)
@given(values=text_columns(), extra=st.sampled_from(TRICKY))
def test_byte_checks_agree_with_their_regular_expressions(
    values: list[str | None], extra: str
) -> None:
    from sixtyfour_frames import _results

    # The tricky value last, where a sample would not see it.
    column = pa.chunked_array([pa.array(values, pa.string()), pa.array([extra], pa.string())])
    present = [v for v in [*values, extra] if v is not None]
    assert _results._plain_ints(column) == all(INT_RULE.fullmatch(v) for v in present)
    assert _results._plain_decimals(column) == all(DECIMAL_RULE.fullmatch(v) for v in present)
    assert _results._booleans(column) == all(BOOL_RULE.fullmatch(v) for v in present)


@pytest.mark.parametrize("value", TRICKY)
def test_each_tricky_value_is_typed_by_the_rules(value: str) -> None:
    sink = io.StringIO()
    # Quoted, so that the empty value is an empty string rather than a null.
    csv.writer(sink, quoting=csv.QUOTE_ALL).writerows([["v", "w"], [value, "x"], [value, "y"]])
    table = parse_result(sink.getvalue().encode(), "csv")
    typed = table.column("v").to_pylist()
    assert with_types(typed) == with_types(typed_by_the_rules([value, value]))


def test_a_cell_longer_than_a_read_block_is_read() -> None:
    cell = "line\n" * 400_000  # 2 MB with quoted line breaks: longer than the first try's blocks
    sink = io.StringIO()
    csv.writer(sink).writerows(
        [["__sixtyfour_row", "text", "n"], ["k1", cell, "1"], ["k2", "", "2"]]
    )
    table = parse_result(sink.getvalue().encode(), "csv")
    assert table.column("text").to_pylist() == [cell, None]
    assert table.column("n").to_pylist() == [1, 2]


def test_a_malformed_csv_still_raises_a_parse_error() -> None:
    with pytest.raises(ResultParseError, match="unreadable csv result"):
        parse_result(b"a,b\n1,2\n3,4,5\n", "csv")
