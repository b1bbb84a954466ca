"""Failover groups: breakers, probing, rate limits (a fake clock; scripted connectors)."""

from __future__ import annotations

import pytest

from tidings import model
from tidings.channels import base, errors, failover

K = model.OutcomeKind
DOWN = errors.outcome_for(errors.ConnectionFailure("connection refused"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted(base.MockTransport[str]):
    """A connector that answers from a list (then delivers)."""

    def __init__(self, name: str, *answers: model.Outcome):
        self.answers = list(answers)
        super().__init__(self._answer)
        self.name = name

    def _answer(self, message: str) -> model.Outcome:
        if self.answers:
            return self.answers.pop(0)
        return model.Outcome(K.DELIVERED, reply=f"250 {self.name}")


def group(*connectors: Scripted, clock: Clock, **policy: float) -> failover.FailoverTransport[str]:
    return failover.FailoverTransport(
        list(connectors),
        failover.Policy(**policy),
        clock=clock,  # type: ignore[arg-type]
    )


async def test_unreachable_connector_passes_the_message_on_then_goes_down() -> None:
    clock = Clock()
    a, b = Scripted("a", DOWN, DOWN), Scripted("b")
    g = group(a, b, clock=clock, down_after=2, down_for=30)
    first = await g.send("m1")
    assert (first.kind, first.via) == (K.DELIVERED, "b")
    assert [c["state"] for c in g.status()] == ["up", "up"]
    await g.send("m2")
    assert g.status()[0] == {"name": "a", "state": "down", "failures": 2}
    # While it is down, a gets nothing.
    for i in range(5):
        assert (await g.send(f"m{i + 3}")).via == "b"
    assert a.sent == ["m1", "m2"]


async def test_after_the_down_time_one_probe_closes_or_reopens_the_breaker() -> None:
    clock = Clock()
    a, b = Scripted("a", DOWN, DOWN, DOWN), Scripted("b")
    g = group(a, b, clock=clock, down_after=2, down_for=30)
    await g.send("1")
    await g.send("2")
    clock.now += 31
    assert g.status()[0]["state"] == "probing"
    # The probe fails: down again for the full time, the message still delivered by b.
    assert (await g.send("3")).via == "b"
    assert g.status()[0]["state"] == "down"
    clock.now += 29
    assert (await g.send("4")).via == "b"
    assert a.sent == ["1", "2", "3"]
    clock.now += 2
    # The probe succeeds: a takes the traffic again.
    assert (await g.send("5")).via == "a"
    assert (await g.send("6")).via == "a"
    assert g.status()[0] == {"name": "a", "state": "up", "failures": 0}


async def test_a_server_answer_is_final_for_the_message() -> None:
    clock = Clock()
    rejected = errors.outcome_for(errors.RecipientRejected("550 5.1.1 no such user"))
    busy = errors.outcome_for(errors.TemporaryFailure("451 4.3.0 try later", retry_after=7))
    a, b = Scripted("a", rejected, busy), Scripted("b")
    g = group(a, b, clock=clock)
    out = await g.send("1")
    assert (out.kind, out.quarantine, out.via) == (K.FAILED, True, "a")
    out = await g.send("2")
    assert (out.kind, out.retry_after, out.via) == (K.RETRY, 7, "a")
    assert b.sent == []


async def test_every_connector_down_means_retry_when_the_first_comes_back() -> None:
    clock = Clock()
    a, b = Scripted("a", DOWN), Scripted("b", DOWN)
    g = group(a, b, clock=clock, down_after=1, down_for=20)
    out = await g.send("1")
    assert out.kind is K.RETRY
    assert out.reply == "connection refused"
    clock.now += 5
    out = await g.send("2")
    assert (out.kind, out.reply, out.retry_after) == (K.RETRY, "every connector is down", 15)
    assert a.sent == b.sent == ["1"]


async def test_rate_limited_connector_overflows_to_the_next_after_max_wait() -> None:
    clock = Clock()  # frozen: the bucket never refills, so waiting cannot help
    a, b = Scripted("a"), Scripted("b")
    g = group(a, b, clock=clock, rate=1, burst=2, max_wait=0)
    vias = [(await g.send(str(i))).via for i in range(4)]
    assert vias == ["a", "a", "b", "b"]


async def test_rate_limit_waits_for_a_token_rather_than_failing() -> None:
    a = Scripted("a")
    g = failover.FailoverTransport([a], failover.Policy(rate=50, burst=1, max_wait=1))
    outcomes = [await g.send(str(i)) for i in range(5)]
    assert [o.kind for o in outcomes] == [K.DELIVERED] * 5
    assert len(a.sent) == 5


async def test_saturated_group_retries_later() -> None:
    clock = Clock()
    g = group(Scripted("a"), clock=clock, rate=1, burst=1, max_wait=0)
    assert (await g.send("1")).kind is K.DELIVERED
    out = await g.send("2")
    assert (out.kind, out.reply) == (K.RETRY, "every connector is at its rate limit")


async def test_close_closes_every_connector() -> None:
    a, b = Scripted("a"), Scripted("b")
    await group(a, b, clock=Clock()).aclose()
    assert a.closed
    assert b.closed


def test_a_group_needs_a_connector() -> None:
    with pytest.raises(ValueError, match="at least one"):
        failover.FailoverTransport([])
