"""df.sixtyfour.enrich end to end against the emulator, for pandas, Polars and LazyFrames."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest

import sixtyfour_frames
from sixtyfour_frames import (
    Client,
    InvalidArgumentError,
    JoinError,
    RunFailedError,
    SerializationError,
)
from sixtyfour_frames._ledger import Ledger
from sixtyfour_frames.emulator import Emulator
from tests.conftest import FakeTime

COMPANY_NEW = {
    "domain",
    "industry",
    "employee_count",
    "founded_year",
    "hq_city",
    "linkedin_url",
    "description",
}
NAMES = [
    "Acme Robotics",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Acme Robotics",
    "Stark Industries",
]


@pytest.fixture(params=["pandas", "polars", "lazy"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_frame(kind: str, data: dict[str, list[Any]], index: list[Any] | None = None) -> Any:
    if kind == "pandas":
        return pd.DataFrame(data, index=index)
    frame = pl.DataFrame(data)
    return frame.lazy() if kind == "lazy" else frame


def to_pandas(frame: Any) -> pd.DataFrame:
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    return frame


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger") as book:
        yield book


@pytest.fixture
def client(emu: Emulator, fake_time: FakeTime) -> Iterator[Client]:
    with Client(
        api_key=emu.api_key, base_url=emu.base_url, sleep=fake_time.sleep, clock=fake_time.clock
    ) as c:
        yield c


@pytest.fixture
def run(client: Client, ledger: Ledger) -> Callable[..., Any]:
    def enrich(frame: Any, workflow: str, **kwargs: Any) -> Any:
        kwargs.setdefault("progress", False)
        return frame.sixtyfour.enrich(
            Emulator.workflow_id(workflow), client=client, ledger=ledger, **kwargs
        )

    return enrich


def companies(kind: str, **extra: list[Any]) -> Any:
    return make_frame(kind, {"company_name": NAMES, "rank": list(range(len(NAMES))), **extra})


def test_one_to_one_adds_the_new_columns_and_keeps_everything_else(
    kind: str, run: Callable[..., Any], emu: Emulator
) -> None:
    frame = companies(kind)
    out = run(frame, "company_enrichment", columns=["company_name"])
    assert type(out) is type(frame)
    got = to_pandas(out)
    original = to_pandas(frame)
    assert list(got.columns[: len(original.columns)]) == list(original.columns)
    assert set(got.columns) >= COMPANY_NEW
    pd.testing.assert_frame_equal(got[list(original.columns)], original)
    assert got["domain"].notna().all()
    # The duplicate "Acme Robotics" row was sent once and received the same values.
    assert got["domain"].iloc[0] == got["domain"].iloc[5]
    assert emu.ledger()["rows_charged"] == len(set(NAMES))


def test_pandas_index_order_and_dtypes_are_untouched(run: Callable[..., Any]) -> None:
    index = pd.MultiIndex.from_tuples(
        [("b", 2), ("a", 1), ("b", 2), ("c", 0), ("a", 9), ("z", 1), ("b", 2)]
    )
    frame = pd.DataFrame(
        {"company_name": NAMES, "score": [1.5, None, 3.0, 4.0, 5.0, 1.5, 7.0]}, index=index
    )
    out = run(frame, "company_enrichment")
    assert out.index.equals(frame.index)
    assert list(out.dtypes[:2]) == list(frame.dtypes)
    pd.testing.assert_frame_equal(out[["company_name", "score"]], frame)
    report = out.attrs["sixtyfour"]
    assert (
        report["rows_in"] == 7 and report["rows_unique"] == 6 and report["rows_deduplicated"] == 1
    )


def test_filtered_output_leaves_nulls_and_counts_them(
    kind: str, run: Callable[..., Any], client: Client, ledger: Ledger
) -> None:
    frame = companies(kind)
    job = sixtyfour_frames.start(
        frame,
        Emulator.workflow_id("filter_companies"),
        client=client,
        ledger=ledger,
        progress=False,
    )
    out = to_pandas(job.result())
    report = job.report
    assert report.rows_missing > 0 and report.rows_matched > 0
    assert report.rows_missing + report.rows_matched == len(NAMES)
    new = [c for c in out.columns if c not in ("company_name", "rank")]
    assert out[new[0]].isna().sum() == report.rows_missing


@pytest.mark.parametrize("multiple", ["first", "list", "explode"])
def test_one_to_many(kind: str, run: Callable[..., Any], multiple: str) -> None:
    frame = companies(kind)
    out = to_pandas(run(frame, "company_to_leads", multiple=multiple))
    if multiple == "explode":
        assert len(out) >= len(NAMES) - 1
        assert list(dict.fromkeys(out["rank"])) == list(range(len(NAMES)))  # caller order kept
    else:
        assert len(out) == len(NAMES)
        assert out["rank"].tolist() == list(range(len(NAMES)))


def test_a_dropped_row_key_needs_on(kind: str, run: Callable[..., Any]) -> None:
    frame = companies(kind)
    with pytest.raises(JoinError, match="on="):
        run(frame, "drop_row_key")
    out = to_pandas(run(frame, "drop_row_key", on=["company_name", "rank"]))
    assert out["rank"].tolist() == list(range(len(NAMES)))
    assert COMPANY_NEW & set(out.columns)


def test_a_failing_workflow_raises_or_keeps_status_columns(
    kind: str, run: Callable[..., Any]
) -> None:
    frame = companies(kind)
    with pytest.raises(RunFailedError) as caught:
        run(frame, "failing")
    assert caught.value.job_id and caught.value.error_message
    out = to_pandas(run(frame, "failing", errors="keep"))
    assert set(out["sixtyfour_status"]) == {"failed"}
    assert out["sixtyfour_error"].str.contains("failed").all()


def test_bad_input_is_rejected_before_any_request(
    kind: str, run: Callable[..., Any], emu: Emulator
) -> None:
    frame = make_frame(kind, {"company_name": ["a", "b"], "x": [1.0, float("inf")]})
    with pytest.raises(SerializationError, match="'x'"):
        run(frame, "company_enrichment")
    assert emu.ledger()["requests"].get("run", 0) == 0


def test_the_same_call_twice_starts_one_run(
    kind: str, run: Callable[..., Any], emu: Emulator
) -> None:
    frame = companies(kind)
    first = to_pandas(run(frame, "company_enrichment"))
    second = to_pandas(run(frame, "company_enrichment"))
    pd.testing.assert_frame_equal(first, second)
    assert emu.ledger()["runs_created"] == 1


def test_chunks_run_concurrently_under_one_report(
    run: Callable[..., Any], client: Client, ledger: Ledger, emu: Emulator
) -> None:
    frame = pd.DataFrame({"company_name": [f"Company {i}" for i in range(50)]})
    job = sixtyfour_frames.start(
        frame,
        Emulator.workflow_id("company_enrichment"),
        client=client,
        ledger=ledger,
        chunk_size=8,
        max_concurrent_runs=3,
        progress=False,
    )
    assert job._payload.texts_from == 24  # the first three chunks are sent: their texts may go
    out = job.result()
    assert job._payload.texts is None  # every chunk is sent: only the keys are kept
    assert len(job.run_ids) == 7 and emu.ledger()["runs_created"] == 7
    assert job.report.rows_sent == 50 and out["domain"].notna().all()


def test_preview_sends_nothing(kind: str, emu: Emulator, ledger: Ledger) -> None:
    frame = companies(kind)
    preview = frame.sixtyfour.preview(
        Emulator.workflow_id("company_enrichment"), ledger=ledger, columns=["company_name"]
    )
    assert (preview.rows, preview.unique, preview.cached, preview.billable) == (7, 6, 0, 6)
    assert preview.records[0]["company_name"] == "Acme Robotics"
    assert "__sixtyfour_row" in preview.records[0]
    assert emu.ledger()["requests"] == {} or sum(emu.ledger()["requests"].values()) == 0
    bad = make_frame(kind, {"company_name": ["a"], "x": [float("inf")]})
    assert isinstance(bad.sixtyfour.preview("wf", ledger=ledger).error, SerializationError)


def test_invalid_options_are_rejected_clearly(run: Callable[..., Any]) -> None:
    frame = companies("pandas")
    with pytest.raises(InvalidArgumentError, match="multiple"):
        run(frame, "company_enrichment", multiple="all")
    with pytest.raises(InvalidArgumentError, match="unknown argument"):
        run(frame, "company_enrichment", colums=["x"])


def test_a_slow_download_does_not_hold_up_the_next_runs(tmp_path: Path) -> None:
    """Finished runs download beside the poll loop (real time): while the first run's file is
    slow to arrive, the next chunks are still started, polled and collected."""
    frame = pd.DataFrame({"company_name": [f"Company {i}" for i in range(6)]})
    with (
        Emulator(pace=0.001) as emu,
        Ledger(tmp_path / "ledger") as ledger,
        Client(api_key=emu.api_key, base_url=emu.base_url) as client,
    ):
        emu.add_fault("download_links", "latency", seconds=1.5)  # the first download is slow
        out = sixtyfour_frames.enrich(
            frame,
            Emulator.workflow_id("company_enrichment"),
            client=client,
            ledger=ledger,
            chunk_size=2,
            max_concurrent_runs=1,
            poll=0.02,
            progress=False,
        )
        posts = [request.time for request in emu.requests("run")]
        first_download = emu.requests("download_links")[0].time
    assert out["domain"].notna().all() and len(posts) == 3
    assert posts[2] < first_download + 1.0  # the third run started during the first download
