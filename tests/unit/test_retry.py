"""Backoff with jitter, deadlines, and the server's Retry-After."""

from __future__ import annotations

import random

from tidings import model
from tidings.engine import retry

S = model.EventStatus


def event(
    attempts: int = 1, expires_at: int | None = None, scheduled_at: int | None = None
) -> model.Event:
    return model.Event(
        id=1,
        type="t",
        channel=None,
        recipient=model.Recipient(email="a@b.co"),
        ctx={},
        priority=5,
        status=S.PROCESSING,
        source="api",
        received_at=1_000_000,
        scheduled_at=scheduled_at,
        expires_at=expires_at,
        due_at=0,
        attempts=attempts,
    )


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    rng = random.Random(1)
    for attempt, (low, high) in enumerate([(15, 30), (30, 60), (60, 120), (120, 240)], 1):
        for _ in range(200):
            assert low <= retry.backoff(attempt, base=30, cap=3600, rng=rng) <= high
    assert 1800 <= retry.backoff(40, base=30, cap=3600, rng=rng) <= 3600
    assert retry.backoff(10_000, base=30, cap=3600) <= 3600


def test_jitter_spreads_retries() -> None:
    rng = random.Random(2)
    delays = {round(retry.backoff(3, base=30, cap=3600, rng=rng), 3) for _ in range(50)}
    assert len(delays) > 40


def test_deadline_is_expiration_or_validity_from_due() -> None:
    assert retry.deadline(event(expires_at=5_000_000), 10**9) == 5_000_000
    assert retry.deadline(event(), 2_000_000) == 3_000_000
    assert retry.deadline(event(scheduled_at=9_000_000), 2_000_000) == 11_000_000


def test_server_retry_after_wins_but_is_capped() -> None:
    assert retry.next_attempt_at(event(), 0, retry_after=7, base=30, cap=3600) == 7_000_000
    assert retry.next_attempt_at(event(), 0, retry_after=99999, base=30, cap=60) == 60_000_000
