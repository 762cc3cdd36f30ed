"""``Client`` and ``AsyncClient``: one small method per endpoint, no dataframes.

Both drive the same sans-I/O operations of :mod:`sixtyfour_frames._operations`, so they send the
same requests and return the same models. Waiting lives in :mod:`sixtyfour_frames._poll`; sleep
and clock are injectable so tests never really sleep.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import pyarrow as pa

from sixtyfour_frames import _operations as ops
from sixtyfour_frames._config import Settings, resolve_settings
from sixtyfour_frames._http import AsyncHttpSession, HttpSession, RetryContext
from sixtyfour_frames._models import CancelResult, LiveStatus, ResultFile, RunStarted, RunSummary
from sixtyfour_frames._operations import FileChoice, Payload
from sixtyfour_frames._poll import PollSchedule, StatusCallback, wait_async, wait_sync
from sixtyfour_frames._results import ResultFormat
from sixtyfour_frames._retry import RateLimiter, RetryBudget, RetryPolicy

T = TypeVar("T")

# Stay under the documented 500 requests per minute, with room for the user's other tools.
DEFAULT_REQUESTS_PER_MINUTE = 450


def _retry_context(
    settings: Settings,
    retry_policy: RetryPolicy | None,
    requests_per_minute: int,
    clock: Callable[[], float],
    seed: int | None,
) -> RetryContext:
    policy = retry_policy or RetryPolicy(max_retries=settings.max_retries)
    return RetryContext(
        policy=policy,
        budget=RetryBudget(),
        limiter=RateLimiter(limit=requests_per_minute, window=60.0, clock=clock),
        rng=random.Random(seed),
    )


class _ClientBase:
    """What both clients share: settings, identity, and a repr without secrets."""

    _settings: Settings

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    @property
    def settings(self) -> Settings:
        return self._settings

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} cannot be pickled; create one per process.")


class Client(_ClientBase):
    """Synchronous client for the Sixtyfour workflow API.

    Configuration: explicit argument > ``SIXTYFOUR_API_KEY`` / ``SIXTYFOUR_BASE_URL`` > default.
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
        requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | str | bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        self._settings = resolve_settings(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )
        self._sleep = sleep
        self._clock = clock
        context = _retry_context(self._settings, retry_policy, requests_per_minute, clock, seed)
        self._session = HttpSession(
            self._settings,
            context,
            sleep=sleep,
            http_client=http_client,
            transport=transport,
            verify=verify,
        )

    def _run(self, op: ops.Operation[T]) -> T:
        reply = ops.check(self._session.send(op.call), op.call, job_id=op.job_id)
        return op.parse(reply)

    def run_workflow(
        self,
        workflow_id: str,
        *,
        webhook_payload: Payload = None,
        specs_override: Mapping[str, Any] | None = None,
        save_json: bool = False,
        result_formats: Sequence[str] | None = None,
        idempotency_key: str | None = None,
        max_retries: int | None = None,
    ) -> RunStarted:
        """Start a run (``POST /workflows/run``) with one Idempotency-Key for every retry."""
        return self._run(
            ops.run_workflow(
                workflow_id,
                webhook_payload=webhook_payload,
                specs_override=specs_override,
                save_json=save_json,
                result_formats=result_formats,
                idempotency_key=idempotency_key,
                max_retries=max_retries,
            )
        )

    def list_runs(
        self, *, status: str | None = None, workflow_id: str | None = None, limit: int = 100
    ) -> list[RunSummary]:
        """Recent runs, newest first (``GET /workflows/runs``)."""
        return self._run(ops.list_runs(status=status, workflow_id=workflow_id, limit=limit))

    def live_status(self, run_id: str) -> LiveStatus:
        """Live status and per-block progress of a run."""
        return self._run(ops.live_status(run_id))

    def cancel_run(self, job_id: str) -> CancelResult:
        """Cancel a run; a finished run keeps its status (the call is idempotent)."""
        return self._run(ops.cancel_run(job_id))

    def download_links(self, run_id: str, *, format: ResultFormat = "csv") -> list[ResultFile]:
        """The run's result files with signed URLs, in block order."""
        return self._run(ops.download_links(run_id, format=format))

    def download_results(
        self, run_id: str, *, format: ResultFormat = "csv", file: FileChoice = "final"
    ) -> pa.Table:
        """Fetch and parse one result file (by default the final block's) as a ``pyarrow.Table``."""
        flow = ops.download_results(run_id, format=format, file=file)
        try:
            call = next(flow)
            while True:
                call = flow.send(self._session.send(call))
        except StopIteration as done:
            table: pa.Table = done.value
            return table

    def wait(
        self,
        run_id: str,
        *,
        timeout: float | None = None,
        poll: PollSchedule | float | None = None,
        on_status: StatusCallback | None = None,
    ) -> LiveStatus:
        """Poll until the run ends; raise RunFailedError / RunCancelledError / WaitTimeoutError."""
        return wait_sync(
            lambda: self.live_status(run_id),
            run_id,
            timeout=timeout,
            poll=poll,
            on_status=on_status,
            sleep=self._sleep,
            clock=self._clock,
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(_ClientBase):
    """Asynchronous client: the same methods as :class:`Client`, awaitable."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
        requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | str | bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        self._settings = resolve_settings(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )
        self._sleep = sleep
        self._clock = clock
        context = _retry_context(self._settings, retry_policy, requests_per_minute, clock, seed)
        self._session = AsyncHttpSession(
            self._settings,
            context,
            sleep=sleep,
            http_client=http_client,
            transport=transport,
            verify=verify,
        )

    async def _run(self, op: ops.Operation[T]) -> T:
        reply = ops.check(await self._session.send(op.call), op.call, job_id=op.job_id)
        return op.parse(reply)

    async def run_workflow(
        self,
        workflow_id: str,
        *,
        webhook_payload: Payload = None,
        specs_override: Mapping[str, Any] | None = None,
        save_json: bool = False,
        result_formats: Sequence[str] | None = None,
        idempotency_key: str | None = None,
        max_retries: int | None = None,
    ) -> RunStarted:
        """Start a run (``POST /workflows/run``) with one Idempotency-Key for every retry."""
        return await self._run(
            ops.run_workflow(
                workflow_id,
                webhook_payload=webhook_payload,
                specs_override=specs_override,
                save_json=save_json,
                result_formats=result_formats,
                idempotency_key=idempotency_key,
                max_retries=max_retries,
            )
        )

    async def list_runs(
        self, *, status: str | None = None, workflow_id: str | None = None, limit: int = 100
    ) -> list[RunSummary]:
        """Recent runs, newest first (``GET /workflows/runs``)."""
        return await self._run(ops.list_runs(status=status, workflow_id=workflow_id, limit=limit))

    async def live_status(self, run_id: str) -> LiveStatus:
        """Live status and per-block progress of a run."""
        return await self._run(ops.live_status(run_id))

    async def cancel_run(self, job_id: str) -> CancelResult:
        """Cancel a run; a finished run keeps its status (the call is idempotent)."""
        return await self._run(ops.cancel_run(job_id))

    async def download_links(
        self, run_id: str, *, format: ResultFormat = "csv"
    ) -> list[ResultFile]:
        """The run's result files with signed URLs, in block order."""
        return await self._run(ops.download_links(run_id, format=format))

    async def download_results(
        self, run_id: str, *, format: ResultFormat = "csv", file: FileChoice = "final"
    ) -> pa.Table:
        """Fetch and parse one result file (by default the final block's) as a ``pyarrow.Table``."""
        flow = ops.download_results(run_id, format=format, file=file)
        try:
            call = next(flow)
            while True:
                call = flow.send(await self._session.send(call))
        except StopIteration as done:
            table: pa.Table = done.value
            return table

    async def wait(
        self,
        run_id: str,
        *,
        timeout: float | None = None,
        poll: PollSchedule | float | None = None,
        on_status: StatusCallback | None = None,
    ) -> LiveStatus:
        """Poll until the run ends; raise RunFailedError / RunCancelledError / WaitTimeoutError."""
        return await wait_async(
            lambda: self.live_status(run_id),
            run_id,
            timeout=timeout,
            poll=poll,
            on_status=on_status,
            sleep=self._sleep,
            clock=self._clock,
        )

    async def aclose(self) -> None:
        await self._session.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
