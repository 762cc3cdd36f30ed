"""The download worker of the poll loop: order, waiting, errors and closing."""

from __future__ import annotations

import threading

import pytest

from sixtyfour_frames._downloads import Downloads


def test_fetches_run_one_at_a_time_off_the_calling_thread_and_come_back_in_order() -> None:
    seen: list[tuple[str, str]] = []

    def fetch(work: str) -> str:
        seen.append((work, threading.current_thread().name))
        return work.upper()

    downloads: Downloads[str, str] = Downloads(fetch)
    for work in ("a", "b", "c"):
        downloads.start(work)
    downloads.wait(all_of_them=True)
    taken = downloads.finished()
    assert [(work, future.result()) for work, future in taken] == [
        ("a", "A"),
        ("b", "B"),
        ("c", "C"),
    ]
    assert [work for work, _ in seen] == ["a", "b", "c"]
    assert all(name.startswith("sixtyfour-download") for _, name in seen)
    assert not downloads and downloads.finished() == []
    downloads.close()


def test_a_finished_fetch_waits_behind_an_older_one_and_errors_reach_the_caller() -> None:
    release = threading.Event()

    def fetch(work: str) -> str:
        if work == "slow":
            release.wait(5)
            raise OSError("connection reset")
        return work

    downloads: Downloads[str, str] = Downloads(fetch)
    downloads.start("slow")
    downloads.start("fast")
    downloads.wait(0.05)
    assert downloads.finished() == []  # "fast" cannot run, and is never taken, before "slow"
    release.set()
    downloads.wait(all_of_them=True)
    (slow, failed), (fast, done) = downloads.finished()
    assert (slow, fast, done.result()) == ("slow", "fast", "fast")
    with pytest.raises(OSError, match="reset"):
        failed.result()
    downloads.close()


def test_close_lets_the_fetch_in_flight_finish_and_drops_the_rest() -> None:
    started, release = threading.Event(), threading.Event()
    stored: list[str] = []

    def fetch(work: str) -> str:
        started.set()
        release.wait(5)
        stored.append(work)
        return work

    downloads: Downloads[str, str] = Downloads(fetch)
    downloads.start("paid")
    downloads.start("queued")
    assert started.wait(5)
    closing = threading.Thread(target=downloads.close)
    closing.start()
    release.set()
    closing.join(5)
    assert stored == ["paid"] and not downloads
