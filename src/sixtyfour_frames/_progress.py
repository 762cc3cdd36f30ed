"""Progress of one enrich call: poll events in, one tqdm bar (or log lines, or a callback) out.

``progress=None`` picks what fits where the code runs: a notebook widget when ipywidgets is there,
a text bar on a terminal, and a log line now and then when there is no terminal (cron, CI,
Airflow), so logs are not flooded with bar redraws. The bar never goes backwards, even when the
server's status does.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sixtyfour_frames._models import LiveStatus

logger = logging.getLogger("sixtyfour_frames")


@dataclass(frozen=True)
class ProgressSnapshot:
    """What a progress callback receives after every poll."""

    rows_total: int  # rows this call sends to the server (after dedup and cache)
    rows_done: float  # rows the server has processed so far, across all runs
    rows_cached: int  # rows served from the local ledger instead of paid again
    runs: Mapping[str, str]  # job id → status
    current_block: str | None = None
    message: str | None = None

    @property
    def fraction(self) -> float:
        return 1.0 if self.rows_total == 0 else min(1.0, self.rows_done / self.rows_total)


ProgressCallback = Callable[[ProgressSnapshot], object]
ProgressOption = bool | None | ProgressCallback


class _Sink(Protocol):
    def show(self, snapshot: ProgressSnapshot) -> None: ...
    def close(self) -> None: ...


@dataclass
class ProgressTracker:
    """Turns live statuses of several runs into monotonic snapshots for one sink."""

    rows_total: int
    rows_cached: int
    sink: _Sink
    _rows_by_run: dict[str, int] = field(default_factory=dict)
    _done_by_run: dict[str, float] = field(default_factory=dict)
    _status_by_run: dict[str, str] = field(default_factory=dict)
    _block: str | None = None

    def add_run(self, job_id: str, rows: int, status: str = "queued") -> None:
        self._rows_by_run[job_id] = rows
        self._done_by_run.setdefault(job_id, 0.0)
        self._status_by_run[job_id] = status
        self._emit()

    def observe(self, status: LiveStatus) -> None:
        job_id = status.run_id
        rows = self._rows_by_run.get(job_id, 0)
        done = (
            rows
            if status.overall_status == "completed"
            else rows * (max(0.0, min(100.0, status.overall_progress_percentage)) / 100.0)
        )
        self._done_by_run[job_id] = max(self._done_by_run.get(job_id, 0.0), done)
        self._status_by_run[job_id] = status.overall_status
        self._block = status.current_block or self._block
        self._emit()

    def mark(self, job_id: str, state: str, *, done: bool = False) -> None:
        self._status_by_run[job_id] = state
        if done:
            self._done_by_run[job_id] = float(self._rows_by_run.get(job_id, 0))
        self._emit()

    def message(self, text: str) -> None:
        self._emit(text)

    def snapshot(self, message: str | None = None) -> ProgressSnapshot:
        return ProgressSnapshot(
            rows_total=self.rows_total,
            rows_done=sum(self._done_by_run.values()),
            rows_cached=self.rows_cached,
            runs=dict(self._status_by_run),
            current_block=self._block,
            message=message,
        )

    def _emit(self, message: str | None = None) -> None:
        self.sink.show(self.snapshot(message))

    def close(self) -> None:
        self.sink.close()


def runs_summary(runs: Mapping[str, str]) -> str:
    counts: dict[str, int] = {}
    for state in runs.values():
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


class _Silent:
    def show(self, snapshot: ProgressSnapshot) -> None:
        return None

    def close(self) -> None:
        return None


class _Callback:
    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback

    def show(self, snapshot: ProgressSnapshot) -> None:
        self._callback(snapshot)

    def close(self) -> None:
        return None


class _Bar:
    """A tqdm bar counting rows; run states and the current block in the postfix."""

    def __init__(self, total: int, description: str, *, notebook: bool) -> None:
        if notebook:
            from tqdm.notebook import tqdm as bar_class
        else:
            from tqdm.std import tqdm as bar_class
        self._bar: Any = bar_class(total=total, desc=description, unit="row", dynamic_ncols=True)
        self._shown = 0

    def show(self, snapshot: ProgressSnapshot) -> None:
        done = int(snapshot.rows_done)  # whole rows: "19.14/185" helps nobody
        if done > self._shown:
            self._bar.update(done - self._shown)
            self._shown = done
        postfix = {"runs": runs_summary(snapshot.runs)}
        if snapshot.current_block:
            postfix["block"] = snapshot.current_block
        if snapshot.rows_cached:
            postfix["cached"] = str(snapshot.rows_cached)
        self._bar.set_postfix(postfix, refresh=True)
        if snapshot.message:
            self._bar.write(snapshot.message)

    def close(self) -> None:
        self._bar.close()


class _LogLines:
    """Without a terminal: one INFO line at most every ``interval`` seconds, and at the end."""

    def __init__(
        self, description: str, interval: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._description = description
        self._interval = interval
        self._clock = clock
        self._last = -float("inf")
        self._latest: ProgressSnapshot | None = None

    def show(self, snapshot: ProgressSnapshot) -> None:
        self._latest = snapshot
        if snapshot.message:
            logger.info("%s: %s", self._description, snapshot.message)
        if self._clock() - self._last >= self._interval:
            self._log(snapshot)

    def _log(self, snapshot: ProgressSnapshot) -> None:
        self._last = self._clock()
        logger.info(
            "%s: %.0f/%d rows (%.0f%%), runs: %s%s",
            self._description,
            snapshot.rows_done,
            snapshot.rows_total,
            100 * snapshot.fraction,
            runs_summary(snapshot.runs) or "none",
            f", {snapshot.rows_cached} rows from the ledger" if snapshot.rows_cached else "",
        )

    def close(self) -> None:
        if self._latest is not None:
            self._log(self._latest)


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _widgets_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ipywidgets") is not None


def make_tracker(
    progress: ProgressOption, *, rows_total: int, rows_cached: int, description: str
) -> ProgressTracker:
    """The sink that fits ``progress`` and the place the code runs in."""
    sink: _Sink
    if progress is False:
        sink = _Silent()
    elif callable(progress):
        sink = _Callback(progress)
    elif _in_notebook():
        # tqdm's widget needs ipywidgets; without it, a text bar works everywhere.
        sink = _Bar(rows_total, description, notebook=_widgets_available())
    elif progress is True or sys.stderr.isatty():
        sink = _Bar(rows_total, description, notebook=False)
    else:
        sink = _LogLines(description)
    return ProgressTracker(rows_total=rows_total, rows_cached=rows_cached, sink=sink)
