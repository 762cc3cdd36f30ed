"""The ledger's SQLite database: opening it safely, its schema, transactions and error translation.

Choices, and why:

* WAL mode lets readers proceed while one process writes, and a crash at any instant leaves the
  database at its last committed transaction (SQLite replays or discards the WAL on the next open).
* ``synchronous=FULL`` fsyncs the WAL on every commit. An intent must be on disk before the POST
  that it protects, or a power cut could forget a run that the server has already charged for; the
  cost is one fsync per state change (a few ms).
* Every write runs in ``BEGIN IMMEDIATE``: the write lock is taken up front, so concurrent writers
  queue on the busy timeout instead of failing with ``SQLITE_BUSY`` when a read snapshot has to be
  upgraded, and a check-then-insert (``record_intent``) is atomic across processes.
* The database is never recreated behind the user's back. A file that is not a ledger, is damaged,
  or has a newer schema raises :class:`LedgerError` naming the path: losing the record of an
  in-flight run could make the next call pay for it again.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from sixtyfour_frames._errors import LedgerError
from sixtyfour_frames._ledger_files import tighten_if_present, touch_private

logger = logging.getLogger("sixtyfour_frames")

DB_FILE_NAME = "ledger.sqlite3"
SCHEMA_VERSION = 1
APPLICATION_ID = 0x53463446  # "SF4F": tells our database apart from any other SQLite file
BUSY_TIMEOUT_S = 30.0
_CACHE_SIZE_KIB = (
    65536  # 64 MiB page cache: a million-key cache_put stays off the disk until commit
)

_SCHEMA = (
    # One row per logical submission attempt. A fingerprint has at most one current row; retired
    # (superseded) rows are kept as history and point at nothing but themselves.
    """CREATE TABLE submissions (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        body_sha256 TEXT NOT NULL,
        record_keys TEXT NOT NULL,
        state TEXT NOT NULL,
        job_id TEXT,
        already_started INTEGER,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        error TEXT,
        call_id TEXT,
        superseded_at REAL,
        replaces TEXT
    )""",
    "CREATE UNIQUE INDEX submissions_current ON submissions(fingerprint)"
    " WHERE superseded_at IS NULL",
    # One run belongs to one submission: adopting a job id twice would hide a double charge.
    "CREATE UNIQUE INDEX submissions_job ON submissions(job_id) WHERE job_id IS NOT NULL",
    "CREATE INDEX submissions_history ON submissions(fingerprint, superseded_at)",
    "CREATE INDEX submissions_call ON submissions(call_id) WHERE call_id IS NOT NULL",
    "CREATE INDEX submissions_workflow ON submissions(workflow_id)",
    "CREATE INDEX submissions_created ON submissions(created_at)",
    # The Parquet file of each downloaded run; the file's existence is the source of truth, this
    # row is its metadata and gives the row cache a compact integer to point at.
    """CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL UNIQUE,
        file_name TEXT NOT NULL,
        n_rows INTEGER NOT NULL,
        n_bytes INTEGER NOT NULL,
        stored_at REAL NOT NULL
    )""",
    "CREATE TABLE scopes (id INTEGER PRIMARY KEY, scope TEXT NOT NULL UNIQUE)",
    # The row cache: each put is one (or a few) compressed Arrow blobs of record keys and the
    # results.id holding each key's rows (see _ledger_cache). A larger id is a later put.
    """CREATE TABLE cache_batches (
        id INTEGER PRIMARY KEY,
        scope_id INTEGER NOT NULL REFERENCES scopes(id),
        n_keys INTEGER NOT NULL,
        key_bytes INTEGER NOT NULL,
        keys_sha256 TEXT NOT NULL,
        record_keys BLOB NOT NULL,
        UNIQUE (scope_id, keys_sha256)
    )""",
    "CREATE INDEX cache_batches_scope ON cache_batches(scope_id, id)",
)

_DAMAGED_HINT = (
    "Nothing was sent. Move the file aside (for example rename it to ledger.sqlite3.broken) to "
    "start a new ledger, but first check `sixtyfour-frames runs list` for runs it was tracking: a "
    "new ledger does not know them, and re-running the same call could pay for them again."
)


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the ledger database at ``path``, checked and configured.

    The connection is in autocommit mode (``isolation_level=None``) so that transactions are
    exactly the explicit ``BEGIN IMMEDIATE`` blocks of :func:`write_transaction`. It may be used
    from any thread, but only by one at a time: the caller serialises access.
    """
    try:
        touch_private(path)
    except OSError as exc:
        raise LedgerError(
            f"cannot create the ledger database {path}: {exc.strerror or exc}",
            hint="Set SIXTYFOUR_FRAMES_HOME (or pass home=) to a writable local directory.",
        ) from exc
    with translate_errors(path):
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    conn.row_factory = sqlite3.Row
    try:
        with translate_errors(path):
            _check_identity(conn, path)
            _configure(conn, path)
            _ensure_schema(conn, path)
    except BaseException:
        conn.close()
        raise
    for suffix in ("-wal", "-shm"):
        tighten_if_present(path.with_name(path.name + suffix))
    return conn


def _check_identity(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a newer schema or a foreign SQLite file before anything is written to it."""
    version, app_id, has_tables = _identity(conn)
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"the ledger {path} was written by a newer sixtyfour-frames (schema {version}; this "
            f"version reads up to {SCHEMA_VERSION})",
            hint="Upgrade sixtyfour-frames, or point SIXTYFOUR_FRAMES_HOME at another directory.",
        )
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and has_tables):
        raise LedgerError(
            f"{path} is an SQLite database but not a sixtyfour-frames ledger",
            hint="Point SIXTYFOUR_FRAMES_HOME (or home=) at a directory of its own.",
        )


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    mode = _enable_wal(conn)
    if mode != "wal":
        # Still durable (a rollback journal with synchronous=FULL), only less concurrent.
        logger.warning("the ledger %s cannot use WAL mode (journal_mode=%s)", path, mode)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA fullfsync=ON")  # macOS: a plain fsync does not reach the platter
    conn.execute("PRAGMA foreign_keys=ON")


def _enable_wal(conn: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode=WAL``, the resulting mode. Retried while busy: when several processes
    open a new ledger at once, SQLite answers BUSY at once, without its busy timeout, to the ones
    that ask while another is switching the file to WAL."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _is_busy(exc: sqlite3.Error) -> bool:
    code = str(getattr(exc, "sqlite_errorname", ""))
    return code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema in a fresh database; two processes opening a new home race safely here."""
    with write_transaction(conn):
        version, _, has_tables = _identity(conn)
        if version == SCHEMA_VERSION:
            return  # created meanwhile by another process that opened the same new home
        # Migrations from older schema versions will go here; version 1 is the first.
        if has_tables:  # a foreign writer got in between our identity check and here
            raise LedgerError(f"{path} is not a sixtyfour-frames ledger", hint=_DAMAGED_HINT)
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _identity(conn: sqlite3.Connection) -> tuple[int, int, bool]:
    """(schema version, application id, has tables), read in one statement, so one snapshot.

    Three separate reads could straddle another process's schema creation and see tables but no
    application id yet, which would look like a foreign database.
    """
    version, app_id, has_tables = conn.execute(
        "SELECT (SELECT user_version FROM pragma_user_version),"
        " (SELECT application_id FROM pragma_application_id),"
        " EXISTS (SELECT 1 FROM sqlite_master)"
    ).fetchone()
    return int(version), int(app_id), bool(has_tables)


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (durable on return), rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # also after a failed COMMIT, so the connection stays usable
            conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def translate_errors(path: Path) -> Iterator[None]:
    """Turn ``sqlite3`` errors into :class:`LedgerError` naming the file and what to do."""
    try:
        yield
    except sqlite3.Error as exc:
        raise _ledger_error(exc, path) from exc


def _ledger_error(exc: sqlite3.Error, path: Path) -> LedgerError:
    code = str(getattr(exc, "sqlite_errorname", ""))
    if _is_busy(exc):
        return LedgerError(
            f"the ledger database {path} stayed locked by another process for more than "
            f"{BUSY_TIMEOUT_S:g} s",
            hint="Another sixtyfour-frames process is writing to it; wait for it and run again.",
        )
    if code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return LedgerError(f"the ledger database {path} is damaged ({exc})", hint=_DAMAGED_HINT)
    if code.startswith("SQLITE_FULL"):
        return LedgerError(
            f"the disk holding the ledger {path} is full", hint="Free some space and run again."
        )
    if code.startswith("SQLITE_CONSTRAINT"):
        return LedgerError(f"the ledger {path} refused an inconsistent change ({exc})")
    return LedgerError(f"the ledger database {path} failed: {exc}", hint=_DAMAGED_HINT)
