"""Signatures on the HTTP requests Tidings makes (webhooks and status callbacks).

Each request carries a header in the manner of Stripe's::

    Tidings-Signature: t=1700000000,v1=5257a869e7ec...e108d8bd  (64 hex digits)

``t`` is the Unix time in seconds at signing; ``v1`` is the lowercase hex HMAC-SHA256 of
``f"{t}.{body}"`` keyed with the shared secret. Signing the time with the body lets a receiver
refuse replays older than a tolerance. A receiver calls :func:`verify`; the header may carry
several ``v1`` values (while a secret is being rotated) and any one matching is enough.
Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Tidings-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300.0


class SignatureError(ValueError):
    """A signature header is missing, malformed, too old, or does not match the body."""


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def compute(secret: str | bytes, timestamp: int, body: str | bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` keyed with ``secret``."""
    mac = hmac.new(_as_bytes(secret), digestmod=hashlib.sha256)
    mac.update(str(timestamp).encode())
    mac.update(b".")
    mac.update(_as_bytes(body))
    return mac.hexdigest()


def sign(secret: str | bytes, body: str | bytes, *, timestamp: int | None = None) -> str:
    """The ``Tidings-Signature`` header value for ``body``, signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},{SCHEME}={compute(secret, t, body)}"


def verify(
    secret: str | bytes,
    header: str | None,
    body: str | bytes,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> int:
    """Check a ``Tidings-Signature`` header against the raw request ``body``; return its
    timestamp, or raise :class:`SignatureError`.

    ``tolerance`` is how many seconds the timestamp may be away from ``now`` (either way);
    0 or less skips the age check. Pass the body exactly as received, before any JSON parsing.
    """
    if not header:
        raise SignatureError("no signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed signature header")
        if key == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                raise SignatureError("malformed timestamp in the signature header")
            timestamp = int(value)
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None:
        raise SignatureError("no timestamp in the signature header")
    if not candidates:
        raise SignatureError(f"no {SCHEME} signature in the signature header")
    current = time.time() if now is None else now
    if tolerance > 0 and abs(current - timestamp) > tolerance:
        raise SignatureError("the signature's timestamp is outside the tolerance")
    expected = compute(secret, timestamp, body).encode()
    # Every candidate is compared (no early exit), each in constant time.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    if not matched:
        raise SignatureError("the signature does not match the body")
    return timestamp
