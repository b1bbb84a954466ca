"""The worker: claim due events, route, check, render, deliver, record.

One loop claims batches of due events (one transaction, which also reads the routing
revision) while up to ``worker_concurrency`` events are being sent; once all are taken, it
claims again when half the slots are free (one claim of many events, not one per finished
event). Each event runs as its own task: :func:`route.decide`, rendering, ``Transport.send``
(no database connection is held meanwhile), then its :class:`~tidings.store.queue.Completion`
is posted to the next group commit of outcomes (the task ends there; nothing waits for the
commit but ``stop``). The loop sleeps until woken (a commit in this process, a
notification) or until the poll interval passes.

Stopping: claiming stops at once; in-flight sends get ``shutdown_grace`` seconds to finish,
and events still in flight after that are released to the queue for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from tidings import clock, enrichment, metrics, model
from tidings.channels import base
from tidings.engine import languages, reconciliation, render, retry, route
from tidings.settings import Settings
from tidings.store import batching, catalog, queue
from tidings.store import callbacks as callbacks_store
from tidings.store import proofs as proofs_store
from tidings.store import quarantine as quarantine_store
from tidings.store import targeting as targeting_store
from tidings.store.database import Database, Unavailable

log = logging.getLogger("tidings.worker")
S = model.EventStatus
_FINAL_KIND = {
    model.OutcomeKind.DELIVERED: S.PROCESSED,
    model.OutcomeKind.FAILED: S.DELIVERY_FAILED,
    model.OutcomeKind.IGNORED: S.IGNORED,
}
# Once the send slots are taken, how long a claim waits for half of them to free up before
# it takes what is free anyway (seconds).
_ROOM_WAIT = 0.05
# Outcomes an operator wants to see without debug logging (one line per event).
_LOGGED_AT_INFO = frozenset({S.DELIVERY_FAILED, S.ROUTING_FAILED, S.TOO_OLD, S.TARGETING_FAILED})


class Worker:
    """Sends due events until stopped."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        transports: Mapping[model.Channel, base.Transport[Any]],
        renderer: render.Renderer,
        rng: random.Random | None = None,
        counters: metrics.Metrics | None = None,
        enricher: enrichment.Enricher | None = None,
        on_recorded: Callable[[], None] | None = None,
    ):
        """``on_recorded`` is called after a commit of outcomes that may have enqueued status
        callbacks or logged a provider id a receipt names (the App wakes the callback
        sender with it). On PostgreSQL that commit also notifies ``tidings_callbacks`` when a
        subscription exists, which wakes the senders of every process, this one's too."""
        self.db = db
        self.on_recorded = on_recorded
        self.settings = settings
        self.transports = transports
        self.renderer = renderer
        self.routing = route.Routing.build(-1, (), ())
        self._rng = rng or random.Random()
        self.metrics = counters or metrics.Metrics()
        self._owns_enricher = enricher is None
        self.enricher = enricher or enrichment.Enricher()
        self._wake = asyncio.Event()
        self._stopping = False
        self._inflight: dict[int, tuple[int, asyncio.Task[None]]] = {}
        # Once every send slot is taken, the next claim waits until this many are free: one
        # claim of many events rather than a claim (a write transaction) for
        # every event that finishes. Half the slots stay busy meanwhile, which is plenty.
        self._min_claim = max(1, min(settings.claim_batch, settings.worker_concurrency) // 2)
        self._room = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.recorder: batching.GroupCommitter[queue.Completion, None] = batching.GroupCommitter(
            self._record, max_items=1000, name="outcomes"
        )
        self.claimed = 0
        #: The bundles of the proofs whose events this worker claimed (few, and immutable).
        self.proofs: dict[int, model.Publication | None] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Run the claim loop in the background."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="tidings-worker")

    def wake(self) -> None:
        """Look for due events now (called after a commit of new events)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming, let in-flight sends finish (up to the grace period), release the
        rest, and write every outcome."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        tasks = [t for _, t in self._inflight.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace)
            leftovers = [(eid, a) for eid, (a, t) in self._inflight.items() if t in pending]
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if leftovers:
                async with self.db.transaction() as conn:
                    await queue.release_events(conn, leftovers, clock.now_us())
                log.info("released %d in-flight events", len(leftovers))
        await self.recorder.aclose()
        if self._owns_enricher:
            await self.enricher.aclose()

    async def run(self) -> None:
        """Claim and dispatch until stopped."""
        while not self._stopping:
            # Cleared before claiming, so a wake-up that arrives during the claim is kept.
            self._wake.clear()
            try:
                drained = await self.claim_once()
            except Unavailable as exc:
                log.warning("database unavailable, retrying: %s", exc)
                await self._sleep(self.settings.poll_interval)
                continue
            if drained:
                await self._sleep(self.settings.poll_interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    # ------------------------------------------------------------------ claiming

    async def claim_once(self) -> bool:
        """Claim one batch (as much as free capacity allows) and start sending it; True when
        the queue gave fewer events than asked for (nothing more is due: time to wait for a
        wake-up or the next poll). A claim capped by free capacity, or a full one, is
        followed by another at once."""
        free = self._free()
        if free < self._min_claim and (self._inflight or self.recorder.backlog):
            # Wait for sends to finish rather than spinning (or for a wake-up: stop() must
            # not wait for a busy worker's sends beyond the grace period), but briefly:
            # slow sends (a tarpitting server) must not keep due events from free slots.
            await self._wait_for_room()
            free = self._free()
            if free <= 0 or self._stopping:
                return False
        limit = min(free, self.settings.claim_batch)
        now = clock.now_us()
        lease_until = now + int(self.settings.lease_seconds * 1_000_000)
        claim = await queue.claim_due(self.db, now=now, lease_until=lease_until, limit=limit)
        claimed, quarantined = claim.events, claim.quarantined
        if not claimed:
            return True
        if claim.revision != self.routing.revision:  # as of the claim: its events see the change
            await self.reload_routing()
        self.claimed += len(claimed)
        profiles: dict[int, model.Profile] = {}
        if reconciliation.reconciles(claimed, self.routing):
            async with self.db.connection() as conn:
                # One query for the profiles of the whole batch, and one per channel for the
                # quarantined among their addresses (the claim said it of the events' own).
                profiles = await reconciliation.profiles_for(conn, claimed, self.routing)
                wanted: dict[model.Channel, set[str]] = {}
                for profile in profiles.values():
                    for channel, address in _profile_addresses(profile):
                        wanted.setdefault(channel, set()).add(address)
                for channel, addresses in wanted.items():
                    quarantined |= await quarantine_store.find_quarantined(
                        conn, channel, sorted(addresses), now
                    )
        loop = asyncio.get_running_loop()
        for event in claimed:
            task = loop.create_task(self._process(event, quarantined, profiles.get(event.id)))
            self._inflight[event.id] = (event.attempts, task)
        return len(claimed) < limit

    def _free(self) -> int:
        """Send slots free. Outcomes waiting for their commit hold theirs: a database slower
        than the sends slows the claims instead of letting unwritten outcomes pile up (and
        outlive their leases)."""
        return self.settings.worker_concurrency - len(self._inflight) - self.recorder.backlog

    async def _wait_for_room(self) -> None:
        """Until ``_min_claim`` send slots are free, the worker is woken, or ``_ROOM_WAIT``
        seconds have passed."""
        self._room.clear()
        room = asyncio.ensure_future(self._room.wait())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait(
                (room, woken), timeout=_ROOM_WAIT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            room.cancel()
            woken.cancel()

    async def _proof(self, proof_id: int) -> model.Publication | None:
        """A proof's bundle (read once; None once the proof is gone)."""
        if proof_id not in self.proofs:
            if len(self.proofs) >= 256:
                self.proofs.pop(next(iter(self.proofs)))
            async with self.db.connection() as conn:
                self.proofs[proof_id] = await proofs_store.proof_publication(conn, proof_id)
        return self.proofs[proof_id]

    async def reload_routing(self) -> None:
        """Read event types and publications again."""
        async with self.db.connection() as conn:
            self.routing = route.Routing.build(
                *await catalog.load_routing(conn),
                targeting=await targeting_store.list_targeting(conn),
            )

    # ------------------------------------------------------------------ one event

    async def _process(
        self, event: model.Event, quarantined: set[str], profile: model.Profile | None = None
    ) -> None:
        # Every line about an event carries its id as a field (``event_id`` in JSON logs).
        # Passed explicitly rather than through a context variable: tasks started while an
        # event is handled (the outcome recorder, SMTP connections) would inherit it.
        about = {"event_id": str(event.id)}
        try:
            completion = await self.handle(event, quarantined, profile)
            # Not awaited: the outcome joins the next group commit (``stop`` writes the
            # last ones); until then the event stays claimed under its lease.
            self.recorder.post(completion)
            if completion.status in _LOGGED_AT_INFO:
                log.info(
                    "event %s: %s: %s", event.id, completion.status, completion.reason, extra=about
                )
            else:
                log.debug("event %s: %s", event.id, completion.status, extra=about)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease will run out and the event will be tried again.
            log.exception("event %s: unexpected error", event.id, extra=about)
        finally:
            self._inflight.pop(event.id, None)
            if self._free() >= self._min_claim:
                self._room.set()

    async def handle(
        self, event: model.Event, quarantined: set[str], profile: model.Profile | None = None
    ) -> queue.Completion:
        """Take one claimed event to its next status."""
        now = clock.now_us()
        deadline = retry.deadline(event, int(self.settings.event_validity * 1_000_000))
        proof = None
        if event.proof_id is None:
            reconciled = reconciliation.reconcile(event, self.routing, profile)
            if isinstance(reconciled, route.Finish):
                return self._finish(event, reconciled.status, reconciled.reason, None)
            event, variables = reconciled.event, reconciled.variables
        else:
            # A proof goes to its seed address with its test profile's data, whatever
            # profile the seed address may match.
            proof, variables = await self._proof(event.proof_id), {}
        decision = route.decide(
            event, self.routing, quarantined=quarantined, now=now, deadline=deadline, proof=proof
        )
        if isinstance(decision, route.Finish):
            failure = enrichment.failure_in(event.reason)
            if decision.status is S.TOO_OLD and failure is not None:
                # Out of time while waiting to try the enrichment source again.
                return self._finish(event, S.DELIVERY_FAILED, failure, decision.publication)
            return self._finish(event, decision.status, decision.reason, decision.publication)
        publication, channel = decision.publication, decision.channel
        transport = self.transports.get(channel)
        if transport is None:
            return self._finish(
                event, S.ROUTING_FAILED, f"no transport for the {channel} channel", publication
            )
        targeting = self.routing.targeting.get(event.type)
        if targeting is not None and targeting.enrichment_url:
            try:
                variables["enrichment"] = await self.enricher.fetch(targeting, event)
            except enrichment.Refused as exc:
                return self._finish(event, S.DELIVERY_FAILED, str(exc), publication)
            except enrichment.Unavailable as exc:
                return self._enrichment_retry(event, exc, publication, deadline)
        started = time.perf_counter_ns()
        try:
            language = (
                languages.variant(publication.variants, event, publication.language_field)
                or languages.match(publication.variants, str(variables.get("language") or ""))
                if publication.variants
                else ""
            )
            message = self.renderer.render(
                self.renderer.compile(publication, language), event, variables or None
            )
        except render.RenderError as exc:
            return self._finish(event, S.DELIVERY_FAILED, str(exc), publication)
        rendered = time.perf_counter_ns()
        outcome = await transport.send(message)
        sent = time.perf_counter_ns()
        self.metrics.delivered(transport.name, (rendered - started) / 1e9, (sent - rendered) / 1e9)
        now = clock.now_us()
        delivery = model.Delivery(
            event_id=event.id,
            attempt=event.attempts,
            channel=channel,
            transport=outcome.via or transport.name,
            # A webhook's address is the URL it rendered to, not its template's.
            address=message.url if isinstance(message, model.WebhookMessage) else decision.address,
            message_id=(
                message.reference if isinstance(message, model.SmsMessage) else message.message_id
            ),
            outcome=outcome.kind,
            reply=outcome.reply,
            render_us=(rendered - started) // 1000,
            send_us=(sent - rendered) // 1000,
            created_at=now,
            provider_id=outcome.provider_id,
        )
        quarantine = (
            model.QuarantineEntry(
                channel=channel,
                address=decision.address,
                reason=outcome.reply,
                source=outcome.via or transport.name,
                created_at=now,
                event_id=event.id,
            )
            if outcome.quarantine
            else None
        )
        if outcome.kind is model.OutcomeKind.RETRY:
            due = retry.next_attempt_at(
                event,
                now,
                retry_after=outcome.retry_after,
                base=self.settings.retry_base,
                cap=self.settings.retry_max,
                rng=self._rng,
            )
            if due > deadline:
                status, reason = S.TOO_OLD, f"expired while retrying: {outcome.reply}"
                return self._completion(
                    event, status, reason, publication, delivery=delivery, finished=now
                )
            return self._completion(
                event,
                S.PENDING,
                f"attempt {event.attempts} failed: {outcome.reply}",
                publication,
                due_at=due,
                delivery=delivery,
            )
        status = _FINAL_KIND[outcome.kind]
        return self._completion(
            event,
            status,
            None if status is S.PROCESSED else outcome.reply,
            publication,
            delivery=delivery,
            quarantine=quarantine,
            finished=now,
            sent=now if status is S.PROCESSED else None,
        )

    def _enrichment_retry(
        self,
        event: model.Event,
        error: enrichment.Unavailable,
        publication: model.Publication,
        deadline: int,
    ) -> queue.Completion:
        """Try again after an enrichment failure, or fail once out of time."""
        now = clock.now_us()
        due = retry.next_attempt_at(
            event,
            now,
            retry_after=None,
            base=self.settings.retry_base,
            cap=self.settings.retry_max,
            rng=self._rng,
        )
        if due > deadline:
            return self._completion(event, S.DELIVERY_FAILED, str(error), publication, finished=now)
        reason = enrichment.retry_reason(event.attempts, error)
        return self._completion(event, S.PENDING, reason, publication, due_at=due)

    def _finish(
        self,
        event: model.Event,
        status: model.EventStatus,
        reason: str,
        publication: model.Publication | None,
    ) -> queue.Completion:
        now = clock.now_us()
        final = status in model.FINAL_STATUSES
        return self._completion(event, status, reason, publication, finished=now if final else None)

    @staticmethod
    def _completion(
        event: model.Event,
        status: model.EventStatus,
        reason: str | None,
        publication: model.Publication | None,
        *,
        due_at: int | None = None,
        delivery: model.Delivery | None = None,
        quarantine: model.QuarantineEntry | None = None,
        finished: int | None = None,
        sent: int | None = None,
    ) -> queue.Completion:
        return queue.Completion(
            event_id=event.id,
            attempt=event.attempts,
            status=status,
            due_at=due_at if due_at is not None else clock.now_us(),
            reason=reason,
            sent_at=sent,
            finished_at=finished,
            publication_id=(
                None if publication is None or publication.proof_id is not None else publication.id
            ),
            template_version_id=None if publication is None else publication.version_id,
            delivery=delivery,
            quarantine=quarantine,
            event=event,
        )

    async def _record(self, completions: list[queue.Completion]) -> list[None]:
        while True:
            try:
                steps = queue.outcome_steps(completions, self.db.dialect)
                told = any(
                    c.status in model.FINAL_STATUSES
                    or (c.delivery is not None and c.delivery.provider_id)
                    for c in completions
                )
                if told and self.db.dialect == "postgresql":
                    steps.append((callbacks_store.NOTIFY_SENDERS, [()]))
                await self.db.write_many(steps)
                for c in completions:  # counted once written; proofs are not counted
                    if c.event is not None and c.event.proof_id is None:
                        self.metrics.recorded(c.event.type, c.status)
                if told and self.on_recorded is not None:
                    self.on_recorded()
                return [None] * len(completions)
            except Unavailable as exc:
                # Keep the outcomes until the database is back: the messages were sent, and
                # recording them late beats sending them twice after the lease runs out.
                log.warning("cannot record %d outcomes yet: %s", len(completions), exc)
                await asyncio.sleep(min(self.settings.poll_interval, 1.0))


def _profile_addresses(profile: model.Profile) -> list[tuple[model.Channel, str]]:
    """Every (channel, address) of a profile an event may be sent to."""
    found = [(model.Channel.EMAIL, profile.email), (model.Channel.SMS, profile.mobile_phone)]
    found += [(model.Channel.PUSH, t) for t in profile.push_tokens]
    return [(c, a) for c, a in found if a]
