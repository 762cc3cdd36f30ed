"""Side-by-side work for large inputs only.

Arrow and numpy kernels release the GIL, so independent columns can be processed on several
cores; but starting a pool of threads costs about as much as a small frame's whole work, so
small inputs stay in the calling thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

import pyarrow as pa

T = TypeVar("T")
R = TypeVar("R")

PARALLEL_MIN_ROWS: Final = 50_000


def map_columns(
    work: Callable[[T], R], items: Sequence[T], *, rows: int, workers: int | None = None
) -> list[R]:
    """``[work(item) for item in items]``, on threads when ``rows`` is large enough to pay."""
    if rows < PARALLEL_MIN_ROWS or len(items) < 2:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers or max(1, pa.cpu_count())) as pool:
        return list(pool.map(work, items))
