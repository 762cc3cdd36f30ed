"""Shared fixtures: one emulator per session (reset per test), fake time, and both clients."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sixtyfour_frames import AsyncClient, Client
from sixtyfour_frames.emulator import Emulator


class FakeTime:
    """A clock that only moves when something sleeps: tests never wait for real."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


class Api:
    """One test body for both clients: async methods are run to completion on a private loop."""

    def __init__(
        self,
        kind: str,
        emu: Emulator,
        fake_time: FakeTime,
        real_sleep: bool = False,
        **options: Any,
    ) -> None:
        self.kind = kind
        self._loop = asyncio.new_event_loop()
        common: dict[str, Any] = {"api_key": emu.api_key, "base_url": emu.base_url, "seed": 0}
        if not real_sleep:  # a few tests need the server's real time to pass between attempts
            common["clock"] = fake_time.clock
        common.update(options)
        self.client: Client | AsyncClient = (
            Client(sleep=time.sleep if real_sleep else fake_time.sleep, **common)
            if kind == "sync"
            else AsyncClient(sleep=asyncio.sleep if real_sleep else fake_time.async_sleep, **common)
        )

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return self._loop.run_until_complete(result) if inspect.isawaitable(result) else result

        return call

    def close(self) -> None:
        if isinstance(self.client, AsyncClient):
            self._loop.run_until_complete(self.client.aclose())
        else:
            self.client.close()
        self._loop.close()


@pytest.fixture(scope="session")
def shared_emulator() -> Iterator[Emulator]:
    with Emulator(seed=0) as emu:
        yield emu


@pytest.fixture
def emu(shared_emulator: Emulator) -> Iterator[Emulator]:
    shared_emulator.reset()
    yield shared_emulator
    shared_emulator.reset()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture(params=["sync", "async"])
def api_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_api(api_kind: str, emu: Emulator, fake_time: FakeTime) -> Iterator[Callable[..., Api]]:
    made: list[Api] = []

    def make(**options: Any) -> Api:
        api = Api(api_kind, emu, fake_time, **options)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()
