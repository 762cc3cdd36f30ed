"""Fixtures for the emulator's own tests: emulators on loopback, raw httpx clients, schemas.

These tests speak HTTP directly (httpx), never through the project's client: the emulator is the
oracle for the client, so it is checked against the API's documents, not against the client.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sixtyfour_frames.emulator import Emulator

from ._support import PACE, TLS, Schemas


@pytest.fixture(scope="session")
def schemas() -> Schemas:
    return Schemas()


@pytest.fixture(scope="session")
def _session_emulator() -> Iterator[Emulator]:
    with Emulator(clock="manual", pace=PACE) as emu:
        yield emu


@pytest.fixture
def emulator(_session_emulator: Emulator) -> Iterator[Emulator]:
    """A manual-clock emulator (``pace`` 1 s per row per block), reset for each test."""
    _session_emulator.reset()
    yield _session_emulator
    _session_emulator.reset()


@pytest.fixture
def http(emulator: Emulator) -> Iterator[httpx.Client]:
    """An httpx client for ``emulator`` that sends the API key."""
    with httpx.Client(
        base_url=emulator.base_url, headers=emulator.headers, timeout=5.0, verify=TLS
    ) as client:
        yield client


@pytest.fixture
def anonymous(emulator: Emulator) -> Iterator[httpx.Client]:
    """An httpx client for ``emulator`` that sends no API key."""
    with httpx.Client(base_url=emulator.base_url, timeout=5.0, verify=TLS) as client:
        yield client
