"""The callback sender's retry policy: exponential backoff with jitter, Retry-After, limits."""

from __future__ import annotations

import random

import pytest

from tidings import callbacks, model
from tidings.channels import webhook
from tidings.settings import Settings

State = model.CallbackState
K = model.OutcomeKind


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    for attempts, full in [(1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0), (10, 300.0), (500, 300.0)]:
        delays = [callbacks.next_delay(attempts, base=10.0, cap=300.0, rng=rng) for _ in range(200)]
        assert min(delays) >= full / 2
        assert max(delays) <= full
        assert len(set(delays)) > 100  # jittered, not one value


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(1)
    assert callbacks.next_delay(1, base=1.0, cap=5.0, retry_after=120.0, rng=rng) == 120.0
    assert callbacks.next_delay(1, base=10.0, cap=60.0, retry_after=0.0, rng=rng) >= 5.0


def callback(attempts: int, created_at: int = 0) -> model.Callback:
    return model.Callback(
        id=1,
        subscription_id=1,
        event_id=1,
        kind="status",
        payload="{}",
        attempts=attempts,
        next_at=0,
        last_reply="",
        state=State.PENDING,
        created_at=created_at,
    )


@pytest.fixture
async def sender() -> callbacks.Sender:
    settings = Settings.from_mapping(
        {
            "callback_max_attempts": 3,
            "callback_max_age": 100.0,
            "callback_retry_base": 1.0,
            "callback_retry_max": 10.0,
        }
    )
    transport = webhook.WebhookTransport(webhook.WebhookConfig())
    await transport.aclose()
    return callbacks.Sender(None, transport, settings, rng=random.Random(3))  # type: ignore[arg-type]


async def test_decide(sender: callbacks.Sender) -> None:
    now = 10_000_000
    assert sender.decide(callback(1), model.Outcome(K.DELIVERED), now) == (State.DELIVERED, now)
    assert sender.decide(callback(1), model.Outcome(K.FAILED), now) == (State.FAILED, now)
    state, due = sender.decide(callback(1), model.Outcome(K.RETRY), now)
    assert state is State.PENDING
    assert now + 500_000 <= due <= now + 1_000_000
    assert sender.decide(callback(3), model.Outcome(K.RETRY), now) == (State.FAILED, now)
    # A Retry-After that would take it past the maximum age ends it.
    late = model.Outcome(K.RETRY, retry_after=200.0)
    assert sender.decide(callback(1), late, now) == (State.FAILED, now)
