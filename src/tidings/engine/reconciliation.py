"""Reconciliation: matching a claimed event to a profile, and what the profile changes.

An event type whose targeting reconciles (by ``externalId``, ``email`` or ``mobilePhone``)
has its events matched to the profile holding the same value; when several profiles share an
email or phone, the most recently updated wins. :func:`profiles_for` does this for a whole
claim batch in one query (the worker calls it while it reads quarantined addresses, never
across a network call). :func:`reconcile` is pure: given the event and its profile it says
how the event goes on, or why it stops:

- an event with no recipient field left was erased (its profile was deleted while it was
  queued): ``targetingFailed``, "recipient erased";
- no profile: the type's ``on_missing`` says ``send`` (without profile data) or
  ``targetingFailed``;
- a profile fills each recipient field the event lacks (email, mobile phone, the first push
  token, external id); the event's own values win;
- **channel rule**: an event that names no channel goes by its type's default channel if it
  has an address for it; otherwise by the first of email, SMS, push (in that order) that has
  a published template for the type and an address;
- templates see ``profile`` (its attributes, then ``externalId``, ``email``,
  ``mobilePhone``, ``pushTokens``, ``language`` and ``attributes``, which win over an
  attribute of the same name) and ``language`` (the profile's, or empty).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from tidings import model
from tidings.engine import route
from tidings.store import profiles as profiles_store
from tidings.store.database import Connection

S = model.EventStatus
R = model.ReconcileBy
ERASED = profiles_store.ERASED
_FALLBACK_CHANNELS = (model.Channel.EMAIL, model.Channel.SMS, model.Channel.PUSH)


def key_of(by: model.ReconcileBy, recipient: model.Recipient) -> str | None:
    """The recipient field an event is reconciled by."""
    if by is R.EXTERNAL_ID:
        return recipient.externalId
    if by is R.EMAIL:
        return recipient.email
    if by is R.MOBILE_PHONE:
        return recipient.mobilePhone
    return None


def _profile_key(by: model.ReconcileBy, p: model.Profile) -> str | None:
    if by is R.EXTERNAL_ID:
        return p.external_id
    if by is R.EMAIL:
        return p.email
    if by is R.MOBILE_PHONE:
        return p.mobile_phone
    return None


def reconciles(events: Sequence[model.Event], routing: route.Routing) -> bool:
    """Whether any of ``events`` is of a type that looks up profiles."""
    return any(
        (t := routing.targeting.get(e.type)) is not None and t.reconcile_by is not R.NONE
        for e in events
    )


async def profiles_for(
    conn: Connection, events: Sequence[model.Event], routing: route.Routing
) -> dict[int, model.Profile]:
    """The profile of each event of a claim batch whose type reconciles (one query)."""
    wanted: dict[model.ReconcileBy, set[str]] = {
        R.EXTERNAL_ID: set(),
        R.EMAIL: set(),
        R.MOBILE_PHONE: set(),
    }
    keyed: list[tuple[int, model.ReconcileBy, str]] = []
    for event in events:
        t = routing.targeting.get(event.type)
        if t is None or t.reconcile_by is R.NONE:
            continue
        key = key_of(t.reconcile_by, event.recipient)
        if key:
            wanted[t.reconcile_by].add(key)
            keyed.append((event.id, t.reconcile_by, key))
    if not keyed:
        return {}
    found = await profiles_store.match_profiles(
        conn,
        sorted(wanted[R.EXTERNAL_ID]),
        sorted(wanted[R.EMAIL]),
        sorted(wanted[R.MOBILE_PHONE]),
    )
    by_key: dict[tuple[model.ReconcileBy, str], model.Profile] = {}
    for p in found:  # least recently updated first: the latest one stays
        for by in (R.EXTERNAL_ID, R.EMAIL, R.MOBILE_PHONE):
            value = _profile_key(by, p)
            if value is not None:
                by_key[(by, value)] = p
    return {event_id: by_key[(by, key)] for event_id, by, key in keyed if (by, key) in by_key}


class Reconciled(msgspec.Struct, frozen=True):
    """The event as it goes on (recipient filled, channel chosen) and the template
    variables reconciliation adds."""

    event: model.Event
    variables: dict[str, Any]


def profile_variables(p: model.Profile) -> dict[str, Any]:
    """What templates see as ``profile``."""
    return {
        **p.attributes,
        "externalId": p.external_id,
        "email": p.email,
        "mobilePhone": p.mobile_phone,
        "pushTokens": list(p.push_tokens),
        "language": p.language,
        "attributes": p.attributes,
    }


def erased(recipient: model.Recipient) -> bool:
    """Whether every recipient field is empty (only erasure leaves an event so: ingest
    refuses an event without a recipient)."""
    r = recipient
    return not (r.email or r.mobilePhone or r.pushToken or r.externalId)


def reconcile(
    event: model.Event,
    routing: route.Routing,
    profile: model.Profile | None,
) -> Reconciled | route.Finish:
    """How ``event`` goes on given its ``profile`` (see the module docstring)."""
    if erased(event.recipient):
        return route.Finish(S.TARGETING_FAILED, ERASED)
    t = routing.targeting.get(event.type)
    if t is None or t.reconcile_by is R.NONE:
        return Reconciled(event, {})
    if profile is None:
        if t.on_missing is model.OnMissing.TARGETING_FAILED:
            key = key_of(t.reconcile_by, event.recipient)
            what = f"{t.reconcile_by} {key!r}" if key else f"no {t.reconcile_by} in the event"
            return route.Finish(S.TARGETING_FAILED, f"no profile matches the event ({what})")
        return Reconciled(event, {"profile": {}, "language": ""})
    r = event.recipient
    filled = model.Recipient(
        email=r.email or profile.email,
        mobilePhone=r.mobilePhone or profile.mobile_phone,
        pushToken=r.pushToken or (profile.push_tokens[0] if profile.push_tokens else None),
        externalId=r.externalId or profile.external_id,
    )
    channel = event.channel
    if channel is None:
        channel = choose_channel(event.type, routing, filled)
    return Reconciled(
        msgspec.structs.replace(event, recipient=filled, channel=channel),
        {"profile": profile_variables(profile), "language": profile.language or ""},
    )


def choose_channel(
    event_type: str, routing: route.Routing, recipient: model.Recipient
) -> model.Channel | None:
    """The channel for an event that names none: the type's default if the recipient has
    an address for it, else the first of email, SMS, push with a published template and an
    address; None (the type's default, as routing decides) when neither."""
    default = routing.channel_for(event_type, None)
    if default is None or default is model.Channel.WEBHOOK:
        return None
    if route.address_for(default, recipient):
        return None
    for channel in _FALLBACK_CHANNELS:
        if (event_type, channel) in routing.publications and route.address_for(channel, recipient):
            return channel
    return None
