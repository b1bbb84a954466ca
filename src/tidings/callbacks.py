"""The status-callback sender: claim due callbacks, POST them signed, record each attempt.

Callbacks are written to the ``callbacks`` table in the transaction that records an event's
final status (:mod:`tidings.store.callbacks`); this loop, started by the App beside the
worker, claims due rows with a lease (one statement; ``SKIP LOCKED`` on PostgreSQL, so
several processes share the work), sends each through the webhook transport's HTTP client
(the same address policy, timeouts and signature, with the subscription's own secret), and
records the attempt in the log in one transaction with the callback's next state:

- delivered (2xx) and failed (4xx, redirects, refused addresses) are final;
- otherwise it is tried again after an exponential backoff with jitter
  (:func:`next_delay`, at least a ``Retry-After``), until ``callback_max_attempts`` or
  ``callback_max_age``, then it is failed.

The loop looks for due callbacks when woken (:meth:`Sender.wake`) and every
``callback_poll_interval`` seconds anyway, so a lost wake-up only delays a callback. On SQLite
the App wakes it after a commit in this process that may have enqueued callbacks; on
PostgreSQL such a commit notifies the ``tidings_callbacks`` channel (the worker's outcome
transaction does it itself, when a subscription exists) and the listener of every process,
this one's included, wakes its sender (:mod:`tidings.store.notify`).

A sender that dies lets its leases run out; the callbacks are claimed again. Delivery is
at-least-once: receivers de-duplicate by the ``Tidings-Message-Id`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from tidings import clock, model
from tidings.channels import webhook
from tidings.settings import Settings
from tidings.store import batching
from tidings.store import callbacks as store
from tidings.store import subscriptions as subscriptions_store
from tidings.store.database import Database, Unavailable

log = logging.getLogger("tidings.callbacks")
State = model.CallbackState
Result = tuple[model.CallbackAttempt, model.CallbackState, int]
_LEASE_MARGIN = 30.0


def next_delay(
    attempts: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds before the next try after ``attempts`` failed ones: ``base * 2**(attempts-1)``
    capped at ``cap``, times a random factor in [0.5, 1] (so that callbacks that failed
    together do not come back together), and never less than ``retry_after``."""
    exponent = min(max(attempts - 1, 0), 62)
    delay = min(cap, base * 2.0**exponent)
    delay *= (rng or random).uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def message_id(callback: model.Callback) -> str:
    """The ``Tidings-Message-Id`` of a callback: the same on every attempt."""
    return f"callback-{callback.id}"


class Sender:
    """Sends due status callbacks until stopped."""

    def __init__(
        self,
        db: Database,
        transport: webhook.WebhookTransport,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        before_claim: Callable[[], Awaitable[int]] | None = None,
    ):
        """``before_claim`` runs before each claim (the App matches receipts that came
        before their delivery was logged with it, enqueueing their callbacks)."""
        self.db = db
        self._before_claim = before_claim
        self.transport = transport
        self.settings = settings
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._lease = settings.webhook_timeout + _LEASE_MARGIN
        # Attempts are written in group commits: one transaction for all that finished meanwhile.
        self.recorder: batching.GroupCommitter[Result, None] = batching.GroupCommitter(
            self._record, max_items=500, name="callback-attempts"
        )
        self.sent = 0

    def start(self) -> None:
        """Run the loop in the background."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="tidings-callbacks")

    def wake(self) -> None:
        """Look for due callbacks now."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; in-flight sends get ``shutdown_grace`` seconds, the rest are
        cancelled (their leases run out and they are sent again later)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=self.settings.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.recorder.aclose()

    async def run(self) -> None:
        """Claim and send until stopped."""
        while not self._stopping:
            self._wake.clear()
            try:
                drained = await self.claim_once()
            except Unavailable as exc:
                log.warning("database unavailable, retrying: %s", exc)
                drained = True
            except Exception:
                log.exception("cannot claim status callbacks")
                drained = True
            if drained and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.callback_poll_interval)

    async def claim_once(self) -> bool:
        """Claim what free capacity allows and start sending; True when fewer were due."""
        free = self.settings.callback_concurrency - len(self._inflight)
        if free <= 0:
            await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            return False
        if self._before_claim is not None:
            await self._before_claim()
        now = clock.now_us()
        # Woken after every commit that may have enqueued callbacks: a read first, so that a
        # wake-up with nothing to send costs no write transaction (SQLite has one writer).
        async with self.db.connection() as conn:
            if not await store.any_due(conn, now):
                return True
        claimed = await store.claim_due(
            self.db, now=now, lease_until=now + int(self._lease * 1_000_000), limit=free
        )
        if not claimed:
            return True
        async with self.db.connection() as conn:
            subscriptions = await subscriptions_store.subscriptions_by_ids(
                conn, sorted({c.subscription_id for c in claimed})
            )
        loop = asyncio.get_running_loop()
        for callback in claimed:
            task = loop.create_task(
                self._send(callback, subscriptions.get(callback.subscription_id))
            )
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(claimed) < free

    async def _send(
        self, callback: model.Callback, subscription: model.CallbackSubscription | None
    ) -> None:
        about = {"event_id": str(callback.event_id)}
        try:
            await self.send(callback, subscription)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("callback %d: unexpected error", callback.id, extra=about)

    async def send(
        self, callback: model.Callback, subscription: model.CallbackSubscription | None
    ) -> State:
        """Send one claimed callback and record the attempt; return its new state."""
        started = time.perf_counter_ns()
        if subscription is None or not subscription.active:
            outcome = model.Outcome(model.OutcomeKind.FAILED, reply="subscription removed")
        else:
            outcome = await self.transport.post(
                subscription.url,
                callback.payload,
                secret=subscription.secret,
                message_id=message_id(callback),
            )
        elapsed = (time.perf_counter_ns() - started) // 1000
        now = clock.now_us()
        state, next_at = self.decide(callback, outcome, now)
        attempt = model.CallbackAttempt(
            callback_id=callback.id,
            attempt=callback.attempts,
            outcome=outcome.kind,
            reply=outcome.reply,
            duration_us=elapsed,
            created_at=now,
        )
        await self.recorder.submit((attempt, state, next_at))
        self.sent += 1
        level = logging.INFO if state is State.FAILED else logging.DEBUG
        log.log(
            level,
            "callback %d (event %s) attempt %d: %s: %s",
            callback.id,
            callback.event_id,
            callback.attempts,
            state,
            outcome.reply,
            extra={"event_id": str(callback.event_id)},
        )
        return state

    async def _record(self, results: list[Result]) -> list[None]:
        await self.db.write_many(store.attempt_steps(results))
        return [None] * len(results)

    def decide(
        self, callback: model.Callback, outcome: model.Outcome, now: int
    ) -> tuple[State, int]:
        """The callback's next state and due time after ``outcome``."""
        if outcome.kind is model.OutcomeKind.DELIVERED:
            return State.DELIVERED, now
        if outcome.kind is not model.OutcomeKind.RETRY:
            return State.FAILED, now
        s = self.settings
        delay = next_delay(
            callback.attempts,
            base=s.callback_retry_base,
            cap=s.callback_retry_max,
            retry_after=outcome.retry_after,
            rng=self._rng,
        )
        next_at = now + int(delay * 1_000_000)
        too_old = next_at - callback.created_at > int(s.callback_max_age * 1_000_000)
        if callback.attempts >= s.callback_max_attempts or too_old:
            return State.FAILED, now
        return State.PENDING, next_at
