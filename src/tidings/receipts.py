"""Delivery receipts: what the app does with a receipt a transport hands over.

The SMPP transport calls :func:`recorder`'s callback for each ``deliver_sm`` receipt; it keeps
the receipt in one transaction, matched to the delivery whose provider id it names
(``deliveries.provider_id``, the SMSC's ``message_id`` of the first part) and sent through the
same connector, and in the same transaction enqueues a ``receipt`` status callback to every
subscription that wants it (:func:`tidings.store.callbacks.enqueue_receipt`): a receipt kept is
never a callback lost. A receipt for an id no delivery carries yet (it can overtake the
delivery log's write, or come from another system on the same account) is kept with no event
and logged, not refused; :func:`adopt_orphans` matches it, and enqueues its callbacks, once
the delivery is logged. Errors: the database's :class:`~tidings.store.database.Unavailable`
propagates, so the transport answers the SMSC ``ESME_RX_T_APPN`` and the receipt comes again
later.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from tidings import clock, model
from tidings.channels.sms import receipt as sms_receipt
from tidings.store import callbacks as callbacks_store
from tidings.store import events as events_store
from tidings.store import receipts as store
from tidings.store.database import Connection, Database

log = logging.getLogger("tidings.receipts")

#: How far back unmatched receipts are looked at for a delivery logged since.
ORPHAN_WINDOW_US = 600 * 1_000_000


async def _enqueue(conn: Connection, kept: model.Receipt) -> int:
    if kept.event_id is None:
        return 0
    event = await events_store.get_event(conn, kept.event_id)
    if event is None:
        return 0
    return await callbacks_store.enqueue_receipt(conn, event, kept)


async def record(
    db: Database,
    channel: model.Channel,
    got: sms_receipt.Receipt,
    *,
    transport: str = "",
) -> tuple[model.Receipt, int]:
    """Keep ``got`` (come through connector ``transport``) and enqueue its callbacks; return
    the receipt, saying which delivery it is about, and how many callbacks were enqueued."""
    async with db.transaction() as conn:
        kept, new = await store.record_receipt(
            conn,
            channel,
            got.message_id,
            str(got.state),
            error=got.error,
            text=got.text,
            received_at=clock.now_us(),
            transport=transport,
        )
        enqueued = await _enqueue(conn, kept) if new else 0
    if kept.event_id is None:
        log.info("receipt for unknown %s id %s: %s", channel, got.message_id, got.state)
    elif new:
        log.info("event %s: %s receipt: %s", kept.event_id, channel, got.state)
    return kept, enqueued


async def adopt_orphans(db: Database) -> int:
    """Match receipts that came before their delivery was logged, and enqueue their
    callbacks (one transaction); return how many callbacks."""
    since = clock.now_us() - ORPHAN_WINDOW_US
    async with db.connection() as conn:
        if not await store.any_orphans(conn, since=since):
            return 0  # the common case, without a write transaction
    enqueued = 0
    async with db.transaction() as conn:
        for kept in await store.adopt_orphans(conn, since=since):
            enqueued += await _enqueue(conn, kept)
            log.info("event %s: %s receipt: %s", kept.event_id, kept.channel, kept.state)
    return enqueued


def recorder(
    db: Database,
    channel: model.Channel = model.Channel.SMS,
    *,
    transport: str = "",
    on_enqueued: Callable[[], None] | None = None,
) -> Callable[[sms_receipt.Receipt], Awaitable[None]]:
    """The ``on_receipt`` callback for connector ``transport`` of ``channel``;
    ``on_enqueued`` is called after a commit that enqueued callbacks."""

    async def on_receipt(got: sms_receipt.Receipt) -> None:
        _, enqueued = await record(db, channel, got, transport=transport)
        if enqueued and on_enqueued is not None:
            on_enqueued()

    return on_receipt
