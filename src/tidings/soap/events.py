"""``<rtEvent>`` and ``<batchEvent>`` elements to :class:`tidings.ingest.Submission`.

Attributes of the event element (names as in Adobe's ``nms:rtEvent`` schema):

=====================  =====================================================================
``type``               the event type (mandatory)
``email``              ``recipient.email`` (Adobe: mandatory; Tidings needs it only when the
                       event goes by email)
``mobilePhone``        ``recipient.mobilePhone``
``externalId``         ``recipient.externalId``
``registrationToken``  ``recipient.pushToken``
``wishedChannel``      the channel: ``0`` email, ``1`` SMS, ``41`` iOS / ``42`` Android push
                       (or the names ``email``, ``sms``, ``push``); absent, the type's default
``scheduled``          ``scheduled``; ``expiration`` is read too
anything else          kept in ``ctx._rtEvent`` (``origin``, ``language``, ``country``,
                       ``emailFormat``, ``correlationId``...), with child elements other than
                       ``<ctx>`` (``<mobileApp uuid="…"/>`` is ``ctx._rtEvent.mobileApp["@uuid"]``)
=====================  =====================================================================

``<ctx>`` becomes ``ctx`` by :func:`tidings.soap.ctx.to_json`. A ``<batchEvent>`` (or any
event sent to the ``nms:batchEvent`` service) is queued at :data:`BATCH_PRIORITY`, below
real-time events (:data:`REALTIME_PRIORITY`), as Adobe's batch queue yields to the real-time
one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import msgspec

from tidings import ingest, model
from tidings.soap import ctx as soap_ctx
from tidings.soap.xml import local_name, namespace_of

REALTIME_PRIORITY = 5
BATCH_PRIORITY = 2
EXTRA_KEY = "_rtEvent"
EVENT_ELEMENTS = {"rtevent": False, "batchevent": True}  # lower-cased name -> is batch

_CHANNELS = {
    "0": model.Channel.EMAIL,
    "email": model.Channel.EMAIL,
    "1": model.Channel.SMS,
    "sms": model.Channel.SMS,
    "mobile": model.Channel.SMS,
    "41": model.Channel.PUSH,
    "42": model.Channel.PUSH,
    "push": model.Channel.PUSH,
    "ios": model.Channel.PUSH,
    "android": model.Channel.PUSH,
}
_KNOWN = frozenset(
    {"type", "email", "mobilePhone", "externalId", "registrationToken", "wishedChannel"}
    | {"scheduled", "expiration"}
)
_encode = msgspec.json.Encoder().encode


class InvalidSoapEvent(ValueError):
    """An event element that cannot become an event; the message says why."""


def event_elements(container: ET.Element) -> list[ET.Element]:
    """The event elements of a ``domEvent`` or ``domEventCollection`` parameter: its
    ``<rtEvent>``/``<batchEvent>`` children, or those of its one wrapping element
    (``<Events>``, ``<eventCollection>``...)."""
    children = [c for c in container if isinstance(c.tag, str)]
    if (
        len(children) == 1
        and local_name(children[0].tag).lower() not in EVENT_ELEMENTS
        and len(children[0])
    ):
        children = [c for c in children[0] if isinstance(c.tag, str)]
    return children


def submission(
    element: ET.Element, *, batch_service: bool, max_ctx_bytes: int
) -> ingest.Submission:
    """The submission for one event element; :class:`InvalidSoapEvent` if it has none."""
    name = local_name(element.tag)
    if name.lower() not in EVENT_ELEMENTS:
        raise InvalidSoapEvent(f"<{name}> is not an event: send <rtEvent> or <batchEvent>")
    attrs = {local_name(k): v for k, v in element.attrib.items() if not namespace_of(k)}
    event_type = attrs.get("type", "").strip()
    if not event_type:
        raise InvalidSoapEvent(f"the <{name}> element has no 'type' attribute")
    wished = attrs.get("wishedChannel", "").strip()
    channel = None
    if wished:
        channel = _CHANNELS.get(wished.lower())
        if channel is None:
            raise InvalidSoapEvent(
                f"wishedChannel {wished!r} is not a channel (0 email, 1 SMS, 41/42 push)"
            )
    ctx: dict[str, Any] = {}
    extra: dict[str, Any] = {k: v for k, v in attrs.items() if k not in _KNOWN}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        child_name = local_name(child.tag)
        if child_name == "ctx":
            ctx = soap_ctx.to_json(child)
        else:
            extra[child_name] = soap_ctx.to_json(child)
    if extra:
        ctx = {**ctx, EXTRA_KEY: extra}
    size = len(_encode(ctx))
    if size > max_ctx_bytes:
        raise InvalidSoapEvent(
            f"the event's ctx is {size} bytes, more than the {max_ctx_bytes} allowed"
        )
    is_batch = batch_service or EVENT_ELEMENTS[name.lower()]
    return ingest.Submission(
        type=event_type,
        recipient=model.Recipient(
            email=_optional(attrs, "email"),
            mobilePhone=_optional(attrs, "mobilePhone"),
            pushToken=_optional(attrs, "registrationToken"),
            externalId=_optional(attrs, "externalId"),
        ),
        ctx=ctx,
        channel=channel,
        scheduled=_optional(attrs, "scheduled"),
        expiration=_optional(attrs, "expiration"),
        priority=BATCH_PRIORITY if is_batch else REALTIME_PRIORITY,
        source="soap",
    )


def _optional(attrs: dict[str, str], name: str) -> str | None:
    value = attrs.get(name, "").strip()
    return value or None


def external_id(element: ET.Element) -> str | None:
    """The ``externalId`` attribute of an event element, if any."""
    return element.get("externalId")
