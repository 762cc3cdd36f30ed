"""Side-by-side column work: inline for small inputs, on threads for large ones, order kept."""

from __future__ import annotations

import threading

from sixtyfour_frames._threads import PARALLEL_MIN_ROWS, map_columns


def test_small_inputs_stay_in_the_calling_thread_and_large_ones_use_threads() -> None:
    def where(item: int) -> tuple[int, str]:
        return item * 2, threading.current_thread().name

    small = map_columns(where, [1, 2, 3], rows=PARALLEL_MIN_ROWS - 1)
    assert small == [(2 * item, threading.current_thread().name) for item in (1, 2, 3)]
    large = map_columns(where, list(range(20)), rows=PARALLEL_MIN_ROWS)
    assert [value for value, _ in large] == [2 * item for item in range(20)]  # input order
    assert all(name != threading.current_thread().name for _, name in large)
    assert map_columns(where, [5], rows=10**9) == [(10, threading.current_thread().name)]
