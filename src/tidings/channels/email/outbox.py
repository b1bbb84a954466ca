"""The local outbox: email kept in the database instead of sent (the default).

A new user sees real, complete messages (``GET /api/v1/outbox``, ``tidings outbox``) without
an SMTP server. The transport builds the same MIME bytes the SMTP transport would send.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tidings import clock, model
from tidings.channels import errors
from tidings.channels.email import mime


def _mailbox(address: model.EmailAddress) -> str:
    return f"{address.name} <{address.address}>" if address.name else address.address


class OutboxTransport:
    """Keeps each message through ``keep`` (the store, batched by the caller)."""

    name = "outbox"

    def __init__(self, keep: Callable[[model.OutboxMessage], Awaitable[None]]):
        self._keep = keep

    async def send(self, message: model.EmailMessage) -> model.Outcome:
        """Keep the message; a storage failure is temporary."""
        now = clock.now_us()
        try:
            raw = mime.build(message, date_us=now)
        except mime.HeaderError as exc:
            return errors.outcome_for(errors.PermanentFailure(f"cannot build the message: {exc}"))
        try:
            await self._keep(
                model.OutboxMessage(
                    event_id=message.event_id,
                    message_id=message.message_id,
                    channel=model.Channel.EMAIL,
                    recipient=message.to.address,
                    sender=_mailbox(message.sender),
                    subject=message.subject,
                    html=message.html,
                    text=message.text,
                    raw=raw.decode("ascii"),
                    created_at=now,
                )
            )
        except Exception as exc:  # the store's failure, whatever the driver raised
            return errors.outcome_for(errors.TemporaryFailure(f"outbox unavailable: {exc}"))
        return model.Outcome(model.OutcomeKind.DELIVERED, reply="kept in the local outbox")

    async def aclose(self) -> None:
        """Nothing to close."""
