"""Routing and the checks before sending, in Adobe's order."""

from __future__ import annotations

from tidings import model
from tidings.engine import route

S = model.EventStatus
C = model.Channel
NOW = 1_800_000_000_000_000

CONTENT = model.EmailContent(subject="Hi", html="<p>Hi</p>")
PUB = model.Publication(11, "order", C.EMAIL, 7, CONTENT)


def event(**changes: object) -> model.Event:
    values: dict[str, object] = {
        "id": 1,
        "type": "order",
        "channel": None,
        "recipient": model.Recipient(email="a@example.com"),
        "ctx": {},
        "priority": 5,
        "status": S.PROCESSING,
        "source": "api",
        "received_at": NOW - 1000,
        "scheduled_at": None,
        "expires_at": None,
        "due_at": NOW,
        "attempts": 1,
    }
    values.update(changes)
    return model.Event(**values)  # type: ignore[arg-type]


def routing(
    paused: bool = False, publications: tuple[model.Publication, ...] = (PUB,)
) -> route.Routing:
    return route.Routing.build(
        3, [model.EventType("order", "Order", C.EMAIL, paused)], publications
    )


def decide(
    e: model.Event, r: route.Routing, quarantined: set[str] | None = None, deadline: int = NOW + 1
) -> route.Deliver | route.Finish:
    return route.decide(e, r, quarantined=quarantined or set(), now=NOW, deadline=deadline)


def test_delivers_to_the_published_template() -> None:
    d = decide(event(), routing())
    assert isinstance(d, route.Deliver)
    assert (d.publication, d.channel, d.address) == (PUB, C.EMAIL, "a@example.com")


def test_unknown_type_is_routing_failed() -> None:
    d = decide(event(type="nope"), routing())
    assert isinstance(d, route.Finish)
    assert d.status is S.ROUTING_FAILED
    assert "unknown event type 'nope'" in d.reason


def test_no_template_for_the_channel_is_routing_failed() -> None:
    d = decide(event(), routing(publications=()))
    assert isinstance(d, route.Finish)
    assert d.status is S.ROUTING_FAILED
    assert "no published email template" in d.reason
    d = decide(event(channel=C.SMS), routing())
    assert isinstance(d, route.Finish)
    assert "sms" in d.reason


def test_expired_is_too_old_before_anything_else() -> None:
    d = decide(event(), routing(paused=True), {"a@example.com"}, deadline=NOW - 1)
    assert isinstance(d, route.Finish)
    assert d.status is S.TOO_OLD


def test_paused_type_pauses() -> None:
    d = decide(event(), routing(paused=True))
    assert isinstance(d, route.Finish)
    assert d.status is S.PAUSED


def test_quarantined_address_is_ignored() -> None:
    d = decide(event(), routing(), {"a@example.com"})
    assert isinstance(d, route.Finish)
    assert d.status is S.IGNORED


def test_missing_address_for_the_channel() -> None:
    d = decide(event(recipient=model.Recipient(externalId="42")), routing())
    assert isinstance(d, route.Finish)
    assert d.status is S.ROUTING_FAILED
    assert "no address" in d.reason
