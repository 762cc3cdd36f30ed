"""The ledger's files: where they live, private permissions, inter-process locks, atomic writes.

Everything here is plain file-system work, with no SQLite and no Arrow, so each durability
decision sits in one small function:

* Directories are created 0700 and files 0600 with an explicit ``chmod`` after creation, because
  the mode passed to ``mkdir``/``open`` is filtered by the umask and a permissive umask (000) would
  otherwise leave paid results readable by other users.
* A result file is written to a temporary name in the same directory, flushed and fsynced, renamed
  over its final name with ``os.replace`` (atomic on POSIX and Windows), and the directory is fsynced
  so that the rename itself survives a power cut. A reader therefore sees either nothing or the
  whole file, never half of one.
* Each writer holds an exclusive ``flock`` on its temporary file until the rename is done. A temp
  file whose lock can be taken has no live writer (the kernel drops the lock when a process dies,
  even by SIGKILL), so the clean-up on the next open removes exactly the crash leftovers and never a
  file that another process is still writing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from sixtyfour_frames._crash import crash_point
from sixtyfour_frames._errors import LedgerError

APP_DIR_NAME = "sixtyfour-frames"
HOME_ENV = "SIXTYFOUR_FRAMES_HOME"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
TEMP_PREFIX = ".tmp-"

_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation on raw file descriptors
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_LOCK_POLL_START_S = 0.005
_LOCK_POLL_MAX_S = 0.05
_TEMP_LOCK_TIMEOUT_S = 10.0


# --- where the ledger lives -----------------------------------------------------------------


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
    """The explicit argument, else ``$SIXTYFOUR_FRAMES_HOME``, else the per-user cache directory."""
    if home is not None:
        return Path(home).expanduser()
    from_env = os.environ.get(HOME_ENV, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    return default_cache_root() / APP_DIR_NAME


def is_default_home(path: Path) -> bool:
    """Whether ``path`` is the per-user default, a directory the ledger owns outright."""
    return path == default_cache_root() / APP_DIR_NAME


def default_cache_root() -> Path:
    """The platform's per-user cache directory, found without any extra dependency."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA", "").strip()
        return Path(local) if local else Path.home() / "AppData" / "Local"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    # The XDG spec says a relative value is invalid and must be ignored.
    return Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"


# --- private directories and files ----------------------------------------------------------


def ensure_private_dir(path: Path, *, tighten_existing: bool) -> None:
    """Create ``path`` (and its parents) and make it 0700.

    A directory that already exists is tightened only when ``tighten_existing`` is set: the ledger's
    own sub-directories always are, but a home directory chosen by the user is left as it is (its
    files are 0600 anyway).
    """
    try:
        existed = path.is_dir()
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        if not existed or tighten_existing:
            _chmod_if_needed(path, PRIVATE_DIR_MODE)
    except OSError as exc:
        raise LedgerError(
            f"cannot create the ledger directory {path}: {exc.strerror or exc}",
            hint=f"Set {HOME_ENV} (or pass home=) to a writable local directory.",
        ) from exc


def open_private(path: Path, flags: int) -> int:
    """``os.open`` that creates a missing file as 0600 and tightens an existing one to 0600."""
    fd = os.open(path, flags | os.O_CREAT | _BINARY, PRIVATE_FILE_MODE)
    try:
        _chmod_if_needed(path, PRIVATE_FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def touch_private(path: Path) -> None:
    """Make sure ``path`` exists and is 0600 before another library (SQLite) opens it.

    SQLite creates its ``-wal`` and ``-shm`` files with the permissions of the database file, so a
    0600 database file gives 0600 companions whatever the umask.
    """
    os.close(open_private(path, os.O_RDWR))


def tighten_if_present(path: Path) -> None:
    """Bring an existing file down to 0600 (a companion file made by an older version, say)."""
    with contextlib.suppress(FileNotFoundError):
        _chmod_if_needed(path, PRIVATE_FILE_MODE)


def _chmod_if_needed(path: Path, mode: int) -> None:
    # On Windows chmod only toggles the read-only flag; the per-user profile directory is what keeps
    # the files private there.
    if sys.platform != "win32" and (os.stat(path).st_mode & 0o777) != mode:
        os.chmod(path, mode)


def safe_file_stem(text: str, *, max_len: int = 48) -> str:
    """A file-name stem for arbitrary text: readable, free of separators, and collision-free.

    The hash suffix keeps two different texts apart even when their readable parts coincide after
    the unsafe characters are replaced.
    """
    readable = _UNSAFE_NAME_CHARS.sub("_", text)[:max_len]
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{readable}-{digest}"


# --- inter-process locks --------------------------------------------------------------------


@contextlib.contextmanager
def exclusive_file_lock(path: Path, *, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a 0600 file that is created if missing).

    ``flock`` locks belong to an open file description, so two threads of one process exclude each
    other as well as two processes do; the lock is not reentrant. The lock file is never deleted:
    deleting it would let a late arrival lock a fresh inode while the old one is still held.
    """
    fd = open_private(path, os.O_RDWR)
    try:
        _acquire(fd, path, timeout=timeout)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, *, timeout: float) -> None:
    """Poll a non-blocking lock with a short back-off, so the timeout is honoured exactly."""
    deadline = time.monotonic() + max(timeout, 0.0)
    pause = _LOCK_POLL_START_S
    while not _try_lock(fd):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LedgerError(
                f"timed out after {timeout:g} s waiting for the lock file {path}",
                hint=(
                    "Another sixtyfour-frames process (a running enrich call?) holds it. Wait for "
                    "it to finish or stop it: the lock is released as soon as that process exits."
                ),
            )
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, _LOCK_POLL_MAX_S)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)  # msvcrt locks bytes from the current position
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


# --- atomic writes --------------------------------------------------------------------------


def write_atomically(final: Path, write: Callable[[BinaryIO], None]) -> int:
    """Write ``final`` all at once: temp file, fsync, rename, directory fsync. Returns its size.

    If anything fails (or the process is interrupted) the temp file is removed and ``final`` is
    untouched; if the process is killed, the temp file stays behind unlocked and the next
    :func:`remove_abandoned_temps` deletes it. ``final`` is never visible half-written.
    """
    fd, temp = _create_locked_temp(final)
    try:
        with open(fd, "wb", closefd=False) as stream:
            write(stream)
            stream.flush()
        crash_point("mid_result_write")
        os.fsync(fd)  # the bytes are on disk before any name points at them
        size = os.fstat(fd).st_size
        publish(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise
    finally:
        os.close(fd)  # releases the writer's lock only now, after the rename
    return size


def publish(temp: Path, final: Path) -> None:
    """Atomically give ``temp`` its final name and make the rename durable."""
    os.replace(temp, final)
    fsync_dir(final.parent)


def fsync_dir(directory: Path) -> None:
    """Persist a directory entry (a rename). Windows has no directory handles for this; NTFS
    journals its metadata, so skipping it there is the documented practice."""
    if sys.platform == "win32":  # pragma: no cover
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_locked_temp(final: Path) -> tuple[int, Path]:
    """A new 0600 temp file next to ``final``, locked by this writer.

    The lock is taken after creation, so a concurrent clean-up could lock and delete the file in
    between; the writer then sees that its path no longer names its file and starts again.
    """
    while True:
        temp = final.with_name(f"{TEMP_PREFIX}{final.name}.{secrets.token_hex(6)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, PRIVATE_FILE_MODE)
        try:
            _chmod_if_needed(temp, PRIVATE_FILE_MODE)
            _acquire(fd, temp, timeout=_TEMP_LOCK_TIMEOUT_S)
            if _still_named(temp, fd):
                return fd, temp
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.remove(temp)
            raise
        os.close(fd)


def _still_named(path: Path, fd: int) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except FileNotFoundError:
        return False


def remove_abandoned_temps(directory: Path) -> int:
    """Delete the temp files of writers that died mid-write; returns how many were removed."""
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith(TEMP_PREFIX)]
    except FileNotFoundError:
        return 0
    return sum(
        _remove_if_abandoned(Path(e.path)) for e in entries if e.is_file(follow_symlinks=False)
    )


def _remove_if_abandoned(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | _BINARY)
    except FileNotFoundError:
        return False  # its writer has just published it under the final name
    try:
        if not _try_lock(fd):
            return False  # a live writer holds it
        try:
            # Removed while we hold the lock, so a writer that locks after us sees the name gone.
            os.remove(path)
        except (FileNotFoundError, PermissionError):
            return False  # published meanwhile, or (Windows) still open elsewhere
        return True
    finally:
        os.close(fd)
