"""Delivery receipts: what the app does with a receipt a transport hands over.

The SMPP transport calls :func:`recorder`'s callback for each ``deliver_sm`` receipt; it keeps
the receipt in one transaction, matched to the delivery whose provider id it names
(``deliveries.provider_id``, the SMSC's ``message_id`` of the first part). A receipt for an id
no delivery carries (sent by another system on the same account, or a message's later part)
is kept with no event and logged, not refused. Errors: the database's
:class:`~tidings.store.database.Unavailable` propagates, so the transport answers the SMSC
``ESME_RX_T_APPN`` and the receipt comes again later.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from tidings import clock, model
from tidings.channels.sms import receipt as sms_receipt
from tidings.store import receipts as store
from tidings.store.database import Database

log = logging.getLogger("tidings.receipts")


async def record(db: Database, channel: model.Channel, got: sms_receipt.Receipt) -> model.Receipt:
    """Keep ``got`` and say which delivery it is about."""
    async with db.transaction() as conn:
        kept, new = await store.record_receipt(
            conn,
            channel,
            got.message_id,
            str(got.state),
            error=got.error,
            text=got.text,
            received_at=clock.now_us(),
        )
    if kept.event_id is None:
        log.info("receipt for unknown %s id %s: %s", channel, got.message_id, got.state)
    elif new:
        log.info("event %s: %s receipt: %s", kept.event_id, channel, got.state)
    return kept


def recorder(
    db: Database, channel: model.Channel = model.Channel.SMS
) -> Callable[[sms_receipt.Receipt], Awaitable[None]]:
    """The ``on_receipt`` callback for a transport of ``channel``."""

    async def on_receipt(got: sms_receipt.Receipt) -> None:
        await record(db, channel, got)

    return on_receipt
