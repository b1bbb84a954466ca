"""Why a delivery did not go through, as one exception tree.

::

    DeliveryError                 something stopped one message
    ├── TemporaryFailure          try again later (4xx, throttling, a server busy)
    │   └── ConnectionFailure     could not talk to the server at all (refused, reset, timeout,
    │                             TLS failure); the connector may be marked down
    └── PermanentFailure          will never succeed as it is (5xx)
        └── RecipientRejected     the address does not exist (SMTP 5.1.1 and kin): quarantine it

Transports translate their library's errors into these where they enter, and
:func:`outcome_for` turns any of them into the :class:`~tidings.model.Outcome` that
``Transport.send`` returns. Whether to retry is decided by the exception's type, never by
matching its text.
"""

from __future__ import annotations

from tidings import model


class DeliveryError(Exception):
    """A message could not be delivered; ``reply`` is what the remote side said."""

    def __init__(self, reply: str, *, retry_after: float | None = None):
        super().__init__(reply)
        self.reply = reply
        self.retry_after = retry_after


class TemporaryFailure(DeliveryError):
    """The message may go through if tried again later."""


class ConnectionFailure(TemporaryFailure):
    """The server could not be reached or the connection broke."""


class PermanentFailure(DeliveryError):
    """The message will not go through as it is."""


class RecipientRejected(PermanentFailure):
    """The recipient's address does not exist; it should be quarantined."""


def outcome_for(error: DeliveryError) -> model.Outcome:
    """The outcome a transport reports for ``error``."""
    if isinstance(error, TemporaryFailure):
        return model.Outcome(
            model.OutcomeKind.RETRY,
            reply=error.reply,
            retry_after=error.retry_after,
            unreachable=isinstance(error, ConnectionFailure),
        )
    return model.Outcome(
        model.OutcomeKind.FAILED,
        reply=error.reply,
        quarantine=isinstance(error, RecipientRejected),
    )
