"""Routing and the checks before rendering: which template, or why none.

:class:`Routing` is a snapshot of the event types and active publications; the worker
reloads it when the store's routing revision changes. :func:`decide` is pure: given an
event, the snapshot, the quarantined addresses and the time, it says what to do.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from tidings import model

S = model.EventStatus


class Routing(msgspec.Struct, frozen=True):
    """Event types and the publication for each (type, channel)."""

    revision: int
    types: dict[str, model.EventType]
    publications: dict[tuple[str, model.Channel], model.Publication]
    #: Reconciliation and enrichment per event type (engine/reconciliation.py).
    targeting: dict[str, model.Targeting] = {}

    @classmethod
    def build(
        cls,
        revision: int,
        types: Iterable[model.EventType],
        publications: Iterable[model.Publication],
        targeting: Iterable[model.Targeting] = (),
    ) -> Routing:
        """A snapshot from store records."""
        return cls(
            revision=revision,
            types={t.name: t for t in types},
            publications={(p.event_type, p.channel): p for p in publications},
            targeting={t.event_type: t for t in targeting},
        )

    def reconciles(self, event_type: str) -> bool:
        """Whether events of this type are matched to a profile (which may fill in an
        address the event lacks)."""
        t = self.targeting.get(event_type)
        return t is not None and t.reconcile_by is not model.ReconcileBy.NONE

    def channel_for(self, event_type: str, wished: model.Channel | None) -> model.Channel | None:
        """The channel an event goes by: its wish, or its type's default."""
        if wished is not None:
            return wished
        known = self.types.get(event_type)
        return None if known is None else known.default_channel


class Deliver(msgspec.Struct, frozen=True):
    """Render with ``publication`` and send on ``channel`` to ``address``."""

    publication: model.Publication
    channel: model.Channel
    address: str


class Finish(msgspec.Struct, frozen=True):
    """Do not send: move the event to ``status`` for ``reason``."""

    status: model.EventStatus
    reason: str
    publication: model.Publication | None = None


def address_for(channel: model.Channel, recipient: model.Recipient) -> str | None:
    """The recipient field a channel sends to."""
    if channel is model.Channel.EMAIL:
        return recipient.email
    if channel is model.Channel.SMS:
        return recipient.mobilePhone
    if channel is model.Channel.PUSH:
        return recipient.pushToken
    return None


def decide(
    event: model.Event,
    routing: Routing,
    *,
    quarantined: set[str],
    now: int,
    deadline: int,
    proof: model.Publication | None = None,
) -> Deliver | Finish:
    """What to do with a claimed event, in Adobe's order: route, then check (too old,
    paused, quarantined). A proof's event (``event.proof_id`` set) goes by its proof's
    bundle (``proof``) instead of the publication, even while its type is paused."""
    event_type = routing.types.get(event.type)
    if event_type is None:
        return Finish(S.ROUTING_FAILED, f"unknown event type {event.type!r}")
    channel = routing.channel_for(event.type, event.channel)
    assert channel is not None
    if event.proof_id is not None:
        if proof is None:
            return Finish(S.ROUTING_FAILED, f"proof {event.proof_id} no longer exists")
        publication = proof
    else:
        found = routing.publications.get((event.type, channel))
        if found is None:
            return Finish(
                S.ROUTING_FAILED, f"no published {channel} template for event type {event.type!r}"
            )
        publication = found
    if now > deadline:
        return Finish(S.TOO_OLD, "expired before it could be sent", publication)
    if event_type.paused and event.proof_id is None:
        return Finish(S.PAUSED, f"event type {event.type!r} is paused", publication)
    content = publication.content
    if isinstance(content, model.WebhookContent):
        # A webhook goes to its template's URL, not to an address of the recipient's.
        return Deliver(publication, channel, content.url)
    address = address_for(channel, event.recipient)
    if not address:
        return Finish(
            S.ROUTING_FAILED, f"the event has no address for the {channel} channel", publication
        )
    if address in quarantined:
        return Finish(S.IGNORED, f"{address} is quarantined", publication)
    return Deliver(publication, channel, address)
