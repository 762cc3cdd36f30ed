"""sixtyfour-frames: enrich pandas and Polars DataFrames with Sixtyfour workflows."""

from __future__ import annotations

from sixtyfour_frames._accessors import register_accessors
from sixtyfour_frames._attach import attach
from sixtyfour_frames._client import AsyncClient, Client
from sixtyfour_frames._enrich import (
    EnrichInterrupted,
    EnrichJob,
    EnrichOptions,
    aenrich,
    enrich,
    start,
)
from sixtyfour_frames._errors import (
    AmbiguousSubmitError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    IdempotencyConflictError,
    InsufficientCreditsError,
    InvalidArgumentError,
    JoinError,
    LedgerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    RequestValidationError,
    ResultDownloadError,
    RunCancelledError,
    RunError,
    RunFailedError,
    SerializationError,
    ServerError,
    SixtyfourError,
    TransportError,
    WaitTimeoutError,
)
from sixtyfour_frames._ledger import Ledger
from sixtyfour_frames._models import (
    BlockMetrics,
    BlockStatus,
    CancelResult,
    LiveStatus,
    ResultFile,
    RunStarted,
    RunSummary,
)
from sixtyfour_frames._operations import EncodedPayload
from sixtyfour_frames._poll import PollSchedule
from sixtyfour_frames._preview import Preview, preview
from sixtyfour_frames._report import RunInfo, RunReport
from sixtyfour_frames._retry import RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AmbiguousSubmitError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BlockMetrics",
    "BlockStatus",
    "CancelResult",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "EncodedPayload",
    "EnrichInterrupted",
    "EnrichJob",
    "EnrichOptions",
    "IdempotencyConflictError",
    "InsufficientCreditsError",
    "InvalidArgumentError",
    "JoinError",
    "Ledger",
    "LedgerError",
    "LiveStatus",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PollSchedule",
    "Preview",
    "RateLimitError",
    "RequestValidationError",
    "ResultDownloadError",
    "ResultFile",
    "RetryPolicy",
    "RunCancelledError",
    "RunError",
    "RunFailedError",
    "RunInfo",
    "RunReport",
    "RunStarted",
    "RunSummary",
    "SerializationError",
    "ServerError",
    "SixtyfourError",
    "TransportError",
    "WaitTimeoutError",
    "__version__",
    "aenrich",
    "attach",
    "enrich",
    "preview",
    "start",
]

register_accessors()
