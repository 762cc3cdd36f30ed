"""Finished runs' rows, fetched on a worker thread while the poll loop goes on.

A download is two requests, a parse and an fsynced write: often longer than a poll interval.
Done inline, it held up the detection of the next finished run and the start of the next chunk,
for every run of the call. Here the loop hands a finished run over and keeps polling and
submitting; it takes the rows back when they are stored.

One worker: downloads still happen one at a time, in the order the runs finished, so the order
of requests per route is the same as it was inline.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

W = TypeVar("W")
R = TypeVar("R")


class Downloads(Generic[W, R]):
    """``fetch(work)`` for each handed-over work, on one worker thread, results taken in order."""

    def __init__(self, fetch: Callable[[W], R]) -> None:
        self._fetch = fetch
        self._pool: ThreadPoolExecutor | None = None
        self._running: list[tuple[W, Future[R]]] = []

    def __bool__(self) -> bool:
        return bool(self._running)

    def start(self, work: W) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sixtyfour-download")
        self._running.append((work, self._pool.submit(self._fetch, work)))

    def finished(self) -> list[tuple[W, Future[R]]]:
        """The works whose fetch has ended (in the order they were started), no longer tracked.

        Stops at the first one still running, so that works are always taken in order.
        """
        done: list[tuple[W, Future[R]]] = []
        while self._running and self._running[0][1].done():
            done.append(self._running.pop(0))
        return done

    def wait(self, timeout: float | None = None, *, all_of_them: bool = False) -> None:
        """Block until the oldest fetch ends (or every fetch), or ``timeout`` seconds pass."""
        if not self._running:
            return
        if all_of_them:
            wait([future for _, future in self._running], timeout=timeout)
        else:
            wait([self._running[0][1]], timeout=timeout, return_when=FIRST_COMPLETED)

    def close(self) -> None:
        """Let the fetch in flight finish (its rows are paid for), drop the ones not started."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._running.clear()
