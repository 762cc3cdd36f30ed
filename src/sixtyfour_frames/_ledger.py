"""The local ledger that makes every paid run recoverable.

It records each logical submission *before* its POST (the intent, with the Idempotency-Key that
every attempt will reuse) and the job id right after; it keeps every downloaded result as Parquet so
a paid result is never lost; and it answers which records a workflow + ``specs_override`` scope has
already enriched (the row cache). No HTTP and no dataframes here: SQLite (stdlib) and pyarrow only.

Layout of a ledger home (directories 0700, files 0600)::

    ledger.sqlite3 (+ -wal, -shm)   submissions, result metadata, row cache
    results/<job>-<hash>.parquet    one file per downloaded run, written atomically
    locks/<name>-<hash>.lock        inter-process locks taken with Ledger.lock()

Threads: one SQLite connection per :class:`Ledger`, used under an ``RLock``, so every method is
atomic with respect to the other threads of the process; Parquet files are read and written outside
that lock. Processes: SQLite's own locking (WAL, ``BEGIN IMMEDIATE``, a 30 s busy timeout) keeps
each method atomic, and :meth:`Ledger.lock` serialises longer sequences such as "look up, POST,
record the job id". A ledger must not be carried across ``fork()``: open a new one in the child.
The home must be on a local disk (SQLite's WAL mode does not work over network file systems).

The API key has no place in this module and must never be passed to it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pyarrow as pa
import pyarrow.parquet as pq

from sixtyfour_frames._errors import InvalidArgumentError, LedgerError
from sixtyfour_frames._ledger_cache import (
    KeyBatch,
    Keys,
    checked_key_array,
    count_distinct,
    count_present,
    decode,
    digest,
    encode,
    find,
    fresh_batch,
    key_list,
    latest,
    merge,
    newest_to_merge,
    split_for_storage,
    without,
)
from sixtyfour_frames._ledger_db import (
    DB_FILE_NAME,
    open_database,
    translate_errors,
    write_transaction,
)
from sixtyfour_frames._ledger_files import (
    ensure_private_dir,
    exclusive_file_lock,
    is_default_home,
    remove_abandoned_temps,
    resolve_home,
    safe_file_stem,
    write_atomically,
)
from sixtyfour_frames._ledger_submissions import (
    ALLOWED_TRANSITIONS,
    RETIRABLE_STATES,
    Submission,
    SubmissionState,
    check_job_unclaimed,
    check_same_body,
    check_same_job,
    check_transition,
    current_row,
    lastrowid,
    require_current,
    row_by_id,
    submission_filters,
    submission_from_row,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "RETIRABLE_STATES",
    "Ledger",
    "Submission",
    "SubmissionState",
]

logger = logging.getLogger("sixtyfour_frames")
_S = SubmissionState

RESULTS_DIR_NAME = "results"
LOCKS_DIR_NAME = "locks"


class Ledger:
    """The ledger at ``home`` (or ``$SIXTYFOUR_FRAMES_HOME``, or the per-user cache directory).

    Opening it checks the database (a damaged, foreign or newer-schema file raises
    :class:`LedgerError`; it is never recreated silently) and removes the temp files that a crash
    in the middle of :meth:`store_results` left behind.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._home = resolve_home(home)
        self._clock = clock
        self._mutex = threading.RLock()
        self._owner_pid = os.getpid()
        self._conn: sqlite3.Connection | None = None
        ensure_private_dir(self._home, tighten_existing=is_default_home(self._home))
        ensure_private_dir(self._results_dir, tighten_existing=True)
        ensure_private_dir(self._locks_dir, tighten_existing=True)
        self._conn = open_database(self._db_path)
        try:
            self.cleanup_orphans()
        except BaseException:
            self.close()
            raise

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self._home

    @property
    def db_path(self) -> Path:
        return self._db_path

    @property
    def _db_path(self) -> Path:
        return self._home / DB_FILE_NAME

    @property
    def _results_dir(self) -> Path:
        return self._home / RESULTS_DIR_NAME

    @property
    def _locks_dir(self) -> Path:
        return self._home / LOCKS_DIR_NAME

    def close(self) -> None:
        """Close the database connection. Idempotent; the ledger cannot be used afterwards."""
        with self._mutex:
            conn, self._conn = self._conn, None
            if conn is not None and os.getpid() == self._owner_pid:
                conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger(home={str(self._home)!r})"

    # --- inter-process lock ---------------------------------------------------------------------

    def lock_path(self, name: str) -> Path:
        """The lock file used by :meth:`lock` for ``name``."""
        _require_text(name=name)
        return self._locks_dir / f"{safe_file_stem(name)}.lock"

    @contextlib.contextmanager
    def lock(self, name: str, *, timeout: float = 30.0) -> Iterator[None]:
        """Hold the inter-process exclusive lock ``name`` (e.g. one per fingerprint).

        Taken with ``flock`` (``msvcrt.locking`` on Windows) on a 0600 file under ``locks/``; the
        operating system releases it when the holder dies, so a crash never leaves it stuck. It also
        excludes other threads of this process, and it is not reentrant. Raises
        :class:`LedgerError` naming the lock file after ``timeout`` seconds.
        """
        with exclusive_file_lock(self.lock_path(name), timeout=timeout):
            yield

    # --- submissions ----------------------------------------------------------------------------

    def record_intent(
        self,
        *,
        fingerprint: str,
        workflow_id: str,
        scope: str,
        body_sha256: str,
        record_keys: Keys,
        call_id: str | None = None,
    ) -> Submission:
        """Record (durably, before returning) the intent to submit, with a fresh Idempotency-Key.

        Idempotent: when the fingerprint already has a current submission it is returned unchanged,
        with the same key, whatever its state, so a repeated call re-attaches instead of paying
        again. The exceptions: a FAILED_NO_RUN submission is retired automatically and replaced by a
        new one with a new key (no run exists, and the server may have stored the rejection under
        the old key); a superseded one is history. A current submission with another
        ``body_sha256`` raises :class:`LedgerError`: reusing its key for a different body would be a
        fingerprint collision or a bug, and the server would reject it anyway.
        """
        _require_text(
            fingerprint=fingerprint, workflow_id=workflow_id, scope=scope, body_sha256=body_sha256
        )
        keys = key_list(record_keys)
        if not keys:
            raise InvalidArgumentError("record_intent needs at least one record key")
        with self._write() as conn:
            current = current_row(conn, fingerprint)
            if current is not None and current["state"] != _S.FAILED_NO_RUN:
                check_same_body(current, body_sha256)
                return submission_from_row(current)
            replaces = self._retire_before_new_intent(conn, fingerprint, current)
            now = self._clock()
            cursor = conn.execute(
                "INSERT INTO submissions (fingerprint, workflow_id, scope, idempotency_key,"
                " body_sha256, record_keys, state, created_at, updated_at, call_id, replaces)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fingerprint,
                    workflow_id,
                    scope,
                    str(uuid.uuid4()),
                    body_sha256,
                    json.dumps(keys),
                    _S.INTENT.value,
                    now,
                    now,
                    call_id,
                    replaces,
                ),
            )
            return submission_from_row(row_by_id(conn, lastrowid(cursor)))

    def _retire_before_new_intent(
        self, conn: sqlite3.Connection, fingerprint: str, current: sqlite3.Row | None
    ) -> str | None:
        """Retire a FAILED_NO_RUN current row; return the key the new submission replaces."""
        if current is not None:
            conn.execute(
                "UPDATE submissions SET superseded_at = ? WHERE id = ?",
                (self._clock(), current["id"]),
            )
            return str(current["idempotency_key"])
        row = conn.execute(
            "SELECT idempotency_key FROM submissions WHERE fingerprint = ?"
            " ORDER BY superseded_at DESC, id DESC LIMIT 1",
            (fingerprint,),
        ).fetchone()
        return None if row is None else str(row[0])

    def submission(self, fingerprint: str) -> Submission | None:
        """The current (not superseded) submission of ``fingerprint``, if any."""
        with self._read() as conn:
            row = current_row(conn, fingerprint)
        return None if row is None else submission_from_row(row)

    def by_job_id(self, job_id: str) -> Submission | None:
        """The submission that owns run ``job_id`` (each run belongs to at most one)."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM submissions WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else submission_from_row(row)

    def submissions(
        self,
        *,
        workflow_id: str | None = None,
        states: Collection[SubmissionState] | None = None,
        call_id: str | None = None,
        include_superseded: bool = False,
    ) -> list[Submission]:
        """Submissions matching every filter given, newest first (superseded ones on request)."""
        if states is not None and not states:
            return []
        where, params = submission_filters(workflow_id, states, call_id, include_superseded)
        sql = f"SELECT * FROM submissions{where} ORDER BY created_at DESC, id DESC"
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [submission_from_row(row) for row in rows]

    def mark_submitted(
        self, fingerprint: str, *, job_id: str, already_started: bool | None
    ) -> Submission:
        """Record the job id the server returned (durably, before returning).

        Idempotent for the same job id, in any state. A different job id for a submission that
        already has one, or a job id that another submission owns, raises :class:`LedgerError`:
        either means two runs for one chunk, i.e. a possible double charge the caller must see.
        """
        _require_text(job_id=job_id)
        with self._write() as conn:
            row = require_current(conn, fingerprint)
            if row["job_id"] is not None:
                check_same_job(row, job_id)
                return submission_from_row(self._fill_already_started(conn, row, already_started))
            check_transition(row, _S.SUBMITTED)
            check_job_unclaimed(conn, job_id)
            conn.execute(
                "UPDATE submissions SET state = ?, job_id = ?, already_started = ?, error = NULL,"
                " updated_at = ? WHERE id = ?",
                (_S.SUBMITTED.value, job_id, already_started, self._clock(), row["id"]),
            )
            return submission_from_row(row_by_id(conn, row["id"]))

    def _fill_already_started(
        self, conn: sqlite3.Connection, row: sqlite3.Row, already_started: bool | None
    ) -> sqlite3.Row:
        if row["already_started"] is not None or already_started is None:
            return row
        conn.execute(
            "UPDATE submissions SET already_started = ?, updated_at = ? WHERE id = ?",
            (already_started, self._clock(), row["id"]),
        )
        return row_by_id(conn, row["id"])

    def mark(
        self, fingerprint: str, state: SubmissionState, *, error: str | None = None
    ) -> Submission:
        """Move a submission to ``state`` (durably), following :data:`ALLOWED_TRANSITIONS`.

        A change of state replaces ``error`` with the one given (``None`` clears it); re-marking
        the same state keeps the recorded error unless a new one is given. Use
        :meth:`mark_submitted` for SUBMITTED, which needs a job id.
        """
        state = SubmissionState(state)
        if state is _S.SUBMITTED:
            raise LedgerError("use mark_submitted(...) to record a job id and the SUBMITTED state")
        with self._write() as conn:
            row = require_current(conn, fingerprint)
            check_transition(row, state)
            same_state = row["state"] == state.value
            new_error = row["error"] if same_state and error is None else error
            conn.execute(
                "UPDATE submissions SET state = ?, error = ?, updated_at = ? WHERE id = ?",
                (state.value, new_error, self._clock(), row["id"]),
            )
            return submission_from_row(row_by_id(conn, row["id"]))

    def supersede(self, fingerprint: str) -> None:
        """Retire a FAILED/CANCELLED/FAILED_NO_RUN submission, so the next :meth:`record_intent`
        makes a new one with a new key. The old row stays as history. No-op when nothing is current.

        Any other state raises :class:`LedgerError`: its run may exist or still be starting, and a
        fresh key would pay for the same records twice.
        """
        with self._write() as conn:
            row = current_row(conn, fingerprint)
            if row is None:
                return
            if SubmissionState(row["state"]) not in RETIRABLE_STATES:
                raise LedgerError(
                    f"submission {fingerprint} is {row['state']} and cannot be superseded",
                    hint="Only failed, cancelled or failed_no_run submissions can be; a pending "
                    "one may own a run, and a new key would pay for the same records twice.",
                )
            conn.execute(
                "UPDATE submissions SET superseded_at = ? WHERE id = ?",
                (self._clock(), row["id"]),
            )

    # --- results --------------------------------------------------------------------------------

    def result_path(self, job_id: str) -> Path:
        """Where the results of ``job_id`` are (or would be) stored."""
        _require_text(job_id=job_id)
        return self._results_dir / f"{safe_file_stem(job_id)}.parquet"

    def store_results(self, job_id: str, table: pa.Table) -> Path:
        """Keep the downloaded results of ``job_id`` as Parquet; returns the file's path.

        Written to a temp file in the same directory, fsynced, renamed into place and the directory
        fsynced (see :mod:`._ledger_files`), then recorded in the database. Idempotent: results
        already stored for ``job_id`` are kept as they are and never overwritten.
        """
        final = self.result_path(job_id)
        self._connection()  # fail before writing anything when closed
        if final.exists():
            self._adopt_result_file(job_id, final)
            return final
        n_bytes = self._write_parquet(job_id, final, table)
        with self._write() as conn:
            _upsert_result(conn, job_id, final.name, table.num_rows, n_bytes, self._clock())
        return final

    def _write_parquet(self, job_id: str, final: Path, table: pa.Table) -> int:
        try:
            return write_atomically(final, lambda stream: _write_table(table, stream))
        except (pa.ArrowException, OSError) as exc:
            raise LedgerError(
                f"cannot store the results of job {job_id} in {final}: {exc}",
                hint="Nothing was lost on the server: free disk space or fix the cause, then "
                f"download them again with download_results({job_id!r}).",
            ) from exc

    def _adopt_result_file(self, job_id: str, final: Path) -> None:
        """Record a published file whose database row is missing (a crash between the two)."""
        with self._read() as conn:
            if _result_row(conn, job_id) is not None:
                return
        n_rows = self._parquet_row_count(job_id, final)
        with self._write() as conn:
            n_bytes = final.stat().st_size
            _insert_result_if_missing(conn, job_id, final.name, n_rows, n_bytes, self._clock())

    def load_results(self, job_id: str) -> pa.Table | None:
        """The stored results of ``job_id``, or ``None`` when none are stored."""
        final = self.result_path(job_id)
        if not final.exists():
            self._warn_if_recorded_but_missing(job_id, final)
            return None
        table = self._read_parquet(job_id, final)
        if table.num_columns == 0:  # Parquet keeps no row count without columns
            table = _empty_rows(self._recorded_row_count(job_id, default=table.num_rows))
        return table

    def has_results(self, job_id: str) -> bool:
        """Whether results of ``job_id`` are stored (a published file exists)."""
        return self.result_path(job_id).exists()

    def _read_parquet(self, job_id: str, path: Path) -> pa.Table:
        try:
            with pq.ParquetFile(path, memory_map=False) as parquet:
                return parquet.read()
        except (pa.ArrowException, OSError) as exc:
            raise self._unreadable_results(job_id, path, exc) from exc

    def _parquet_row_count(self, job_id: str, path: Path) -> int:
        try:
            return int(pq.read_metadata(path).num_rows)
        except (pa.ArrowException, OSError) as exc:
            raise self._unreadable_results(job_id, path, exc) from exc

    def _unreadable_results(self, job_id: str, path: Path, exc: Exception) -> LedgerError:
        return LedgerError(
            f"the stored results of job {job_id} in {path} are unreadable: {exc}",
            hint=f"Delete that file and download them again with download_results({job_id!r})"
            "; the server keeps them.",
        )

    def _warn_if_recorded_but_missing(self, job_id: str, path: Path) -> None:
        with self._read() as conn:
            recorded = _result_row(conn, job_id) is not None
        if recorded:
            logger.warning(
                "the stored results of job %s (%s) have been deleted; download them again",
                job_id,
                path,
            )

    def _recorded_row_count(self, job_id: str, *, default: int) -> int:
        with self._read() as conn:
            row = _result_row(conn, job_id)
        return default if row is None else int(row["n_rows"])

    # --- row cache ------------------------------------------------------------------------------

    def cache_put(self, scope: str, record_keys: Keys, job_id: str) -> None:
        """Record that run ``job_id`` enriched ``record_keys`` in ``scope``; the latest put wins.

        The run's results must already be stored (:meth:`store_results`), so a cache entry always
        points at rows that exist locally. A record with no output rows is still "done". Repeating
        the same put (a retry) stores nothing new. See :mod:`._ledger_cache` for the format.
        """
        _require_text(scope=scope, job_id=job_id)
        keys = checked_key_array(record_keys)
        if not len(keys):
            return
        self._require_stored_results(job_id)
        with self._read() as conn:
            result_id = _require_result_id(conn, job_id)  # results rows are never deleted
        pieces = split_for_storage(fresh_batch(keys, result_id))
        blobs = [encode(piece) for piece in pieces]  # CPU work, outside the database lock
        with self._write() as conn:
            scope_id = _create_scope_id(conn, scope)
            for piece, blob in zip(pieces, blobs, strict=True):
                _insert_batch(conn, scope_id, piece, blob)
            self._merge_small_batches(conn, scope_id)

    def _require_stored_results(self, job_id: str) -> None:
        if not self.has_results(job_id):
            raise LedgerError(
                f"cannot cache records for job {job_id}: its results are not stored",
                hint="Call store_results(job_id, table) first.",
            )
        self._adopt_result_file(job_id, self.result_path(job_id))

    def _merge_small_batches(self, conn: sqlite3.Connection, scope_id: int) -> None:
        """Merge the newest run of small batches once it is long (one batch per chunk adds up)."""
        sizes = conn.execute(
            "SELECT id, key_bytes FROM cache_batches WHERE scope_id = ? ORDER BY id DESC",
            (scope_id,),
        ).fetchall()
        ids = [row_id for row_id, _ in sizes[: newest_to_merge([size for _, size in sizes])]]
        if not ids:
            return
        merged = merge([batch for _, batch in self._batches(conn, scope_id, only=ids)])
        conn.executemany("DELETE FROM cache_batches WHERE id = ?", [(row_id,) for row_id in ids])
        for piece in split_for_storage(merged):  # inserted last: the merged run stays the newest
            _insert_batch(conn, scope_id, piece, encode(piece))

    def cache_lookup(self, scope: str, record_keys: Keys) -> dict[str, str]:
        """``{record key: job id}`` for the keys already enriched in ``scope`` (latest put wins).

        One query reads the scope's key batches; the matching is done by Arrow hash kernels over
        whole arrays, not one probe per key.
        """
        _require_text(scope=scope)
        query = checked_key_array(record_keys)
        with self._read() as conn:
            scope_id = _find_scope_id(conn, scope)
            if scope_id is None or not len(query):
                return {}
            batches = [batch for _, batch in self._batches(conn, scope_id)]
        keys, owners = find(query, batches)
        return latest(keys, owners, self._job_ids(set(owners))) if keys else {}

    def cache_forget(self, scope: str, record_keys: Keys | None = None) -> int:
        """Forget cached records of ``scope`` (all of them when ``record_keys`` is None); returns
        how many distinct records were forgotten. The stored results themselves are kept."""
        _require_text(scope=scope)
        removed = None if record_keys is None else checked_key_array(record_keys)
        with self._write() as conn:
            scope_id = _find_scope_id(conn, scope)
            if scope_id is None:
                return 0
            stored = self._batches(conn, scope_id)
            batches = [batch for _, batch in stored]
            if removed is None:
                conn.execute("DELETE FROM cache_batches WHERE scope_id = ?", (scope_id,))
                return count_distinct(batches)
            forgotten = count_present(removed, batches)
            for row_id, batch in stored:
                _rewrite_batch(conn, row_id, batch, without(batch, removed))
            return forgotten

    def _batches(
        self, conn: sqlite3.Connection, scope_id: int, *, only: Collection[int] | None = None
    ) -> list[tuple[int, KeyBatch]]:
        """The scope's batches (or only those with the given ids), newest first."""
        if only is None:
            rows = conn.execute(
                "SELECT id, record_keys FROM cache_batches WHERE scope_id = ? ORDER BY id DESC",
                (scope_id,),
            ).fetchall()
        else:  # read just these blobs: the scope's large batches may weigh tens of MB
            rows = conn.execute(
                "SELECT id, record_keys FROM cache_batches WHERE scope_id = ?"
                " AND id IN (SELECT value FROM json_each(?)) ORDER BY id DESC",
                (scope_id, json.dumps(sorted(only))),
            ).fetchall()
        return [(row_id, self._decode(blob)) for row_id, blob in rows]

    def _decode(self, blob: bytes) -> KeyBatch:
        try:
            return decode(blob)
        except (pa.ArrowException, OSError) as exc:
            raise self._damaged_cache(exc) from exc

    def _job_ids(self, result_ids: Collection[int]) -> dict[int, str]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, job_id FROM results WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(result_ids)),),
            ).fetchall()
        job_of = {int(row_id): str(job_id) for row_id, job_id in rows}
        if len(job_of) != len(result_ids):
            raise self._damaged_cache(ValueError("it names results that are not recorded"))
        return job_of

    def _damaged_cache(self, exc: Exception) -> LedgerError:
        return LedgerError(
            f"the row cache in {self._db_path} is damaged: {exc}",
            hint="Run with refresh=True to rebuild this workflow's cache; stored results and "
            "submissions are not affected.",
        )

    # --- maintenance ----------------------------------------------------------------------------

    def cleanup_orphans(self) -> int:
        """Remove temp files left by a crash mid-write; returns how many. Called on open.

        Only files whose writer is gone are removed (their lock can be taken), so this is safe
        while other processes are writing results.
        """
        self._connection()
        removed = remove_abandoned_temps(self._results_dir)
        if removed:
            logger.info("removed %d unfinished result file(s) from %s", removed, self._results_dir)
        return removed

    def verify(self) -> None:
        """Run SQLite's integrity check over the whole database; :class:`LedgerError` if damaged.

        Not done on open (it reads every page); for a CLI "doctor" command or after a scare.
        """
        with self._read() as conn:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
        if problems != ["ok"]:
            raise LedgerError(
                f"the ledger database {self._db_path} is damaged: {'; '.join(problems[:5])}",
                hint="Move it aside to start a new ledger, after checking "
                "`sixtyfour-frames runs list` for the runs it was tracking.",
            )

    # --- connection plumbing --------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(f"{self!r} is closed", hint="Open a new Ledger().")
        if os.getpid() != self._owner_pid:
            # A connection copied by fork() shares SQLite's locks and file offsets with the parent.
            raise LedgerError(
                f"{self!r} was opened in another process",
                hint="Open a new Ledger() in the child process after fork().",
            )
        return self._conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._mutex, translate_errors(self._db_path):
            yield self._connection()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with (
            self._mutex,
            translate_errors(self._db_path),
            write_transaction(self._connection()) as conn,
        ):
            yield conn


# --- row helpers (module level: pure functions of a connection) ---------------------------------


def _result_row(conn: sqlite3.Connection, job_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM results WHERE job_id = ?", (job_id,)
    ).fetchone()
    return row


def _upsert_result(
    conn: sqlite3.Connection, job_id: str, file_name: str, n_rows: int, n_bytes: int, now: float
) -> None:
    conn.execute(
        "INSERT INTO results (job_id, file_name, n_rows, n_bytes, stored_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET file_name = excluded.file_name,"
        " n_rows = excluded.n_rows, n_bytes = excluded.n_bytes, stored_at = excluded.stored_at",
        (job_id, file_name, n_rows, n_bytes, now),
    )


def _insert_result_if_missing(
    conn: sqlite3.Connection, job_id: str, file_name: str, n_rows: int, n_bytes: int, now: float
) -> None:
    conn.execute(
        "INSERT INTO results (job_id, file_name, n_rows, n_bytes, stored_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING",
        (job_id, file_name, n_rows, n_bytes, now),
    )


def _require_result_id(conn: sqlite3.Connection, job_id: str) -> int:
    row = _result_row(conn, job_id)
    if row is None:  # only if the file was deleted while caching
        raise LedgerError(f"the results of job {job_id} disappeared while caching them")
    return int(row["id"])


def _insert_batch(conn: sqlite3.Connection, scope_id: int, batch: KeyBatch, blob: bytes) -> None:
    # REPLACE on a repeated batch gives it a new, larger id: it is the latest put again.
    conn.execute(
        "INSERT OR REPLACE INTO cache_batches"
        " (scope_id, n_keys, key_bytes, keys_sha256, record_keys) VALUES (?, ?, ?, ?, ?)",
        (scope_id, len(batch), batch.key_bytes, digest(blob), blob),
    )


def _rewrite_batch(conn: sqlite3.Connection, row_id: int, old: KeyBatch, kept: KeyBatch) -> None:
    if len(kept) == len(old):
        return
    if not len(kept):
        conn.execute("DELETE FROM cache_batches WHERE id = ?", (row_id,))
        return
    blob = encode(kept)
    conn.execute(
        "UPDATE OR REPLACE cache_batches SET n_keys = ?, key_bytes = ?, keys_sha256 = ?,"
        " record_keys = ? WHERE id = ?",
        (len(kept), kept.key_bytes, digest(blob), blob, row_id),
    )


def _find_scope_id(conn: sqlite3.Connection, scope: str) -> int | None:
    row = conn.execute("SELECT id FROM scopes WHERE scope = ?", (scope,)).fetchone()
    return None if row is None else int(row[0])


def _create_scope_id(conn: sqlite3.Connection, scope: str) -> int:
    found = _find_scope_id(conn, scope)
    if found is not None:
        return found
    return lastrowid(conn.execute("INSERT INTO scopes (scope) VALUES (?)", (scope,)))


# --- small value helpers ----------------------------------------------------------------------


def _write_table(table: pa.Table, stream: Any) -> None:
    # zstd: result rows are mostly text and compress several-fold at little CPU cost.
    # Non-compliant nested types keep Arrow's own list field names ("item"), so a table reads
    # back with exactly the schema it was stored with.
    pq.write_table(table, stream, compression="zstd", use_compliant_nested_type=False)


def _empty_rows(n_rows: int) -> pa.Table:
    return pa.Table.from_pylist([{}] * n_rows)


def _require_text(**values: object) -> None:
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise InvalidArgumentError(f"{name} must be a non-empty string, got {value!r}")
