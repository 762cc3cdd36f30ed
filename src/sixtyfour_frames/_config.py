"""Settings: explicit argument > ``SIXTYFOUR_*`` environment variable > default.

The API key is wrapped in :class:`ApiKey` as soon as it is read, so that no repr, log line or
exception can show it by accident; only the HTTP layer calls :meth:`ApiKey.reveal`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

from sixtyfour_frames._errors import ConfigurationError

DEFAULT_BASE_URL = "https://api.sixtyfour.ai"
API_KEY_ENV = "SIXTYFOUR_API_KEY"
BASE_URL_ENV = "SIXTYFOUR_BASE_URL"
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 5


class ApiKey:
    """An API key that never shows itself in a repr, a str, a pickle or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself: for the ``x-api-key`` header and nothing else."""
        return self._value

    def __repr__(self) -> str:
        return "ApiKey('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("ApiKey", self._value))

    def __reduce__(self) -> NoReturn:
        raise TypeError("ApiKey cannot be pickled: pass SIXTYFOUR_API_KEY to the other process")


@dataclass(frozen=True)
class Settings:
    """Resolved client settings."""

    api_key: ApiKey
    base_url: str
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES


def resolve_settings(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
) -> Settings:
    """Resolve settings; raise :class:`ConfigurationError` before any socket opens."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if not key or not key.strip():
        raise ConfigurationError(
            f"No Sixtyfour API key: pass api_key=... or set the {API_KEY_ENV} environment variable.",
            hint="Create a key in the Sixtyfour dashboard under Settings → API Keys.",
        )
    url = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return Settings(
        api_key=ApiKey(key.strip()),
        base_url=_validated_base_url(url),
        timeout=_positive("timeout", DEFAULT_TIMEOUT if timeout is None else timeout),
        max_retries=_retries(DEFAULT_MAX_RETRIES if max_retries is None else max_retries),
    )


def _validated_base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"Invalid base URL {url!r}: expected something like {DEFAULT_BASE_URL!r} "
            f"(set by base_url=... or {BASE_URL_ENV})."
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(
            f"Invalid base URL {parts.scheme}://{parts.hostname}: it must not carry credentials, "
            "a query or a fragment."
        )
    return url.strip().rstrip("/")


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}.")
    return float(value)


def _retries(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"max_retries must be an integer ≥ 0, got {value!r}.")
    return value


def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in: what 'same origin' compares."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port
