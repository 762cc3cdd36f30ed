"""The local ledger: submissions, results, row cache, files, locks, crashes and damaged files."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sixtyfour_frames import _ledger_cache
from sixtyfour_frames._errors import InvalidArgumentError, LedgerError
from sixtyfour_frames._ledger import (
    ALLOWED_TRANSITIONS,
    Ledger,
    Submission,
    SubmissionState,
)
from sixtyfour_frames._ledger_files import TEMP_PREFIX, default_cache_root, resolve_home

S = SubmissionState
CHILD_TIMEOUT_S = 60


class FakeClock:
    """A clock that moves one second per reading, so every timestamp is distinct and known."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def ledger(home: Path) -> Iterator[Ledger]:
    with Ledger(home, clock=FakeClock()) as opened:
        yield opened


def intent(
    ledger: Ledger,
    fingerprint: str = "fp-1",
    *,
    body: str = "body-1",
    keys: tuple[str, ...] = ("r1", "r2"),
    workflow_id: str = "wf-1",
    call_id: str | None = None,
) -> Submission:
    return ledger.record_intent(
        fingerprint=fingerprint,
        workflow_id=workflow_id,
        scope=f"scope-{workflow_id}",
        body_sha256=body,
        record_keys=keys,
        call_id=call_id,
    )


def run_child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


# --- submissions ---------------------------------------------------------------------------------


def test_intent_is_recorded_with_a_fresh_key(ledger: Ledger) -> None:
    sub = intent(ledger, keys=("r1", "r2", "r3"), call_id="call-1")
    assert sub.state is S.INTENT
    assert (sub.fingerprint, sub.workflow_id, sub.scope) == ("fp-1", "wf-1", "scope-wf-1")
    assert sub.record_keys == ("r1", "r2", "r3")
    assert sub.call_id == "call-1"
    assert sub.job_id is None and sub.already_started is None and sub.error is None
    assert len(sub.idempotency_key) == 36 and sub.idempotency_key.count("-") == 4
    assert sub.created_at == sub.updated_at > 1_000.0
    assert ledger.submission("fp-1") == sub


def test_record_intent_is_idempotent(ledger: Ledger) -> None:
    first = intent(ledger)
    again = intent(ledger, call_id="another-call")
    assert again == first  # same key, unchanged
    assert len(ledger.submissions()) == 1


def test_record_intent_with_another_body_is_refused(ledger: Ledger) -> None:
    intent(ledger, body="body-1")
    with pytest.raises(LedgerError, match="another request body"):
        intent(ledger, body="body-2")


@pytest.mark.parametrize("keys", ["r1", (), ("r1", 2)])
def test_record_intent_rejects_bad_record_keys(ledger: Ledger, keys: object) -> None:
    with pytest.raises(InvalidArgumentError):
        ledger.record_intent(
            fingerprint="fp",
            workflow_id="wf",
            scope="sc",
            body_sha256="b",
            record_keys=keys,
        )


def test_happy_path_transitions(ledger: Ledger) -> None:
    created = intent(ledger)
    submitted = ledger.mark_submitted("fp-1", job_id="job-1", already_started=False)
    assert submitted.state is S.SUBMITTED
    assert (submitted.job_id, submitted.already_started) == ("job-1", False)
    assert submitted.idempotency_key == created.idempotency_key
    assert submitted.updated_at > created.updated_at
    completed = ledger.mark("fp-1", S.COMPLETED)
    assert completed.state is S.COMPLETED
    assert ledger.by_job_id("job-1") == completed
    assert ledger.by_job_id("job-unknown") is None


def test_mark_submitted_is_idempotent_for_the_same_job(ledger: Ledger) -> None:
    intent(ledger)
    first = ledger.mark_submitted("fp-1", job_id="job-1", already_started=None)
    again = ledger.mark_submitted("fp-1", job_id="job-1", already_started=True)
    assert again.state is S.SUBMITTED and again.job_id == "job-1"
    assert again.already_started is True and first.already_started is None
    ledger.mark("fp-1", S.COMPLETED)
    assert ledger.mark_submitted("fp-1", job_id="job-1", already_started=True).state is S.COMPLETED


def test_a_second_job_for_one_submission_is_refused(ledger: Ledger) -> None:
    intent(ledger)
    ledger.mark_submitted("fp-1", job_id="job-1", already_started=False)
    with pytest.raises(LedgerError, match="second run job-2"):
        ledger.mark_submitted("fp-1", job_id="job-2", already_started=False)


def test_a_job_cannot_be_claimed_by_two_submissions(ledger: Ledger) -> None:
    intent(ledger, "fp-1")
    intent(ledger, "fp-2")
    ledger.mark_submitted("fp-1", job_id="job-1", already_started=False)
    with pytest.raises(LedgerError, match="already recorded for submission fp-1"):
        ledger.mark_submitted("fp-2", job_id="job-1", already_started=True)


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ((), S.COMPLETED),  # a run cannot complete without a job id
        ((), S.CANCELLED),
        ((), S.INTENT),
        ((S.COMPLETED,), S.FAILED),
        ((S.FAILED,), S.COMPLETED),
        ((S.CANCELLED,), S.SUBMITTED),
    ],
)
def test_illegal_transitions_are_refused(
    ledger: Ledger, path: tuple[SubmissionState, ...], target: SubmissionState
) -> None:
    intent(ledger)
    if path:
        ledger.mark_submitted("fp-1", job_id="job-1", already_started=False)
    for state in path:
        ledger.mark("fp-1", state)
    with pytest.raises(LedgerError):
        ledger.mark("fp-1", target)


def test_submitted_needs_mark_submitted(ledger: Ledger) -> None:
    intent(ledger)
    with pytest.raises(LedgerError, match="mark_submitted"):
        ledger.mark("fp-1", S.SUBMITTED)


def test_unknown_fingerprint_cannot_be_marked(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="record_intent"):
        ledger.mark("nope", S.AMBIGUOUS)


def test_transition_table_never_forgets_a_possible_run() -> None:
    may_own_a_run = {S.INTENT, S.AMBIGUOUS, S.SUBMITTED}
    for state in may_own_a_run:
        assert S.INTENT not in ALLOWED_TRANSITIONS[state]
    for state, targets in ALLOWED_TRANSITIONS.items():
        assert state in targets or state is S.INTENT  # re-marking is idempotent
    assert set(ALLOWED_TRANSITIONS) == set(S)


def test_errors_follow_state_changes(ledger: Ledger) -> None:
    intent(ledger)
    assert ledger.mark("fp-1", S.AMBIGUOUS, error="ReadError after send").error == (
        "ReadError after send"
    )
    assert ledger.mark("fp-1", S.AMBIGUOUS).error == "ReadError after send"  # same state: kept
    resolved = ledger.mark_submitted("fp-1", job_id="job-1", already_started=True)
    assert resolved.error is None and resolved.already_started is True
    assert ledger.mark("fp-1", S.FAILED, error="block 2 failed").error == "block 2 failed"


def test_failed_no_run_gets_a_new_key_and_keeps_history(ledger: Ledger) -> None:
    first = intent(ledger)
    ledger.mark("fp-1", S.FAILED_NO_RUN, error="402 insufficient credits")
    second = intent(ledger)
    assert second.idempotency_key != first.idempotency_key
    assert second.state is S.INTENT and second.replaces == first.idempotency_key
    history = ledger.submissions(include_superseded=True)
    assert [s.idempotency_key for s in history] == [second.idempotency_key, first.idempotency_key]
    assert history[1].superseded and history[1].state is S.FAILED_NO_RUN
    assert ledger.submissions() == [second]


def test_ambiguous_resolved_without_a_run_allows_a_new_key(ledger: Ledger) -> None:
    first = intent(ledger)
    ledger.mark("fp-1", S.AMBIGUOUS)
    assert intent(ledger) == ledger.submission("fp-1")  # still ambiguous: same key, never fresh
    assert intent(ledger).idempotency_key == first.idempotency_key
    ledger.mark("fp-1", S.FAILED_NO_RUN)  # the runs list proved that no run was made
    assert intent(ledger).idempotency_key != first.idempotency_key


@pytest.mark.parametrize("final_state", [S.FAILED, S.CANCELLED])
def test_supersede_gives_a_new_key(ledger: Ledger, final_state: SubmissionState) -> None:
    first = intent(ledger)
    ledger.mark_submitted("fp-1", job_id="job-1", already_started=False)
    ledger.mark("fp-1", final_state)
    assert intent(ledger).idempotency_key == first.idempotency_key  # finished: re-attached as is
    ledger.supersede("fp-1")
    assert ledger.submission("fp-1") is None
    fresh = intent(ledger)
    assert fresh.idempotency_key != first.idempotency_key
    assert fresh.replaces == first.idempotency_key
    old = ledger.by_job_id("job-1")
    assert old is not None and old.superseded and old.state is final_state


@pytest.mark.parametrize("state", [S.INTENT, S.AMBIGUOUS, S.SUBMITTED, S.COMPLETED])
def test_supersede_refuses_a_submission_that_may_own_a_run(
    ledger: Ledger, state: SubmissionState
) -> None:
    intent(ledger)
    if state is S.AMBIGUOUS:
        ledger.mark("fp-1", state)
    elif state is not S.INTENT:
        ledger.mark_submitted("fp-1", job_id="job-1", already_started=False)
        if state is S.COMPLETED:
            ledger.mark("fp-1", state)
    with pytest.raises(LedgerError, match="cannot be superseded"):
        ledger.supersede("fp-1")


def test_supersede_without_a_current_submission_is_a_no_op(ledger: Ledger) -> None:
    ledger.supersede("never-seen")
    assert ledger.submissions(include_superseded=True) == []


def test_submissions_filters_newest_first(ledger: Ledger) -> None:
    a = intent(ledger, "fp-a", workflow_id="wf-1", call_id="call-1")
    b = intent(ledger, "fp-b", workflow_id="wf-2", call_id="call-1")
    c = intent(ledger, "fp-c", workflow_id="wf-1", call_id="call-2")
    ledger.mark_submitted("fp-b", job_id="job-b", already_started=False)
    assert [s.fingerprint for s in ledger.submissions()] == ["fp-c", "fp-b", "fp-a"]
    assert [s.fingerprint for s in ledger.submissions(workflow_id="wf-1")] == ["fp-c", "fp-a"]
    assert [s.fingerprint for s in ledger.submissions(call_id="call-1")] == ["fp-b", "fp-a"]
    assert [s.fingerprint for s in ledger.submissions(states={S.INTENT})] == ["fp-c", "fp-a"]
    assert ledger.submissions(states=[S.SUBMITTED], workflow_id="wf-2")[0].job_id == "job-b"
    assert ledger.submissions(states=()) == []
    assert {a.fingerprint, b.fingerprint, c.fingerprint} == {"fp-a", "fp-b", "fp-c"}


def test_everything_survives_a_new_ledger(home: Path) -> None:
    keys = [f"row-{i}" for i in range(1_000)]
    with Ledger(home) as first:
        recorded = intent(first, keys=tuple(keys[:3]))
        # Committed before returning: a second connection sees it while the first is still open.
        with Ledger(home) as concurrent:
            assert concurrent.submission("fp-1") == recorded
        first.mark_submitted("fp-1", job_id="job-1", already_started=False)
        first.mark("fp-1", S.COMPLETED)
        first.store_results("job-1", pa.table({"__sixtyfour_row": keys}))
        first.cache_put("scope-1", keys, "job-1")
    with Ledger(home) as reopened:
        sub = reopened.submission("fp-1")
        assert sub is not None
        assert sub.idempotency_key == recorded.idempotency_key and sub.state is S.COMPLETED
        loaded = reopened.load_results("job-1")
        assert loaded is not None and loaded.column("__sixtyfour_row").to_pylist() == keys
        assert reopened.cache_lookup("scope-1", keys) == dict.fromkeys(keys, "job-1")


def test_threads_share_one_ledger_safely(ledger: Ledger) -> None:
    keys: list[str] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            keys.append(intent(ledger, "shared").idempotency_key)
            intent(ledger, f"own-{n}")
            ledger.mark_submitted(f"own-{n}", job_id=f"job-{n}", already_started=False)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(keys)) == 1
    assert len(ledger.submissions(states={S.SUBMITTED})) == 8


def test_a_busy_database_is_waited_for(ledger: Ledger) -> None:
    other = sqlite3.connect(ledger.db_path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process writing, as far as SQLite can tell
        release = threading.Timer(0.3, other.execute, args=("COMMIT",))
        release.start()
        started = time.monotonic()
        sub = intent(ledger)
        assert time.monotonic() - started >= 0.2
        assert sub.state is S.INTENT
        release.join()
    finally:
        other.close()


# --- results -------------------------------------------------------------------------------------


def rich_table() -> pa.Table:
    schema = pa.schema(
        [
            ("__sixtyfour_row", pa.string()),
            ("description", pa.string()),
            ("employees", pa.int64()),
            ("score", pa.float64()),
            ("public", pa.bool_()),
            ("founded", pa.timestamp("us", tz="Europe/Paris")),
            ("tags", pa.list_(pa.string())),
            ("hq", pa.struct([("city", pa.string()), ("country", pa.string())])),
        ],
        metadata={"source": "test"},
    )
    rows = [
        {
            "__sixtyfour_row": "0",
            "description": 'Line one\nline two, with "quotes"\r\nand a third',
            "employees": 120,
            "score": 0.1 + 0.2,
            "public": True,
            "founded": datetime(1978, 5, 1, 12, 30, tzinfo=UTC),
            "tags": ["b2b", "saas"],
            "hq": {"city": "Zürich", "country": "CH"},
        },
        {
            "__sixtyfour_row": "1",
            "description": None,
            "employees": None,
            "score": None,
            "public": None,
            "founded": None,
            "tags": None,
            "hq": None,
        },
        {
            "__sixtyfour_row": "2",
            "description": "東京 🚀 \x00 ''",
            "employees": -1,
            "score": -0.0,
            "public": False,
            "founded": datetime(2020, 1, 1, tzinfo=UTC),
            "tags": [],
            "hq": {"city": None, "country": "JP"},
        },
    ]
    return pa.Table.from_pylist(rows, schema=schema)


def test_results_round_trip(ledger: Ledger) -> None:
    table = rich_table()
    assert not ledger.has_results("job-1")
    assert ledger.load_results("job-1") is None
    path = ledger.store_results("job-1", table)
    assert path == ledger.result_path("job-1") and path.parent == ledger.home / "results"
    assert ledger.has_results("job-1")
    loaded = ledger.load_results("job-1")
    assert loaded is not None
    assert loaded.schema.equals(table.schema, check_metadata=True)
    assert loaded.to_pylist() == table.to_pylist()


def test_results_are_never_overwritten(ledger: Ledger) -> None:
    first = pa.table({"x": [1, 2]})
    path = ledger.store_results("job-1", first)
    assert ledger.store_results("job-1", pa.table({"x": [9]})) == path
    loaded = ledger.load_results("job-1")
    assert loaded is not None and loaded.equals(first)


@pytest.mark.parametrize(
    "table",
    [
        pa.table({"__sixtyfour_row": pa.array([], pa.string())}),
        pa.Table.from_pylist([{}, {}, {}]),
    ],
    ids=["no-rows", "no-columns"],
)
def test_empty_results_keep_their_shape(ledger: Ledger, table: pa.Table) -> None:
    ledger.store_results("job-1", table)
    loaded = ledger.load_results("job-1")
    assert loaded is not None
    assert (loaded.num_rows, loaded.schema) == (table.num_rows, table.schema)


def test_odd_job_ids_get_safe_distinct_file_names(ledger: Ledger) -> None:
    ids = ["../../etc/passwd", "a/b", "a_b", "A:B*?", "ü" * 300]
    paths = {ledger.store_results(job, pa.table({"job": [job]})) for job in ids}
    assert len(paths) == len(ids)
    assert all(p.parent == ledger.home / "results" for p in paths)
    for job in ids:
        loaded = ledger.load_results(job)
        assert loaded is not None and loaded.column("job").to_pylist() == [job]


def test_a_deleted_results_file_is_reported_and_can_be_stored_again(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    path = ledger.store_results("job-1", pa.table({"x": [1]}))
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="sixtyfour_frames"):
        assert ledger.load_results("job-1") is None
    assert "job-1" in caplog.text and "download them again" in caplog.text
    assert not ledger.has_results("job-1")
    ledger.store_results("job-1", pa.table({"x": [2]}))
    loaded = ledger.load_results("job-1")
    assert loaded is not None and loaded.column("x").to_pylist() == [2]


def test_a_failed_write_leaves_nothing_behind(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sixtyfour_frames import _ledger

    def disk_full(table: pa.Table, stream: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_ledger, "_write_table", disk_full)
    with pytest.raises(LedgerError, match="No space left") as info:
        ledger.store_results("job-1", pa.table({"x": [1]}))
    assert "download_results('job-1')" in str(info.value)
    assert list((ledger.home / "results").iterdir()) == []
    assert not ledger.has_results("job-1")


def test_an_unreadable_results_file_raises(ledger: Ledger) -> None:
    path = ledger.result_path("job-1")
    path.write_bytes(b"PAR1 but not really")
    with pytest.raises(LedgerError, match="unreadable") as info:
        ledger.load_results("job-1")
    assert str(path) in str(info.value) and "download_results('job-1')" in str(info.value)


# --- row cache -----------------------------------------------------------------------------------


def test_cache_put_lookup_forget_many_keys(ledger: Ledger) -> None:
    keys = [f"{i:064x}" for i in range(100_000)]
    ledger.store_results("job-old", pa.table({"__sixtyfour_row": keys[:10]}))
    ledger.store_results("job-new", pa.table({"__sixtyfour_row": keys[:10]}))
    assert ledger.cache_lookup("scope-1", keys) == {}
    ledger.cache_put("scope-1", keys[:75_000], "job-old")
    ledger.cache_put("scope-1", keys[50_000:], "job-new")  # overlaps: the latest put wins
    found = ledger.cache_lookup("scope-1", [*keys, "unknown"])
    assert len(found) == 100_000
    assert found[keys[0]] == "job-old"
    assert found[keys[50_000]] == found[keys[-1]] == "job-new"
    assert ledger.cache_lookup("scope-2", keys) == {}  # scopes are separate
    assert ledger.cache_forget("scope-1", [*keys[:1_000], "unknown"]) == 1_000
    assert keys[0] not in ledger.cache_lookup("scope-1", keys[:2_000])
    assert ledger.cache_forget("scope-1") == 99_000
    assert ledger.cache_lookup("scope-1", keys) == {}
    assert ledger.cache_forget("scope-never-used") == 0


def test_keys_may_be_arrow_string_arrays_and_mean_the_same_as_python_strings(
    ledger: Ledger,
) -> None:
    keys = [f"k{i:020x}" for i in range(1_000)]
    ledger.store_results("job-1", pa.table({"__sixtyfour_row": keys}))
    ledger.cache_put("scope-1", pa.array(keys[:600], pa.string()), "job-1")
    as_arrow = ledger.cache_lookup("scope-1", pa.chunked_array([keys[:300], keys[300:]]))
    assert as_arrow == ledger.cache_lookup("scope-1", keys) == dict.fromkeys(keys[:600], "job-1")
    sub = ledger.record_intent(
        fingerprint="fp-arrow",
        workflow_id="wf",
        scope="scope-1",
        body_sha256="b" * 64,
        record_keys=pa.array(keys[:3], pa.large_string()),
    )
    assert sub.record_keys == tuple(keys[:3])
    assert ledger.cache_forget("scope-1", pa.array(keys[:100])) == 100
    for bad, reason in ((pa.array([1, 2]), "strings"), (pa.array(["k1", None]), "null")):
        with pytest.raises(InvalidArgumentError, match=reason):
            ledger.cache_lookup("scope-1", bad)


def test_cache_put_needs_stored_results(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="store_results"):
        ledger.cache_put("scope-1", ["r1"], "job-without-results")


def test_repeating_a_cache_put_stores_nothing_new(ledger: Ledger) -> None:
    ledger.store_results("job-1", pa.table({"x": [1]}))
    ledger.store_results("job-2", pa.table({"x": [1]}))
    ledger.cache_put("scope-1", ["r1", "r2"], "job-1")
    ledger.cache_put("scope-1", ["r2"], "job-2")
    ledger.cache_put("scope-1", ["r1", "r2"], "job-1")  # the same put again: now the latest
    assert ledger.cache_lookup("scope-1", ["r1", "r2"]) == {"r1": "job-1", "r2": "job-1"}
    with contextlib.closing(sqlite3.connect(ledger.db_path)) as raw:
        assert raw.execute("SELECT count(*) FROM cache_batches").fetchone()[0] == 2


def test_many_small_puts_are_merged(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ledger_cache, "MERGE_RUN", 4)
    jobs = ["job-a", "job-b", "job-c"]
    for job in jobs:
        ledger.store_results(job, pa.table({"x": [job]}))
    model: dict[str, str] = {}
    for n in range(3 * _ledger_cache.MERGE_RUN + 5):
        keys = [f"row-{i}" for i in range(n * 50, n * 50 + 100)]  # each put overlaps the last
        ledger.cache_put("scope", keys, jobs[n % 3])
        model.update(dict.fromkeys(keys, jobs[n % 3]))
    with contextlib.closing(sqlite3.connect(ledger.db_path)) as raw:
        n_batches = raw.execute("SELECT count(*) FROM cache_batches").fetchone()[0]
    assert n_batches < _ledger_cache.MERGE_RUN
    assert ledger.cache_lookup("scope", [f"row-{i}" for i in range(10_000)]) == model


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(
                st.just("put"),
                st.lists(st.sampled_from("abcdefgh"), max_size=6),
                st.sampled_from(["job-1", "job-2", "job-3"]),
            ),
            st.tuples(
                st.just("forget"),
                st.none() | st.lists(st.sampled_from("abcdefgh"), max_size=4),
                st.just(""),
            ),
        ),
        max_size=8,
    )
)
def test_row_cache_behaves_like_a_dict(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    ops: list[tuple[str, list[str] | None, str]],
) -> None:
    monkeypatch.setattr(_ledger_cache, "MERGE_RUN", 3)  # merge often, so merges are exercised
    universe = list("abcdefgh")
    model: dict[str, str] = {}
    with Ledger(tmp_path_factory.mktemp("cache-model")) as ledger:
        for job in ("job-1", "job-2", "job-3"):
            ledger.store_results(job, pa.table({"x": [job]}))
        for op, keys, job in ops:
            if op == "put":
                assert keys is not None
                ledger.cache_put("scope", keys, job)
                model.update(dict.fromkeys(keys, job))
            else:
                gone = set(model) if keys is None else set(keys) & set(model)
                assert ledger.cache_forget("scope", keys) == len(gone)
                for key in gone:
                    del model[key]
            assert ledger.cache_lookup("scope", universe) == model


# --- files, permissions, home ------------------------------------------------------------------


def test_files_are_private_even_under_umask_000(tmp_path: Path) -> None:
    home = tmp_path / "private-home"
    old_umask = os.umask(0)
    try:
        with Ledger(home) as ledger:
            intent(ledger)
            ledger.store_results("job-1", pa.table({"x": [1]}))
            ledger.cache_put("scope", ["r1"], "job-1")
            with ledger.lock("submit-fp-1"):
                pass
            names = {p.name for p in home.rglob("*")}
            assert {"ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm"} <= names
            assert any(name.endswith(".lock") for name in names)
            assert any(name.endswith(".parquet") for name in names)
            for path in [home, *home.rglob("*")]:
                mode = stat.S_IMODE(path.stat().st_mode)
                assert mode == (0o700 if path.is_dir() else 0o600), path
    finally:
        os.umask(old_umask)


def test_home_comes_from_argument_then_environment_then_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIXTYFOUR_FRAMES_HOME", str(tmp_path / "from-env"))
    assert resolve_home(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_home(None) == tmp_path / "from-env"
    with Ledger() as ledger:
        assert ledger.home == tmp_path / "from-env"
    monkeypatch.setenv("SIXTYFOUR_FRAMES_HOME", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_home(None) == tmp_path / "xdg" / "sixtyfour-frames"


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"XDG_CACHE_HOME": "/x/cache"}, "/x/cache"),
        ("linux", {"XDG_CACHE_HOME": "relative/ignored"}, "{home}/.cache"),
        ("linux", {}, "{home}/.cache"),
        ("darwin", {"XDG_CACHE_HOME": "/x/cache"}, "{home}/Library/Caches"),
        ("win32", {"LOCALAPPDATA": "/c/Users/me/AppData/Local"}, "/c/Users/me/AppData/Local"),
    ],
)
def test_default_cache_root_per_platform(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platform: str,
    env: dict[str, str],
    expected: str,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "platform", platform)
    assert default_cache_root() == Path(expected.format(home=tmp_path))


def test_a_closed_ledger_refuses_work(home: Path) -> None:
    ledger = Ledger(home)
    ledger.close()
    ledger.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        ledger.submission("fp-1")
    with pytest.raises(LedgerError, match="closed"):
        ledger.store_results("job-1", pa.table({"x": [1]}))


def test_verify_passes_on_a_healthy_ledger(ledger: Ledger) -> None:
    intent(ledger)
    ledger.verify()


# --- locks ---------------------------------------------------------------------------------------


def test_lock_excludes_and_times_out_naming_the_file(ledger: Ledger) -> None:
    with ledger.lock("submit-fp-1"):
        with ledger.lock("submit-fp-2", timeout=0.05):
            pass  # other names are independent
        with (
            pytest.raises(LedgerError, match="timed out") as info,
            ledger.lock("submit-fp-1", timeout=0.05),
        ):
            pass  # pragma: no cover
        assert str(ledger.lock_path("submit-fp-1")) in str(info.value)
    with ledger.lock("submit-fp-1", timeout=0.05):
        pass  # released on exit


def test_a_lock_dies_with_its_holder(home: Path) -> None:
    Ledger(home).close()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time
                from sixtyfour_frames._ledger import Ledger
                with Ledger(sys.argv[1]) as ledger, ledger.lock("submit-fp-1"):
                    print("locked", flush=True)
                    time.sleep(60)
                """
            ),
            str(home),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with Ledger(home) as ledger:
            with (
                pytest.raises(LedgerError, match="timed out"),
                ledger.lock("submit-fp-1", timeout=0.05),
            ):
                pass  # pragma: no cover
            child.send_signal(signal.SIGKILL)
            child.wait(CHILD_TIMEOUT_S)
            with ledger.lock("submit-fp-1", timeout=5):
                pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait(CHILD_TIMEOUT_S)
        assert child.stdout is not None
        child.stdout.close()


RACER = """
import os, sys, time
from pathlib import Path
from sixtyfour_frames._ledger import Ledger

home, gate, name, use_lock = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "lock"
(gate.parent / f"ready-{name}").touch()
while not gate.exists():
    time.sleep(0.002)
with Ledger(home) as ledger:
    def submit():
        found = ledger.submission("fp-race")
        return found or ledger.record_intent(
            fingerprint="fp-race", workflow_id="wf", scope="sc", body_sha256="b",
            record_keys=["r1"], call_id=name,
        )
    if use_lock:
        with ledger.lock("submit-fp-race", timeout=30):
            sub = submit()
    else:
        sub = submit()
    print(sub.idempotency_key)
"""


@pytest.mark.parametrize("use_lock", ["lock", "no-lock"])
def test_processes_racing_on_one_fingerprint_make_one_submission(
    tmp_path: Path, home: Path, use_lock: str
) -> None:
    if use_lock == "lock":
        Ledger(home).close()  # otherwise the racers also race to create the home and the schema
    gate = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(home), str(gate), str(n), use_lock],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while len(list(tmp_path.glob("ready-*"))) < len(racers) and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.touch()
    outputs = [racer.communicate(timeout=CHILD_TIMEOUT_S) for racer in racers]
    assert [racer.returncode for racer in racers] == [0] * len(racers), outputs
    keys = {out.strip() for out, _ in outputs}
    assert len(keys) == 1
    with Ledger(home) as ledger:
        subs = ledger.submissions(include_superseded=True)
        assert [s.idempotency_key for s in subs] == list(keys)


def test_switching_to_wal_is_retried_while_another_process_holds_the_new_file() -> None:
    """SQLite answers BUSY at once (no busy timeout) to a process asking for WAL while another
    is switching the same new file: the race above, made deterministic."""
    from sixtyfour_frames import _ledger_db

    class SwitchingElsewhere:
        def __init__(self, busy_answers: int) -> None:
            self.busy_answers = busy_answers

        def execute(self, statement: str) -> SwitchingElsewhere:
            assert statement == "PRAGMA journal_mode=WAL"
            if self.busy_answers:
                self.busy_answers -= 1
                error = sqlite3.OperationalError("database is locked")
                error.sqlite_errorname = "SQLITE_BUSY"
                raise error
            return self

        def fetchone(self) -> tuple[str]:
            return ("wal",)

    connection = SwitchingElsewhere(busy_answers=3)
    assert _ledger_db._enable_wal(connection) == "wal"  # type: ignore[arg-type]
    assert connection.busy_answers == 0
    other = sqlite3.OperationalError("disk I/O error")
    other.sqlite_errorname = "SQLITE_IOERR"
    assert not _ledger_db._is_busy(other)


# --- crashes -------------------------------------------------------------------------------------

CRASHING_WRITER = """
import io, os, signal, sys
import pyarrow as pa
import pyarrow.parquet as pq
from sixtyfour_frames import _ledger, _ledger_files

home, crash_point = sys.argv[1], sys.argv[2]

def die(*_args):
    os.kill(os.getpid(), signal.SIGKILL)

def torn_write(table, stream):
    whole = io.BytesIO()
    pq.write_table(table, whole)
    stream.write(whole.getvalue()[: len(whole.getvalue()) // 2])
    stream.flush()
    die()

if crash_point == "mid-write":
    _ledger._write_table = torn_write
elif crash_point == "before-rename":
    _ledger_files.publish = die
elif crash_point == "before-db-record":
    _ledger._upsert_result = die

table = pa.table({"__sixtyfour_row": [str(i) for i in range(20_000)],
                  "text": ["multi\\nline " * 5] * 20_000})
with _ledger.Ledger(home) as ledger:
    ledger.store_results("job-1", table)
print("not killed")
"""


@pytest.mark.parametrize("crash_point", ["mid-write", "before-rename", "before-db-record"])
def test_a_process_killed_in_store_results_leaves_no_trace(home: Path, crash_point: str) -> None:
    with Ledger(home) as ledger:
        intent(ledger)
        ledger.mark_submitted("fp-1", job_id="job-1", already_started=False)
    result = run_child(CRASHING_WRITER, str(home), crash_point)
    assert result.returncode == -signal.SIGKILL, result.stderr
    leftovers = list((home / "results").glob(f"{TEMP_PREFIX}*"))
    assert len(leftovers) == (0 if crash_point == "before-db-record" else 1)

    with Ledger(home) as ledger:
        assert list((home / "results").glob(f"{TEMP_PREFIX}*")) == []
        sub = ledger.submission("fp-1")
        assert sub is not None and sub.job_id == "job-1"
        loaded = ledger.load_results("job-1")
        if crash_point == "before-db-record":
            # The rename happened after fsync: the file is whole and is adopted.
            assert loaded is not None and loaded.num_rows == 20_000
            ledger.cache_put("scope", ["0"], "job-1")
        else:
            assert loaded is None and not ledger.has_results("job-1")
            ledger.store_results("job-1", pa.table({"__sixtyfour_row": ["0"]}))
            assert ledger.has_results("job-1")


def test_cleanup_spares_a_temp_file_that_is_still_being_written(ledger: Ledger) -> None:
    from sixtyfour_frames import _ledger_files

    final = ledger.result_path("job-1")
    fd, temp = _ledger_files._create_locked_temp(final)
    try:
        assert ledger.cleanup_orphans() == 0
        assert temp.exists()
    finally:
        os.close(fd)  # the writer "dies": its lock goes with it
    assert ledger.cleanup_orphans() == 1
    assert not temp.exists()


# --- damaged, foreign and newer databases ---------------------------------------------------------


def test_a_corrupt_database_is_reported_and_left_alone(home: Path) -> None:
    home.mkdir()
    db = home / "ledger.sqlite3"
    garbage = b"this is not an SQLite database, it was torn\x00" * 200
    db.write_bytes(garbage)
    with pytest.raises(LedgerError, match="damaged") as info:
        Ledger(home)
    message = str(info.value)
    assert str(db) in message and "Move the file aside" in message and "runs list" in message
    assert db.read_bytes() == garbage  # never recreated behind the user's back


def test_a_truncated_database_is_reported(home: Path) -> None:
    with Ledger(home) as ledger:
        for n in range(200):
            intent(ledger, f"fp-{n}", keys=tuple(f"r{i}" for i in range(50)))
    db = home / "ledger.sqlite3"
    with db.open("r+b") as handle:
        handle.truncate(db.stat().st_size // 2)
    with pytest.raises(LedgerError, match="damaged"), Ledger(home) as ledger:
        ledger.submissions()


def test_a_newer_schema_is_refused(home: Path) -> None:
    Ledger(home).close()
    db = home / "ledger.sqlite3"
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA user_version = 99")
    raw.commit()
    raw.close()
    before = db.read_bytes()
    with pytest.raises(LedgerError, match="newer sixtyfour-frames") as info:
        Ledger(home)
    assert str(db) in str(info.value) and "Upgrade" in str(info.value)
    assert db.read_bytes() == before


def test_a_foreign_sqlite_file_is_refused(home: Path) -> None:
    home.mkdir()
    raw = sqlite3.connect(home / "ledger.sqlite3")
    raw.execute("CREATE TABLE notes (text TEXT)")
    raw.commit()
    raw.close()
    with pytest.raises(LedgerError, match="not a sixtyfour-frames ledger"):
        Ledger(home)


def test_an_empty_database_file_becomes_a_ledger(home: Path) -> None:
    home.mkdir()
    (home / "ledger.sqlite3").touch()  # a crash right after creating the file
    with Ledger(home) as ledger:
        assert intent(ledger).state is S.INTENT
