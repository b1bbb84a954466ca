"""When to try again after a temporary failure, and when to stop trying."""

from __future__ import annotations

import random

from tidings import model


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Exponential (``base``, ``2·base``, ``4·base``... up to ``cap``) with "equal jitter": half
    the delay is fixed, the other half random, so retries after a shared outage spread out
    instead of arriving together.
    """
    exponent = min(max(attempt - 1, 0), 62)
    delay = min(cap, base * (2.0**exponent))
    return delay / 2 + (rng or random).uniform(0, delay / 2)


def deadline(event: model.Event, validity_us: int) -> int:
    """After this time (µs) the event is ``tooOld``: its expiration, or, without one, the
    validity period counted from when it became due."""
    if event.expires_at is not None:
        return event.expires_at
    return (event.scheduled_at or event.received_at) + validity_us


def next_attempt_at(
    event: model.Event,
    now: int,
    *,
    retry_after: float | None,
    base: float,
    cap: float,
    rng: random.Random | None = None,
) -> int:
    """When (µs) to try ``event`` again; the server's ``retry_after`` wins when given."""
    if retry_after is not None and retry_after >= 0:
        delay = min(retry_after, cap)
    else:
        delay = backoff(event.attempts, base=base, cap=cap, rng=rng)
    return now + int(delay * 1_000_000)
