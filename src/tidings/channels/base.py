"""The one contract every channel connector keeps: ``async send(message) -> Outcome``.

A transport owns its connections (and pools them); it never touches the database and never
raises for a delivery problem: failures come back as an :class:`~tidings.model.Outcome`
(see :mod:`tidings.channels.errors`). :class:`MockTransport` serves unit tests, in the manner of
httpx's ``MockTransport``; integration tests use real servers.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from tidings import model

M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)


class Transport(Protocol[M_contra]):
    """A connector for one channel."""

    name: str

    async def send(self, message: M_contra) -> model.Outcome:
        """Deliver one message and say what happened."""
        ...

    async def aclose(self) -> None:
        """Close connections; pending sends finish first."""
        ...


class MockTransport(Generic[M]):
    """A transport whose answers come from ``handler``; it records what it was given."""

    name = "mock"

    def __init__(
        self, handler: Callable[[M], model.Outcome | Awaitable[model.Outcome]] | None = None
    ):
        self._handler = handler
        self.sent: list[M] = []
        self.closed = False

    async def send(self, message: M) -> model.Outcome:
        self.sent.append(message)
        if self._handler is None:
            return model.Outcome(model.OutcomeKind.DELIVERED, reply="250 mock")
        result = self._handler(message)
        if inspect.isawaitable(result):
            return await result
        return result

    async def aclose(self) -> None:
        self.closed = True
