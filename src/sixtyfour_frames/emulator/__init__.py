"""A local emulator of Sixtyfour's workflow API, for testing pipelines offline.

It is a real HTTP server (Starlette on uvicorn) with the API's routes, parameters, field names and
error bodies, signed expiring download URLs, synthetic but deterministic enrichment, runs that
progress over (injectable) time, scripted faults, and a charge ledger::

    from sixtyfour_frames.emulator import Emulator, assert_faults_consumed

    with Emulator(clock="manual") as emu:
        emu.add_fault("run", "status", code=503)
        ...  # point your client at emu.base_url with emu.api_key
        assert emu.ledger()["runs_created"] == 1
        assert_faults_consumed(emu)

It shares nothing with the client library but the wire format, so it can serve as an independent
oracle. ``python -m sixtyfour_frames.emulator --port 8000`` serves it in the foreground.
"""

from __future__ import annotations

from sixtyfour_frames.emulator._clock import ManualClock
from sixtyfour_frames.emulator._emulator import Emulator, generate_api_key, serve
from sixtyfour_frames.emulator._errors import EmulatorError
from sixtyfour_frames.emulator._faults import KINDS as FAULT_KINDS
from sixtyfour_frames.emulator._faults import ROUTES as FAULT_ROUTES
from sixtyfour_frames.emulator._records import RecordedRequest, RunRecord
from sixtyfour_frames.emulator._testing import assert_faults_consumed
from sixtyfour_frames.emulator._workflows import BUILTIN_WORKFLOW_NAMES, Block

__all__ = [
    "BUILTIN_WORKFLOW_NAMES",
    "FAULT_KINDS",
    "FAULT_ROUTES",
    "Block",
    "Emulator",
    "EmulatorError",
    "ManualClock",
    "RecordedRequest",
    "RunRecord",
    "assert_faults_consumed",
    "generate_api_key",
    "serve",
]
