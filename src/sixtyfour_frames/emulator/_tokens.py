"""Signed, expiring download tokens for result files, like a cloud store's presigned URLs.

A token names a run, a block and a format, and an expiry time on the emulator's clock; it is
signed with HMAC-SHA256 under a per-emulator secret so a client cannot forge or extend one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class FileToken:
    """What a download URL grants: one file of one run, until ``expires_at``."""

    job_id: str
    block_number: int
    fmt: str
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(token: FileToken, secret: bytes) -> str:
    """``payload.signature``, both URL-safe base64."""
    payload = json.dumps(
        [token.job_id, token.block_number, token.fmt, token.expires_at], separators=(",", ":")
    ).encode("utf-8")
    signature = hmac.new(secret, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}"


def verify(text: str, secret: bytes) -> FileToken | None:
    """The token if its signature is valid (expiry is checked by the caller), else None."""
    try:
        payload_text, signature_text = text.split(".", 1)
        payload = _unb64(payload_text)
        expected = hmac.new(secret, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature_text)):
            return None
        job_id, block_number, fmt, expires_at = json.loads(payload)
        return FileToken(str(job_id), int(block_number), str(fmt), float(expires_at))
    except (ValueError, TypeError):
        return None
