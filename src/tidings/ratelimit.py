"""Per-API-key rate limits: one token bucket per key, in this process.

A key may make ``rate`` requests a second on average and ``burst`` at once: its bucket holds
up to ``burst`` tokens, refills at ``rate`` tokens a second, and each request takes one. An
empty bucket raises :class:`Limited`, which the API answers with 429 ``rate_limited`` and a
``Retry-After`` (as Adobe's API throttling does). The default rate and burst come from the
settings ``rate_limit`` and ``rate_limit_burst``; ``rate_limits`` overrides them per key
prefix, as ``prefix:rate/burst,prefix:rate/burst`` (rate 0: that key is unlimited).

Buckets live in the process: with several API processes behind a balancer, each one allows
a key its rate. Nothing is stored in the database.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tidings.settings import Settings


class Limited(Exception):
    """A key is over its rate; it may try again after ``retry_after`` seconds."""

    def __init__(self, prefix: str, retry_after: float):
        super().__init__(f"API key {prefix} is over its rate limit")
        self.prefix = prefix
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` in whole seconds (at least 1)."""
        return str(max(1, math.ceil(self.retry_after)))


class Bucket:
    """One key's token bucket."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def take(self, now: float) -> float:
        """Take a token; return 0 if there was one, else the seconds until there is."""
        tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


def parse_overrides(text: str) -> dict[str, tuple[float, float]]:
    """``"prefix:rate/burst,..."`` as ``{prefix: (rate, burst)}``; a missing ``/burst`` means
    one second's worth. Raises :class:`ValueError` naming the bad entry."""
    found: dict[str, tuple[float, float]] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        prefix, colon, limit = entry.rpartition(":")
        rate_text, slash, burst_text = limit.partition("/")
        try:
            if not colon or not prefix.strip():
                raise ValueError(entry)
            rate = float(rate_text)
            burst = float(burst_text) if slash else max(rate, 1.0)
            if rate < 0 or burst < 1 or not (math.isfinite(rate) and math.isfinite(burst)):
                raise ValueError(entry)
        except ValueError:
            raise ValueError(
                f"rate_limits: {entry!r} is not `prefix:rate/burst` (rate >= 0, burst >= 1)"
            ) from None
        found[prefix.strip()] = (rate, burst)
    return found


class Limiter:
    """Token buckets for every API key, with the default and per-key limits."""

    def __init__(
        self,
        rate: float,
        burst: float,
        overrides: dict[str, tuple[float, float]] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.rate = rate
        self.burst = burst if burst >= 1 else max(rate, 1.0)
        self.overrides = overrides or {}
        self._clock = clock
        self._buckets: dict[str, Bucket | None] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Limiter | None:
        """The limiter the settings ask for, or None when no key is limited."""
        overrides = parse_overrides(settings.rate_limits)
        if settings.rate_limit <= 0 and not any(rate > 0 for rate, _ in overrides.values()):
            return None
        return cls(settings.rate_limit, settings.rate_limit_burst, overrides)

    def check(self, prefix: str) -> None:
        """Charge one request to the key ``prefix``; raise :class:`Limited` when over."""
        try:
            bucket = self._buckets[prefix]
        except KeyError:
            bucket = self._buckets[prefix] = self._new_bucket(prefix)
        if bucket is None:
            return
        wait = bucket.take(self._clock())
        if wait:
            raise Limited(prefix, wait)

    def _new_bucket(self, prefix: str) -> Bucket | None:
        rate, burst = self.overrides.get(prefix, (self.rate, self.burst))
        return Bucket(rate, burst, self._clock()) if rate > 0 else None
