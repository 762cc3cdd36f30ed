"""The only module that imports httpx: auth, timeouts, retries and the rate limit.

The API key is added by :class:`_ApiKeyAuth` only to requests for the configured API origin, so it
can never reach a signed download URL or a redirect target; redirects are never followed.
Retries happen inside :class:`_RetryTransport` (and its async twin) with the *same* request object,
so a ``POST /workflows/run`` keeps its ``Idempotency-Key`` on every attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from sixtyfour_frames._config import Settings, origin_of
from sixtyfour_frames._errors import TransportError
from sixtyfour_frames._retry import (
    Attempt,
    RateLimiter,
    RetryBudget,
    RetryPolicy,
    is_retryable_status,
    parse_retry_after,
    was_not_processed,
)

logger = logging.getLogger("sixtyfour_frames")

_USER_AGENT = "sixtyfour-frames/0.1"


@dataclass(frozen=True)
class Call:
    """One logical request, before retries: everything the client knows about it."""

    method: str
    url: str  # a path under the API base URL, or an absolute signed URL
    params: Sequence[tuple[str, str]] = ()
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    authenticated: bool = True  # False for signed download URLs: never send the key there
    post_run: bool = False  # POST /workflows/run: 409 means "in flight", retry with the same key
    expect_json: bool = True  # a 2xx body that is not JSON was cut or garbled: retry the call
    max_retries: int | None = None


@dataclass(frozen=True)
class Reply:
    """A fully read response and the story of the attempts that led to it."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    attempts: tuple[Attempt, ...]

    @property
    def maybe_acted_before(self) -> bool:
        """True when an earlier attempt may have been acted on (reset, timeout, 5xx…).

        A 408 or 429 does not count: the server refused those before doing anything.
        """
        return any(a.may_have_acted for a in self.attempts[:-1])


@dataclass
class RetryContext:
    """Client-wide retry state shared by every request of one client."""

    policy: RetryPolicy
    budget: RetryBudget = field(default_factory=RetryBudget)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    rng: random.Random = field(default_factory=random.Random)
    wall_clock: Callable[[], float] = time.time


class _ApiKeyAuth(httpx.Auth):
    def __init__(self, settings: Settings) -> None:
        self._key = settings.api_key
        self._origin = origin_of(settings.base_url)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if origin_of(str(request.url)) == self._origin:
            request.headers["x-api-key"] = self._key.reveal()
        yield request

    def __repr__(self) -> str:
        return "<ApiKeyAuth key=***>"


def _forget_key(request: httpx.Request) -> None:
    """Remove the key from a request we are done with.

    httpx keeps the request on its exceptions (``exc.request``), and our errors chain those, so
    a pickled or crash-reported error would otherwise carry the key in clear (httpx masks only
    ``Authorization`` in its reprs). The auth flow sets the header again on every attempt.
    """
    request.headers.pop("x-api-key", None)


# ---------------------------------------------------------------- the retry decision, shared


def _classify_exception(exc: httpx.TransportError) -> Attempt:
    not_connected = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if not_connected and _is_tls_failure(exc):
        # A failed handshake (an unknown CA, a wrong host name) sent nothing, and retrying
        # cannot fix a certificate.
        return Attempt.CANNOT_CONNECT
    if not_connected:
        return Attempt.NOT_SENT
    return Attempt.AMBIGUOUS


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_json(content: bytes) -> bool:
    try:
        json.loads(content)
    except ValueError:
        return False
    return True


def _classify_status(status: int, *, post_run: bool) -> Attempt:
    if status < 300:
        return Attempt.OK
    if not is_retryable_status(status, post_run=post_run):
        return Attempt.FINAL_STATUS  # 3xx included: redirects are never followed
    return Attempt.NOT_PROCESSED if was_not_processed(status) else Attempt.RETRYABLE_STATUS


class _Decider:
    """Decides, attempt after attempt, whether to retry one request and how long to wait first."""

    def __init__(self, ctx: RetryContext, call: Call) -> None:
        self._ctx = ctx
        self._call = call
        self._limit = ctx.policy.max_retries if call.max_retries is None else call.max_retries
        self._post_run = call.post_run
        self.attempts: list[Attempt] = []

    def classify_response(self, response: httpx.Response) -> Attempt:
        outcome = _classify_status(response.status_code, post_run=self._post_run)
        if outcome is Attempt.OK and self._call.expect_json and not _is_json(response.content):
            return Attempt.AMBIGUOUS  # the server acted, but we cannot read what it said
        return outcome

    def delay_after(self, outcome: Attempt, response: httpx.Response | None) -> float | None:
        """Seconds to wait before the next attempt, or None to stop here."""
        self.attempts.append(outcome)
        if outcome in (Attempt.OK, Attempt.FINAL_STATUS, Attempt.CANNOT_CONNECT):
            if outcome is Attempt.OK:
                self._ctx.budget.refund()
            return None
        retry_number = len(self.attempts)
        if retry_number > self._limit:
            return None
        status = response.status_code if response is not None else None
        server_wait = (
            parse_retry_after(response.headers, now=self._ctx.wall_clock())
            if response is not None
            else None
        )
        if server_wait is not None and server_wait > self._ctx.policy.retry_after_cap:
            return None  # the server asks for longer than we may wait: give up with its answer
        # Spend from the budget last, so that a retry we do not make costs nothing.
        if not self._ctx.budget.try_spend():
            return None
        delay = (
            server_wait
            if server_wait is not None
            else self._ctx.policy.backoff(
                retry_number, rate_limited=status == 429, rng=self._ctx.rng
            )
        )
        logger.info(
            "retrying %s %s after %s (retry %d of %d) in %.2f s",
            self._call.method,
            _path(self._call),
            status or outcome.value,
            retry_number,
            self._limit,
            delay,
        )
        return delay

    def give_up(self, exc: httpx.TransportError) -> TransportError:
        tls = _is_tls_failure(exc)
        return TransportError(
            f"{self._call.method} {_path(self._call)} failed after "
            f"{len(self.attempts)} attempt(s): "
            f"{'TLS verification failed' if tls else type(exc).__name__}",
            sent=any(a.may_have_acted for a in self.attempts),
            method=self._call.method,
            path=_path(self._call),
            hint=_TLS_HINT if tls else None,
        )


_TLS_HINT = (
    "The server's TLS certificate could not be verified (nothing was sent). If it is signed by a "
    "private CA, pass verify=ssl.create_default_context(cafile=...) to the client; "
    "never turn verification off."
)


def _path(call: Call) -> str:
    """The request path without query or host: signed URLs carry tokens we do not log."""
    url = call.url.split("?", 1)[0]
    return url if url.startswith("/") else "/" + url.split("://", 1)[-1].split("/", 1)[-1]


# ---------------------------------------------------------------- sessions used by the clients


def _timeout(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(settings.timeout, connect=settings.connect_timeout)


def _build_request(
    client: httpx.Client | httpx.AsyncClient, call: Call, settings: Settings
) -> httpx.Request:
    headers = {"accept": "application/json", **call.headers}
    if call.body is not None:
        headers["content-type"] = "application/json"
    url = call.url if call.url.startswith(("http://", "https://")) else settings.base_url + call.url
    return client.build_request(
        call.method, url, params=list(call.params), content=call.body, headers=headers
    )


def _reply(response: httpx.Response, attempts: Sequence[Attempt]) -> Reply:
    return Reply(
        status=response.status_code,
        headers={k.lower(): v for k, v in response.headers.items() if k.lower() != "set-cookie"},
        content=response.content,
        attempts=tuple(attempts),
    )


def _new_client_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "timeout": httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
        "follow_redirects": False,
        "headers": {"user-agent": _USER_AGENT},
    }


class HttpSession:
    """Sends :class:`Call` objects over one pooled ``httpx.Client``, retrying per :class:`_Decider`.

    A caller-supplied ``httpx.Client`` is used as it is (and not closed); a caller-supplied
    transport is wrapped in a client of our own. Either way redirects are never followed and the
    key is only attached for the API origin.
    """

    def __init__(
        self,
        settings: Settings,
        ctx: RetryContext,
        *,
        sleep: Callable[[float], None] = time.sleep,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        self._settings = settings
        self._ctx = ctx
        self._sleep = sleep
        self._auth = _ApiKeyAuth(settings)
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(
            transport=transport or httpx.HTTPTransport(verify=verify),
            **_new_client_kwargs(settings),
        )

    def send(self, call: Call) -> Reply:
        request = _build_request(self._client, call, self._settings)
        try:
            return self._send(request, call)
        finally:
            _forget_key(request)

    def _send(self, request: httpx.Request, call: Call) -> Reply:
        decider = _Decider(self._ctx, call)
        while True:
            if call.authenticated:
                self._pause(self._ctx.limiter.reserve())
            try:
                response = self._client.send(
                    request, auth=self._auth if call.authenticated else None, follow_redirects=False
                )
            except httpx.TransportError as exc:
                delay = decider.delay_after(_classify_exception(exc), None)
                if delay is None:
                    raise decider.give_up(exc) from exc
                self._pause(delay)
                continue
            delay = decider.delay_after(decider.classify_response(response), response)
            if delay is None:
                return _reply(response, decider.attempts)
            self._pause(delay)

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep(seconds)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


class AsyncHttpSession:
    """The async twin of :class:`HttpSession`."""

    def __init__(
        self,
        settings: Settings,
        ctx: RetryContext,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        self._settings = settings
        self._ctx = ctx
        self._sleep = sleep
        self._auth = _ApiKeyAuth(settings)
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(
            transport=transport or httpx.AsyncHTTPTransport(verify=verify),
            **_new_client_kwargs(settings),
        )

    async def send(self, call: Call) -> Reply:
        request = _build_request(self._client, call, self._settings)
        try:
            return await self._send(request, call)
        finally:
            _forget_key(request)

    async def _send(self, request: httpx.Request, call: Call) -> Reply:
        decider = _Decider(self._ctx, call)
        while True:
            if call.authenticated:
                await self._pause(self._ctx.limiter.reserve())
            try:
                response = await self._client.send(
                    request, auth=self._auth if call.authenticated else None, follow_redirects=False
                )
            except httpx.TransportError as exc:
                delay = decider.delay_after(_classify_exception(exc), None)
                if delay is None:
                    raise decider.give_up(exc) from exc
                await self._pause(delay)
                continue
            delay = decider.delay_after(decider.classify_response(response), response)
            if delay is None:
                return _reply(response, decider.attempts)
            await self._pause(delay)

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            await self._sleep(seconds)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
