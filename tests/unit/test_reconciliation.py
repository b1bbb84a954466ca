"""Reconciliation: what a profile changes about an event, and the channel rule."""

from __future__ import annotations

from tests.unit.test_route import PUB, event
from tidings import enrichment, model
from tidings.engine import reconciliation, route

S = model.EventStatus
C = model.Channel
SMS = model.Publication(12, "order", C.SMS, 8, model.SmsContent(text="Hi"))
PUSH = model.Publication(13, "order", C.PUSH, 9, model.PushContent(title="Hi", body="Hi"))
JACK = model.Profile(
    external_id="c-1",
    email="jack@example.com",
    mobile_phone="+33612345678",
    push_tokens=("fcm:t1", "fcm:t2"),
    language="fr",
    attributes={"firstName": "Jack", "email": "not this one"},
)


def routing(
    default: model.Channel = C.EMAIL,
    on_missing: model.OnMissing = model.OnMissing.SEND,
    publications: tuple[model.Publication, ...] = (PUB, SMS, PUSH),
) -> route.Routing:
    return route.Routing.build(
        1,
        [model.EventType("order", "Order", default, False)],
        publications,
        targeting=[model.Targeting("order", model.ReconcileBy.EXTERNAL_ID, on_missing)],
    )


def test_a_profile_fills_missing_fields_and_the_event_wins() -> None:
    e = event(recipient=model.Recipient(externalId="c-1", mobilePhone="+441234567890"))
    done = reconciliation.reconcile(e, routing(), JACK)
    assert isinstance(done, reconciliation.Reconciled)
    assert done.event.recipient == model.Recipient(
        email="jack@example.com",
        mobilePhone="+441234567890",
        pushToken="fcm:t1",
        externalId="c-1",
    )
    assert done.variables["language"] == "fr"
    profile = done.variables["profile"]
    assert profile["firstName"] == "Jack"
    assert profile["email"] == "jack@example.com"  # the field wins over an attribute
    assert profile["attributes"]["email"] == "not this one"


def test_no_profile_sends_or_fails_as_the_type_says() -> None:
    e = event(recipient=model.Recipient(externalId="ghost", email="g@example.com"))
    sent = reconciliation.reconcile(e, routing(), None)
    assert isinstance(sent, reconciliation.Reconciled)
    assert sent.event == e
    assert sent.variables == {"profile": {}, "language": ""}
    failed = reconciliation.reconcile(e, routing(on_missing=model.OnMissing.TARGETING_FAILED), None)
    assert isinstance(failed, route.Finish)
    assert failed.status is S.TARGETING_FAILED
    assert "externalId 'ghost'" in failed.reason


def test_an_erased_event_ends_targeting_failed_whatever_its_type() -> None:
    e = event(recipient=model.Recipient())
    done = reconciliation.reconcile(e, route.Routing.build(1, [], []), None)
    assert done == route.Finish(S.TARGETING_FAILED, "recipient erased")


def test_without_reconciliation_nothing_changes() -> None:
    plain = route.Routing.build(1, [model.EventType("order", "Order", C.EMAIL, False)], [PUB])
    done = reconciliation.reconcile(event(), plain, JACK)
    assert done == reconciliation.Reconciled(event(), {})
    assert not plain.reconciles("order")
    assert routing().reconciles("order")


def test_channel_rule() -> None:
    only_phone = model.Recipient(mobilePhone="+33612345678")
    # The default channel has an address: it stays (None: routing takes the default).
    assert reconciliation.choose_channel("order", routing(C.SMS), only_phone) is None
    # It has none: the first of email, SMS, push with a template and an address.
    assert reconciliation.choose_channel("order", routing(C.EMAIL), only_phone) is C.SMS
    both = model.Recipient(mobilePhone="+33612345678", pushToken="fcm:x")
    assert reconciliation.choose_channel("order", routing(C.EMAIL), both) is C.SMS
    no_sms = routing(C.EMAIL, publications=(PUB, PUSH))
    assert reconciliation.choose_channel("order", no_sms, both) is C.PUSH
    assert reconciliation.choose_channel("order", no_sms, only_phone) is None
    # A wished channel is never changed.
    wished = event(channel=C.EMAIL, recipient=model.Recipient(externalId="c-1"))
    profile = model.Profile(external_id="c-1", mobile_phone="+33612345678")
    done = reconciliation.reconcile(wished, routing(), profile)
    assert isinstance(done, reconciliation.Reconciled)
    assert done.event.channel is C.EMAIL
    chosen = reconciliation.reconcile(
        event(recipient=model.Recipient(externalId="c-1")), routing(), profile
    )
    assert isinstance(chosen, reconciliation.Reconciled)
    assert chosen.event.channel is C.SMS


def test_an_enrichment_failure_is_read_back_from_the_retry_reason() -> None:
    error = enrichment.Unavailable("enrichment source http://x/e answered 500: down")
    reason = enrichment.retry_reason(3, error)
    assert reason == "attempt 3 failed: enrichment source http://x/e answered 500: down"
    assert enrichment.failure_in(reason) == str(error)
    assert enrichment.failure_in("attempt 2 failed: 451 4.7.1 try later") is None
    assert enrichment.failure_in("recipient erased") is None
    assert enrichment.failure_in(None) is None
