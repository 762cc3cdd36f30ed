"""Named crash points, so tests can kill a real process exactly where a crash hurts most.

Setting ``SIXTYFOUR_FRAMES_CRASH_AT=<point>`` makes the process SIGKILL itself on reaching that
point (no cleanup, no ``finally``: what a power cut or the OOM killer does). Unset, each point
costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "SIXTYFOUR_FRAMES_CRASH_AT"

CRASH_POINTS = (
    "after_intent",  # intent and key recorded, nothing sent yet
    "after_response",  # the server answered with a job id, not yet recorded
    "during_polling",  # a live status was read
    "before_download",  # the run completed, its rows not yet fetched
    "after_download",  # rows stored in the ledger, the submission not yet marked completed
    "mid_result_write",  # the ledger's temp file holds part of the rows
)


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
