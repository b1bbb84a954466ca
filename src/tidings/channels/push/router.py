"""The push transport the worker sees: it hands each message to the gateway its token
belongs to (``message.platform``: APNs or FCM). A platform without a configured gateway is a
permanent failure for that message, not a reason to quarantine its token."""

from __future__ import annotations

from collections.abc import Mapping

from tidings import model
from tidings.channels import base, errors


class PushRouter:
    """Routes push messages by platform to the APNs and FCM transports."""

    name = "push"

    def __init__(self, transports: Mapping[model.PushPlatform, base.Transport[model.PushMessage]]):
        self._transports = dict(transports)

    @property
    def platforms(self) -> frozenset[model.PushPlatform]:
        """The platforms a gateway is configured for."""
        return frozenset(self._transports)

    async def send(self, message: model.PushMessage) -> model.Outcome:
        """Send through the platform's transport."""
        transport = self._transports.get(message.platform)
        if transport is None:
            return errors.outcome_for(
                errors.PermanentFailure(f"no push gateway is configured for {message.platform}")
            )
        return await transport.send(message)

    async def aclose(self) -> None:
        """Close every gateway's connections."""
        for transport in self._transports.values():
            await transport.aclose()
