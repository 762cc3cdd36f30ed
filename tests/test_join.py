"""The join-back: output rows matched to caller rows by key, never by position.

Results tables are built by hand (the join does no I/O). Every behaviour is checked on pandas and
Polars frames alike; pandas-only concerns (index, nullable dtypes, attrs) have their own tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import pandas as pd
import polars as pl
import polars.testing
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sixtyfour_frames._errors import JoinError
from sixtyfour_frames._join import (
    ERROR_COLUMN,
    ROW_KEY,
    STATUS_COLUMN,
    JoinStats,
    Multiple,
    join_results,
)

Lib = Literal["pandas", "polars"]
LIBS: tuple[Lib, ...] = ("pandas", "polars")


# -- helpers -----------------------------------------------------------------------------------


def make_frame(lib: Lib, data: dict[str, list[Any]], index: pd.Index[Any] | None = None) -> Any:
    if lib == "pandas":
        return pd.DataFrame(data, index=index)
    return pl.DataFrame(data)


def values(frame: Any, name: str) -> list[Any]:
    """A column as plain Python values, None for missing, whatever the frame library."""
    if isinstance(frame, pl.DataFrame):
        return frame.get_column(name).to_list()
    return pa.array(frame[name], from_pandas=True).to_pylist()  # type: ignore[no-any-return]


def assert_same_frame(left: Any, right: Any) -> None:
    """Exactly equal: values, dtypes, column order and (pandas) index."""
    if isinstance(left, pl.DataFrame):
        polars.testing.assert_frame_equal(left, right)
    else:
        pd.testing.assert_frame_equal(left, right, check_exact=True)


def copy_of(frame: Any) -> Any:
    return frame.clone() if isinstance(frame, pl.DataFrame) else frame.copy(deep=True)


def original_part(out: Any, frame: Any) -> Any:
    return out.select(frame.columns) if isinstance(out, pl.DataFrame) else out[list(frame.columns)]


# Three distinct records; rows 0 and 3 are the same record, so they share a key.
RECORDS: dict[str, list[Any]] = {
    "name": ["acme", "globex", "initech", "acme"],
    "size": [10, 20, 30, 10],
}
KEYS = ["ka", "kg", "ki", "ka"]


def results_table(rows: Sequence[tuple[str | None, int]], *, echo: bool = True) -> pa.Table:
    """Output rows (key, score); ``echo`` adds the echoed ``name`` input field."""
    names = {"ka": "acme", "kg": "globex", "ki": "initech"}
    data: dict[str, Any] = {ROW_KEY: pa.array([key for key, _ in rows], pa.string())}
    if echo:
        data["name"] = pa.array([names.get(key or "") for key, _ in rows], pa.string())
    data["score"] = pa.array([score for _, score in rows], pa.int64())
    return pa.table(data)


def join(lib: Lib, results: pa.Table, **options: Any) -> tuple[Any, JoinStats]:
    frame = make_frame(lib, RECORDS)
    return join_results(frame, results, row_keys=KEYS, sent_columns=["name", "size"], **options)


# -- matching on the row key ---------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
def test_shuffled_output_is_matched_by_key(lib: Lib) -> None:
    out, stats = join(lib, results_table([("ki", 3), ("ka", 1), ("kg", 2)]))
    assert values(out, "score") == [1, 2, 3, 1]
    assert stats == JoinStats(
        rows_in=4,
        rows_matched=4,
        rows_missing=0,
        output_rows=3,
        output_extra=0,
        output_duplicated=0,
        new_columns=("score",),
        rows_out=4,
    )


@pytest.mark.parametrize("lib", LIBS)
def test_filtered_rows_get_nulls_and_are_counted(lib: Lib) -> None:
    out, stats = join(lib, results_table([("kg", 2)]))
    assert values(out, "score") == [None, 2, None, None]
    assert (stats.rows_matched, stats.rows_missing) == (1, 3)


@pytest.mark.parametrize("lib", LIBS)
def test_duplicated_output_rows_keep_the_first_in_output_order(lib: Lib) -> None:
    out, stats = join(lib, results_table([("kg", 2), ("ka", 1), ("kg", 99), ("ki", 3), ("ka", 7)]))
    assert values(out, "score") == [1, 2, 3, 1]
    assert (stats.output_rows, stats.output_duplicated, stats.output_extra) == (5, 2, 0)


@pytest.mark.parametrize("lib", LIBS)
def test_identical_records_share_their_output(lib: Lib) -> None:
    out, stats = join(lib, results_table([("ka", 5)]))
    assert values(out, "score") == [5, None, None, 5]
    assert stats.rows_matched == 2


@pytest.mark.parametrize("lib", LIBS)
def test_extra_output_rows_are_counted_not_attached(lib: Lib) -> None:
    out, stats = join(lib, results_table([("zz", 8), (None, 9), ("kg", 2), ("zz", 8)]))
    assert values(out, "score") == [None, 2, None, None]
    assert (stats.output_rows, stats.output_extra, stats.output_duplicated) == (4, 3, 0)
    assert stats.rows_out == 4


@pytest.mark.parametrize("lib", LIBS)
def test_counts_add_up(lib: Lib) -> None:
    _, stats = join(lib, results_table([("ka", 1), ("zz", 0), ("ka", 2), (None, 0), ("kg", 3)]))
    distinct_matched_keys = 2
    assert stats.output_rows == distinct_matched_keys + stats.output_extra + stats.output_duplicated
    assert stats.rows_matched + stats.rows_missing == stats.rows_in


@pytest.mark.parametrize("lib", LIBS)
def test_empty_output_leaves_every_row_missing(lib: Lib) -> None:
    out, stats = join(lib, results_table([]))
    assert values(out, "score") == [None] * 4
    assert (stats.rows_missing, stats.output_rows) == (4, 0)


@pytest.mark.parametrize("lib", LIBS)
def test_output_without_new_columns_adds_nothing(lib: Lib) -> None:
    out, stats = join(lib, results_table([("ka", 1)]).drop_columns(["score"]))
    assert list(out.columns) == ["name", "size"]
    assert stats.new_columns == ()


@pytest.mark.parametrize("multiple", ["list", "explode"])
@pytest.mark.parametrize("lib", LIBS)
def test_empty_output_with_list_and_explode(lib: Lib, multiple: Multiple) -> None:
    out, stats = join(lib, results_table([]), multiple=multiple)
    assert values(out, "score") == [None] * 4
    assert stats.rows_out == 4


# -- one-to-many ---------------------------------------------------------------------------------

ONE_TO_MANY = [("kg", 20), ("ka", 10), ("kg", 21), ("ka", 11), ("ka", 12)]


@pytest.mark.parametrize("lib", LIBS)
def test_one_to_many_first(lib: Lib) -> None:
    out, stats = join(lib, results_table(ONE_TO_MANY), multiple="first")
    assert values(out, "score") == [10, 20, None, 10]
    assert (stats.output_duplicated, stats.rows_out) == (3, 4)


@pytest.mark.parametrize("lib", LIBS)
def test_one_to_many_list(lib: Lib) -> None:
    out, stats = join(lib, results_table(ONE_TO_MANY), multiple="list")
    assert values(out, "score") == [[10, 11, 12], [20, 21], None, [10, 11, 12]]
    assert stats.rows_out == 4


@pytest.mark.parametrize("lib", LIBS)
def test_one_to_many_explode(lib: Lib) -> None:
    out, stats = join(lib, results_table(ONE_TO_MANY), multiple="explode")
    assert values(out, "name") == ["acme"] * 3 + ["globex"] * 2 + ["initech"] + ["acme"] * 3
    assert values(out, "score") == [10, 11, 12, 20, 21, None, 10, 11, 12]
    assert (stats.rows_in, stats.rows_out, stats.rows_matched) == (4, 9, 3)


def test_explode_repeats_pandas_index_labels() -> None:
    frame = pd.DataFrame(RECORDS, index=pd.Index(["w", "x", "y", "x"]))
    out, _ = join_results(
        frame,
        results_table(ONE_TO_MANY),
        row_keys=KEYS,
        sent_columns=["name"],
        multiple="explode",
    )
    assert list(out.index) == ["w", "w", "w", "x", "x", "y", "x", "x", "x"]
    pd.testing.assert_frame_equal(out[["name", "size"]], frame.take([0, 0, 0, 1, 1, 2, 3, 3, 3]))


def test_list_columns_use_arrow_dtypes_in_pandas() -> None:
    out, _ = join("pandas", results_table(ONE_TO_MANY), multiple="list")
    assert out["score"].dtype == pd.ArrowDtype(pa.list_(pa.int64()))


# -- matching on on= columns when the key was dropped -------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
def test_dropped_key_without_on_raises_a_clear_error(lib: Lib) -> None:
    results = results_table([("ka", 1)]).drop_columns([ROW_KEY])
    with pytest.raises(JoinError, match=r"dropped the row key") as caught:
        join(lib, results)
    assert "on=[" in str(caught.value)
    assert "position" in str(caught.value)


@pytest.mark.parametrize("lib", LIBS)
def test_dropped_key_matches_on_columns(lib: Lib) -> None:
    results = results_table([("ki", 3), ("kg", 2), ("ka", 1)]).drop_columns([ROW_KEY])
    out, stats = join(lib, results, on=["name"])
    assert values(out, "score") == [1, 2, 3, 1]
    assert stats.rows_matched == 4


@pytest.mark.parametrize("lib", LIBS)
def test_on_columns_are_found_under_their_wire_names(lib: Lib) -> None:
    frame = make_frame(lib, {"Company Name": ["acme", "globex"]})
    results = pa.table({"company": ["globex", "acme"], "score": [2, 1]})
    out, stats = join_results(
        frame,
        results,
        row_keys=["k1", "k2"],
        sent_columns=["company"],
        on=["Company Name"],
        rename={"Company Name": "company"},
    )
    assert values(out, "score") == [1, 2]
    assert stats.new_columns == ("score",)


ON_VALUES: dict[str, list[Any]] = {
    "id": [3.0, 4.5, None, 7.0, float("nan")],
    "zip": ["00123", "x", None, "7", "n"],
    "flag": [True, False, True, None, False],
}


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        # Ints and floats by value; null and NaN never match, not even the output's nulls.
        ("id", [1, None, None, 3, None]),
        # Strings exactly: "00123" is not 123 (reported missing, never matched wrongly).
        ("zip", [None, None, None, 3, None]),
        ("flag", [1, None, 1, None, None]),
    ],
)
@pytest.mark.parametrize("lib", LIBS)
def test_on_values_compare_as_normalised_text(lib: Lib, column: str, expected: list[Any]) -> None:
    frame = make_frame(lib, ON_VALUES)
    results = pa.table(
        {
            "id": pa.array([3, None, 7, None], pa.int64()),  # 4.5 is not in the output
            "zip": pa.array([123, None, 7, None], pa.int64()),  # parsed as numbers downstream
            "flag": pa.array(["true", None, None, None]),
            "v": [1, 2, 3, 4],
        }
    )
    # Records with equal on= values are one record here, as their content hash would say.
    keys = [f"k{value!r}" for value in ON_VALUES[column]]
    out, _ = join_results(frame, results, row_keys=keys, sent_columns=list(ON_VALUES), on=[column])
    assert values(out, "v") == expected


@pytest.mark.parametrize("lib", LIBS)
def test_several_on_columns_must_all_match(lib: Lib) -> None:
    frame = make_frame(lib, {"a": ["x:y", "x", "x"], "b": ["z", "y:z", "q"]})
    results = pa.table({"a": ["x", "x:y", "x"], "b": ["y:z", "z", None], "v": [2, 1, 9]})
    out, stats = join_results(
        frame, results, row_keys=["k1", "k2", "k3"], sent_columns=["a", "b"], on=["a", "b"]
    )
    assert values(out, "v") == [1, 2, None]
    assert stats.output_extra == 1  # a null part never matches


@pytest.mark.parametrize("lib", LIBS)
def test_on_values_shared_by_different_records_are_refused(lib: Lib) -> None:
    frame = make_frame(lib, {"name": ["acme", "acme"], "city": ["Paris", "Oslo"]})
    results = pa.table({"name": ["acme"], "v": [1]})
    with pytest.raises(JoinError, match=r"does not identify a record.*'name': 'acme'"):
        join_results(
            frame, results, row_keys=["k1", "k2"], sent_columns=["name", "city"], on=["name"]
        )


@pytest.mark.parametrize("lib", LIBS)
def test_row_key_wins_over_on(lib: Lib) -> None:
    # The echoed names were changed by the workflow; the key still identifies the records.
    results = results_table([("ka", 1), ("kg", 2)])
    results = results.set_column(1, "name", pa.array(["ACME", "GLOBEX"]))
    out, _ = join(lib, results, on=["name"])
    assert values(out, "score") == [1, 2, None, 1]


@pytest.mark.parametrize("lib", LIBS)
def test_unknown_on_columns_are_named(lib: Lib) -> None:
    with pytest.raises(JoinError, match=r"\['nme'\] are not in the frame"):
        join(lib, results_table([]), on=["nme"])
    results = results_table([]).drop_columns([ROW_KEY, "name"])
    with pytest.raises(JoinError, match=r"\['name'\] are not in the workflow's output"):
        join(lib, results, on=["name"])


# -- the caller's frame comes back untouched ----------------------------------------------------


INDEXES: dict[str, Callable[[], pd.Index[Any]]] = {
    "custom": lambda: pd.Index([40, 10, 30, 20], name="id"),
    "duplicate labels": lambda: pd.Index(["a", "b", "a", "a"]),
    "multiindex": lambda: pd.MultiIndex.from_tuples(
        [("x", 1), ("x", 1), ("y", 2), (None, 3)], names=["g", "n"]
    ),
    "datetime": lambda: pd.DatetimeIndex(["2024-01-03", "2024-01-01", "2024-01-02", "NaT"]),
}


@pytest.mark.parametrize("multiple", ["first", "list"])
@pytest.mark.parametrize("index", INDEXES)
def test_pandas_index_is_preserved(index: str, multiple: Multiple) -> None:
    frame = pd.DataFrame(RECORDS, index=INDEXES[index]())
    before = frame.copy(deep=True)
    out, _ = join_results(
        frame,
        results_table([("ki", 3), ("ka", 1)]),
        row_keys=KEYS,
        sent_columns=["name"],
        multiple=multiple,
    )
    pd.testing.assert_index_equal(out.index, frame.index, exact=True)
    pd.testing.assert_frame_equal(out[["name", "size"]], before)
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame itself is not modified


def test_pandas_dtypes_and_attrs_are_preserved() -> None:
    frame = pd.DataFrame(
        {
            "cat": pd.Categorical(["a", "b", "a"]),
            "when": pd.DatetimeIndex(["2024-01-01", "NaT", "2024-03-01"], tz="UTC"),
            "nullable": pd.array([1, None, 3], dtype="Int32"),
            "text": pd.array(["x", None, "z"], dtype="string"),
            "obj": pd.Series([{"a": 1}, None, [1, 2]], dtype=object),
            "u8": pd.Series([1, 2, 3], dtype="uint8"),
        }
    )
    frame.attrs["origin"] = {"source": "crm"}
    before = frame.copy(deep=True)
    results = pa.table({ROW_KEY: ["k2"], "score": [5]})
    out, _ = join_results(frame, results, row_keys=["k1", "k2", "k3"], sent_columns=["text"])
    pd.testing.assert_frame_equal(out[list(frame.columns)], before, check_exact=True)
    assert out.attrs == {"origin": {"source": "crm"}}


@pytest.mark.parametrize("lib", LIBS)
def test_polars_dtypes_and_order_are_preserved(lib: Lib) -> None:
    frame = pl.DataFrame(
        {
            "z": [3, 1, 2],
            "cat": pl.Series(["a", "b", "a"], dtype=pl.Categorical),
            "f32": pl.Series([1.5, None, 2.5], dtype=pl.Float32),
        }
    )
    before = frame.clone()
    results = pa.table({ROW_KEY: ["k3", "k1"], "score": [3, 1]})
    out, _ = join_results(frame, results, row_keys=["k1", "k2", "k3"], sent_columns=["z"])
    polars.testing.assert_frame_equal(out.select(frame.columns), before)
    assert out.columns == ["z", "cat", "f32", "score"]
    assert values(out, "score") == [1, None, 3]


def test_new_pandas_columns_use_nullable_dtypes() -> None:
    frame = pd.DataFrame({"name": ["a", "b"]})
    results = pa.table(
        {
            ROW_KEY: ["k1"],
            "count": pa.array([7], pa.int64()),
            "small": pa.array([7], pa.uint8()),
            "rate": pa.array([0.5], pa.float64()),
            "ok": pa.array([True]),
            "email": pa.array(["a@x.com"]),
            "seen": pa.array([1_700_000_000_000_000], pa.timestamp("us", tz="UTC")),
            "day": pa.array([19_000], pa.date32()),
            "empty": pa.nulls(1),
        }
    )
    out, _ = join_results(frame, results, row_keys=["k1", "k2"], sent_columns=["name"])
    dtypes = {name: str(dtype) for name, dtype in out.dtypes.items()}
    assert dtypes == {
        "name": str(frame["name"].dtype),
        "count": "Int64",  # the missing row does not make it float
        "small": "UInt8",
        "rate": "Float64",
        "ok": "boolean",
        "email": "string",
        "seen": "datetime64[us, UTC]",
        "day": "date32[day][pyarrow]",
        "empty": "null[pyarrow]",
    }
    assert out["count"].tolist() == [7, pd.NA]
    assert out["email"].tolist() == ["a@x.com", pd.NA]


@pytest.mark.parametrize("lib", LIBS)
def test_integer_columns_stay_integer_with_missing_rows(lib: Lib) -> None:
    out, _ = join(lib, results_table([("kg", 2)]))
    expected = pl.Int64 if lib == "polars" else pd.Int64Dtype()
    assert out["score"].dtype == expected


# -- name clashes ------------------------------------------------------------------------------


def clash_results() -> pa.Table:
    return pa.table({ROW_KEY: ["kg", "ka"], "size": [200, 100], "score": [2, 1]})


@pytest.mark.parametrize("lib", LIBS)
def test_clash_suffix(lib: Lib) -> None:
    # A sent column's echo is never new; "size" was not sent here, so the output's "size" is new.
    _, stats = join(lib, clash_results())
    assert stats.new_columns == ("score",)
    frame = make_frame(lib, RECORDS)
    out, stats = join_results(
        frame, clash_results(), row_keys=KEYS, sent_columns=["name"], suffix="_new"
    )
    assert list(out.columns) == ["name", "size", "size_new", "score"]
    assert values(out, "size") == [10, 20, 30, 10]
    assert values(out, "size_new") == [100, 200, None, 100]
    assert stats.new_columns == ("size_new", "score")


@pytest.mark.parametrize("lib", LIBS)
def test_clash_suffix_that_clashes_again_raises(lib: Lib) -> None:
    frame = make_frame(lib, {**RECORDS, "size_sixtyfour": [0, 0, 0, 0]})
    with pytest.raises(JoinError, match=r"would clash again as \['size_sixtyfour'\]"):
        join_results(frame, clash_results(), row_keys=KEYS, sent_columns=["name"])


@pytest.mark.parametrize("lib", LIBS)
def test_clash_raise_names_columns_and_options(lib: Lib) -> None:
    frame = make_frame(lib, RECORDS)
    with pytest.raises(JoinError, match=r"\['size'\] already exist") as caught:
        join_results(
            frame, clash_results(), row_keys=KEYS, sent_columns=["name"], on_conflict="raise"
        )
    assert "on_conflict='suffix'" in str(caught.value)
    assert "on_conflict='overwrite'" in str(caught.value)


@pytest.mark.parametrize("lib", LIBS)
def test_clash_overwrite_replaces_values_in_place(lib: Lib) -> None:
    frame = make_frame(lib, {"size": [1, 2, 3, 4], "name": ["a", "g", "i", "a"]})
    out, stats = join_results(
        frame, clash_results(), row_keys=KEYS, sent_columns=["name"], on_conflict="overwrite"
    )
    assert list(out.columns) == ["size", "name", "score"]
    assert values(out, "size") == [100, 200, None, 100]
    assert values(frame, "size") == [1, 2, 3, 4]
    assert stats.new_columns == ("size", "score")


# -- row status ------------------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
def test_row_status_columns(lib: Lib) -> None:
    status = {"ki": ("failed", "block 2 failed: timeout")}
    out, stats = join(lib, results_table([("ka", 1)]), row_status=status)
    assert values(out, STATUS_COLUMN) == ["ok", "missing", "failed", "ok"]
    assert values(out, ERROR_COLUMN) == [None, None, "block 2 failed: timeout", None]
    assert stats.new_columns == ("score", STATUS_COLUMN, ERROR_COLUMN)


@pytest.mark.parametrize("lib", LIBS)
def test_row_status_follows_exploded_rows(lib: Lib) -> None:
    out, _ = join(lib, results_table(ONE_TO_MANY), multiple="explode", row_status={})
    assert values(out, STATUS_COLUMN) == ["ok"] * 5 + ["missing"] + ["ok"] * 3


def test_row_status_columns_are_strings_in_pandas() -> None:
    out, _ = join("pandas", results_table([]), row_status={"ka": ("cancelled", None)})
    assert out[STATUS_COLUMN].dtype == pd.StringDtype("pyarrow")
    assert out[STATUS_COLUMN].tolist() == ["cancelled", "missing", "missing", "cancelled"]


@pytest.mark.parametrize("lib", LIBS)
def test_row_status_clashing_with_an_output_column_is_refused(lib: Lib) -> None:
    results = results_table([("ka", 1)]).append_column(STATUS_COLUMN, pa.array(["done"]))
    with pytest.raises(JoinError, match=r"\['sixtyfour_status'\], which row_status adds"):
        join(lib, results, row_status={})


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"multiple": "all"}, r"multiple='all' is not one of \['first', 'list', 'explode'\]"),
        ({"on_conflict": "keep"}, r"on_conflict='keep' is not one of"),
        ({"row_keys": ["ka"]}, r"row_keys has 1 keys but the frame has 4 rows"),
        ({"row_keys": ["ka", None, "ki", "ka"]}, r"null keys"),
        ({"row_keys": [1, 2, 3, 4]}, r"row_keys must be strings"),
        ({"sent_columns": "name"}, r"sent_columns must be a list of column names"),
        ({"on": []}, r"on=\[\] names no column"),
    ],
)
@pytest.mark.parametrize("lib", LIBS)
def test_bad_arguments_say_what_to_do(lib: Lib, options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"row_keys": KEYS, "sent_columns": ["name"], **options}
    with pytest.raises(JoinError, match=message):
        join_results(make_frame(lib, RECORDS), results_table([]), **arguments)


def test_lazy_frames_and_other_objects_are_refused() -> None:
    lazy: Any = pl.DataFrame(RECORDS).lazy()
    with pytest.raises(JoinError, match="Collect the LazyFrame first"):
        join_results(lazy, results_table([]), row_keys=KEYS, sent_columns=[])
    records: Any = dict(RECORDS)
    with pytest.raises(JoinError, match="pandas or Polars DataFrame, not dict"):
        join_results(records, results_table([]), row_keys=KEYS, sent_columns=[])
    with pytest.raises(JoinError, match=r"pyarrow\.Table, not dict"):
        join_results(pd.DataFrame(RECORDS), records, row_keys=KEYS, sent_columns=[])


def test_duplicate_output_column_names_are_refused() -> None:
    results = pa.Table.from_arrays(
        [pa.array(["ka"]), pa.array([1]), pa.array([2])], names=[ROW_KEY, "v", "v"]
    )
    with pytest.raises(JoinError, match=r"several columns named \['v'\]"):
        join_results(pd.DataFrame(RECORDS), results, row_keys=KEYS, sent_columns=[])


def test_overwrite_of_a_repeated_pandas_column_is_refused() -> None:
    frame = pd.DataFrame([[1, 2, "acme"]], columns=["size", "size", "name"])
    results = pa.table({ROW_KEY: ["ka"], "size": [5]})
    with pytest.raises(JoinError, match="several columns with that name"):
        join_results(
            frame, results, row_keys=["ka"], sent_columns=["name"], on_conflict="overwrite"
        )


def test_neither_frame_library_is_imported_by_the_module() -> None:
    # The library must work with only one of pandas and Polars installed.
    from sixtyfour_frames import _join

    assert not {"pd", "pl", "pandas", "polars"} & set(vars(_join))


# -- property: whatever the workflow does to its output, the frame survives and rows match -----


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A frame with repeated records, its row keys, and an output that was shuffled, filtered,
    duplicated and padded with rows of unknown or null keys."""
    n = draw(st.integers(0, 12))
    xs = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    ss = draw(st.lists(st.sampled_from(["a", "b", None]), min_size=n, max_size=n))
    fs = draw(
        st.lists(st.sampled_from([1.5, -0.0, float("nan"), float("inf")]), min_size=n, max_size=n)
    )
    records = zip(xs, ss, fs, strict=True)
    keys = [f"k{x}-{s}-{f}" for x, s, f in records]  # a content hash stand-in
    distinct = list(dict.fromkeys(keys))
    kept = [key for key in distinct if draw(st.booleans())]
    output: list[str | None] = [
        key for key in kept for _ in range(draw(st.integers(1, 3), label="copies"))
    ]
    output += draw(st.lists(st.sampled_from(["unknown", None]), max_size=2))
    output = draw(st.permutations(output))
    index_kind = draw(st.sampled_from(["range", "duplicates", "multi"]))
    labels = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    return {
        "columns": {"x": xs, "s": ss, "f": fs},
        "keys": keys,
        "output": output,
        "index": index_kind,
        "labels": labels,
        "multiple": draw(st.sampled_from(["first", "list", "explode"])),
    }


def scenario_index(kind: str, labels: list[int]) -> pd.Index[Any] | None:
    if kind == "duplicates":
        return pd.Index([f"L{label}" for label in labels])
    if kind == "multi":
        return pd.MultiIndex.from_arrays([labels, [str(label) for label in labels]])
    return None


def expected_values(keys: list[str], output: list[str | None], multiple: str) -> list[Any]:
    """Scores by plain Python: the output row at position p has score p."""
    by_key: dict[str, list[int]] = {}
    for position, key in enumerate(output):
        if key is not None:
            by_key.setdefault(key, []).append(position)
    if multiple == "first":
        return [by_key[key][0] if key in by_key else None for key in keys]
    if multiple == "list":
        return [by_key.get(key) for key in keys]
    return [score for key in keys for score in by_key.get(key, [None])]


def expected_rows(keys: list[str], output: list[str | None]) -> list[int]:
    counts = {key: output.count(key) for key in keys}
    return [row for row, key in enumerate(keys) for _ in range(max(1, counts[key]))]


@pytest.mark.parametrize("lib", LIBS)
@settings(max_examples=200, derandomize=True, deadline=None)
@given(scenario=scenarios())
def test_property_frame_untouched_and_rows_matched(lib: Lib, scenario: dict[str, Any]) -> None:
    keys, output, multiple = scenario["keys"], scenario["output"], scenario["multiple"]
    index = scenario_index(scenario["index"], scenario["labels"]) if lib == "pandas" else None
    frame = make_frame(lib, scenario["columns"], index)
    if lib == "polars":
        # An empty or all-null column would be typed Null.
        frame = frame.cast({"x": pl.Int64, "s": pl.String, "f": pl.Float64})
    before = copy_of(frame)
    results = pa.table(
        {
            ROW_KEY: pa.array(output, pa.string()),
            "x": pa.array([0] * len(output)),  # echoed, never attached
            "score": pa.array(range(len(output)), pa.int64()),
        }
    )

    out, stats = join_results(
        frame, results, row_keys=keys, sent_columns=["x", "s"], multiple=multiple
    )

    assert_same_frame(frame, before)
    rows = expected_rows(keys, output) if multiple == "explode" else list(range(len(keys)))
    untouched = before[rows] if lib == "polars" else before.take(rows)
    assert_same_frame(original_part(out, frame), untouched)
    assert values(out, "score") == expected_values(keys, output, multiple)
    assert stats.rows_out == len(rows)
    assert stats.rows_matched == sum(key in output for key in keys)
    assert stats.output_extra == sum(key not in keys for key in output)


# -- row keys as an Arrow array ------------------------------------------------------------------

ARROW_KEY_FORMS: dict[str, Callable[[list[Any]], Any]] = {
    "string": lambda keys: pa.array(keys, pa.string()),
    "large_string": lambda keys: pa.array(keys, pa.large_string()),
    "chunked string": lambda keys: pa.chunked_array(
        [pa.array(keys[:1], pa.string()), pa.array(keys[1:], pa.string())]
    ),
    "chunked large_string": lambda keys: pa.chunked_array(
        [pa.array(keys[:3], pa.large_string()), pa.array(keys[3:], pa.large_string())]
    ),
}


@pytest.mark.parametrize("form", sorted(ARROW_KEY_FORMS))
@pytest.mark.parametrize("lib", LIBS)
def test_arrow_row_keys_join_like_a_list(lib: Lib, form: str) -> None:
    results = results_table([("kg", 2), ("ka", 1), ("kx", 9), ("kg", 5)])
    arrow_keys = ARROW_KEY_FORMS[form](KEYS)
    for multiple in ("first", "list", "explode"):
        listed = join(lib, results, multiple=multiple)
        frame = make_frame(lib, RECORDS)
        arrowed = join_results(
            frame, results, row_keys=arrow_keys, sent_columns=["name", "size"], multiple=multiple
        )
        assert_same_frame(arrowed[0], listed[0])
        assert arrowed[1] == listed[1]


@pytest.mark.parametrize(
    ("row_keys", "message"),
    [
        (pa.array(["ka"]), r"row_keys has 1 keys but the frame has 4 rows"),
        (pa.chunked_array([pa.array(["ka", "kg"]), pa.array(["ki"])]), r"has 3 keys but"),
        (pa.array(["ka", None, "ki", "ka"]), r"row_keys holds 1 null keys"),
        (pa.chunked_array([["ka", "kg"], [None, None]], pa.string()), r"holds 2 null"),
        (pa.array([1, 2, 3, 4]), r"row_keys must be strings .*not an Arrow array of int64"),
        (pa.array([b"ka", b"kg", b"ki", b"ka"]), r"row_keys must be strings"),
    ],
)
@pytest.mark.parametrize("lib", LIBS)
def test_arrow_row_keys_are_checked_like_a_list(lib: Lib, row_keys: Any, message: str) -> None:
    with pytest.raises(JoinError, match=message):
        join_results(
            make_frame(lib, RECORDS), results_table([]), row_keys=row_keys, sent_columns=[]
        )


# -- the unique-key fast path gives what the general matching gives ------------------------------


def join_both_ways(frame: Any, results: pa.Table, **options: Any) -> tuple[Any, Any]:
    """The join as it runs, and the same join with the unique-key fast path switched off."""
    from sixtyfour_frames import _join

    fast = join_results(copy_of(frame), results, **options)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_join, "_match_unique", lambda caller, output: None)
        general = join_results(copy_of(frame), results, **options)
    return fast, general


@st.composite
def key_scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """Row keys of one length (the hashed lookup) or of several (the string lookup), and an output
    that is a shuffled one-row-per-record set or not (missing, repeated, unknown, null keys)."""
    n = draw(st.integers(0, 10))
    same_width = draw(st.booleans())
    make_key = (lambda i: f"k{i:04x}") if same_width else (lambda i: "k" + "x" * i)
    keys = [make_key(draw(st.integers(0, 6))) for _ in range(n)]
    distinct = list(dict.fromkeys(keys))
    if draw(st.booleans()):
        output: list[str | None] = list(distinct)  # the usual case: the fast path applies
    else:
        kept = [key for key in distinct if draw(st.booleans())]
        output = [key for key in kept for _ in range(draw(st.integers(1, 2)))]
        output += draw(st.lists(st.sampled_from([make_key(99), None]), max_size=2))
    return {
        "keys": keys,
        "output": draw(st.permutations(output)),
        "multiple": draw(st.sampled_from(["first", "list", "explode"])),
    }


@pytest.mark.parametrize("lib", LIBS)
@settings(max_examples=150, derandomize=True, deadline=None)
@given(scenario=key_scenarios())
def test_fast_and_general_matching_agree(lib: Lib, scenario: dict[str, Any]) -> None:
    keys, output = scenario["keys"], scenario["output"]
    frame = make_frame(lib, {"i": list(range(len(keys)))})
    results = pa.table(
        {
            ROW_KEY: pa.array(output, pa.string()),
            "score": pa.array(range(len(output)), pa.int64()),
            "label": pa.array([f"row {p}" for p in range(len(output))], pa.string()),
        }
    )
    fast, general = join_both_ways(
        frame, results, row_keys=keys, sent_columns=[], multiple=scenario["multiple"]
    )
    assert_same_frame(fast[0], general[0])
    assert fast[1] == general[1]
    assert values(fast[0], "score") == expected_values(keys, output, scenario["multiple"])


@pytest.mark.parametrize("width", ["one length", "several lengths"])
@pytest.mark.parametrize("lib", LIBS)
def test_one_output_row_per_record_skips_the_general_matching(
    lib: Lib, width: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sixtyfour_frames import _join

    def refuse(caller: pa.Array, output: pa.Array) -> Any:
        raise AssertionError("the general matching ran")

    monkeypatch.setattr(_join, "_match_general", refuse)
    keys = ["ka", "kg", "ki", "ka"] if width == "one length" else ["ka", "kgg", "kiii", "ka"]
    results = pa.table({ROW_KEY: [keys[2], keys[0], keys[1]], "score": [3, 1, 2]})
    frame = make_frame(lib, RECORDS)
    out, stats = join_results(frame, results, row_keys=keys, sent_columns=["name", "size"])
    assert values(out, "score") == [1, 2, 3, 1]
    assert (stats.rows_matched, stats.output_extra, stats.output_duplicated) == (4, 0, 0)


@pytest.mark.parametrize("lib", LIBS)
def test_hash_collisions_fall_back_to_the_general_matching(
    lib: Lib, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from sixtyfour_frames import _join

    calls: list[int] = []
    general = _join._match_general

    def counted(caller: pa.Array, output: pa.Array) -> Any:
        calls.append(len(output))
        return general(caller, output)

    # Every key hashes alike: a found key is not the key looked for, or rows go unfound.
    monkeypatch.setattr(_join, "_hash", lambda words: np.zeros(len(words), np.uint64))
    monkeypatch.setattr(_join, "_match_general", counted)
    out, stats = join(lib, results_table([("ki", 3), ("ka", 1), ("kg", 2)]))
    assert values(out, "score") == [1, 2, 3, 1]
    assert stats.rows_matched == 4
    assert calls == [3]
