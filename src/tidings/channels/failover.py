"""Several connectors for one channel, in priority order, with circuit breakers and rate limits.

A channel may have more than one way out (two SMTP relays, two SMSCs). :class:`FailoverTransport`
is itself a transport: it sends each message through the first connector that is up, and

- when a connector answers ``unreachable`` (refused, reset, timed out, TLS failure: a
  :class:`~tidings.channels.errors.ConnectionFailure`), the same message goes straight to the
  next connector, and after ``down_after`` such failures in a row the connector is **down**
  for ``down_for`` seconds (its breaker is open) and gets no traffic. When the time is up one
  message probes it (half-open): success closes the breaker, another connection failure opens
  it again for the full time;
- every other answer (delivered, a 4xx or 5xx the server gave, a quarantine) is final for
  that message: the server was reached, and another relay would not change its mind;
- a connector with a rate limit takes at most ``rate`` messages a second (bursts of
  ``burst``): a message over the limit **waits** for its turn, up to ``max_wait`` seconds,
  instead of failing; beyond that it goes to the next connector;
- when every connector is down or saturated the message is retried later (``retry_after``:
  when the first breaker closes), never failed.

The outcome's ``via`` names the connector that answered, and the delivery log keeps it.
Breakers and buckets live in the process, like the connections they protect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import msgspec

from tidings import model, ratelimit
from tidings.channels import base

log = logging.getLogger("tidings.failover")
M = TypeVar("M")


class Policy(msgspec.Struct, frozen=True):
    """How connectors are marked down and rate-limited (``rate`` 0: unlimited)."""

    down_after: int = 2
    down_for: float = 30.0
    rate: float = 0.0
    burst: float = 0.0
    max_wait: float = 5.0


class Breaker:
    """One connector's circuit breaker: closed, open until ``down_until``, or half-open."""

    __slots__ = ("down_after", "down_for", "down_until", "failures", "probing")

    def __init__(self, down_after: int, down_for: float):
        self.down_after = max(1, down_after)
        self.down_for = down_for
        self.failures = 0
        self.down_until = 0.0
        self.probing = False

    def admits(self, now: float) -> bool:
        """Whether a message may go through now (one probe at a time once the time is up)."""
        if self.down_until == 0.0:
            return True
        if now < self.down_until or self.probing:
            return False
        self.probing = True
        return True

    def succeeded(self) -> None:
        self.failures = 0
        self.down_until = 0.0
        self.probing = False

    def failed(self, now: float) -> bool:
        """Count a connection failure; True when it (re)opens the breaker."""
        self.failures += 1
        if self.probing or self.failures >= self.down_after:
            self.probing = False
            self.down_until = now + self.down_for
            return True
        return False

    @property
    def is_down(self) -> bool:
        return self.down_until != 0.0


class Connector(Generic[M]):
    """A transport with its breaker and optional token bucket."""

    def __init__(
        self,
        transport: base.Transport[M],
        policy: Policy,
        clock: Callable[[], float],
        name: str = "",
    ):
        self.transport = transport
        self.name = name or transport.name
        self.breaker = Breaker(policy.down_after, policy.down_for)
        self.bucket = (
            ratelimit.Bucket(policy.rate, max(policy.burst, 1.0), clock())
            if policy.rate > 0
            else None
        )

    async def turn(self, max_wait: float, clock: Callable[[], float]) -> bool:
        """Wait for a token (up to ``max_wait`` seconds); False if none came in time."""
        if self.bucket is None:
            return True
        waited = 0.0
        while (wait := self.bucket.take(clock())) > 0:
            if waited + wait > max_wait:
                return False
            await asyncio.sleep(wait)
            waited += wait
        return True


class FailoverTransport(Generic[M]):
    """Connectors in priority order, as one transport."""

    def __init__(
        self,
        transports: Sequence[base.Transport[M]],
        policy: Policy | None = None,
        *,
        names: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ):
        """``names`` tell the connectors apart in logs and the delivery log (default: each
        transport's name)."""
        if not transports:
            raise ValueError("a failover group needs at least one connector")
        self.policy = policy or Policy()
        self._clock = clock
        self.connectors = [
            Connector(t, self.policy, clock, names[i] if i < len(names) else "")
            for i, t in enumerate(transports)
        ]
        self.name = transports[0].name if len(transports) == 1 else "failover"

    async def send(self, message: M) -> model.Outcome:
        """Send through the first connector that is up and has room; see the module."""
        last: model.Outcome | None = None
        for connector in self.connectors:
            if not connector.breaker.admits(self._clock()):
                continue
            if not await connector.turn(self.policy.max_wait, self._clock):
                if connector.breaker.probing:
                    connector.breaker.probing = False  # give the probe to a later message
                continue
            outcome = await connector.transport.send(message)
            if outcome.unreachable:
                if connector.breaker.failed(self._clock()):
                    log.warning(
                        "connector %s is down for %g s: %s",
                        connector.name,
                        self.policy.down_for,
                        outcome.reply,
                    )
                last = outcome
                continue
            if connector.breaker.is_down:
                log.info("connector %s is back", connector.name)
            connector.breaker.succeeded()
            return msgspec.structs.replace(outcome, via=connector.name)
        return self._nobody(last)

    def _nobody(self, last: model.Outcome | None) -> model.Outcome:
        now = self._clock()
        reopen = [c.breaker.down_until - now for c in self.connectors if c.breaker.is_down]
        wait = max(min(reopen), 0.0) if reopen else None
        if last is not None:
            reply = last.reply
        elif len(reopen) == len(self.connectors):
            reply = "every connector is down"
        else:
            reply = "every connector is at its rate limit"
        return model.Outcome(
            model.OutcomeKind.RETRY,
            reply=reply,
            retry_after=wait if wait else (last.retry_after if last else 1.0),
            unreachable=True,
            via=self.name,
        )

    def status(self) -> list[dict[str, object]]:
        """Each connector's state, for operators: name, up/down, failures in a row."""
        now = self._clock()
        return [
            {
                "name": c.name,
                "state": (
                    "up"
                    if not c.breaker.is_down
                    else "probing"
                    if c.breaker.probing or now >= c.breaker.down_until
                    else "down"
                ),
                "failures": c.breaker.failures,
            }
            for c in self.connectors
        ]

    async def aclose(self) -> None:
        """Close every connector."""
        await asyncio.gather(*(c.transport.aclose() for c in self.connectors))
