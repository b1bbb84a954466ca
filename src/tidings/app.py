"""The :class:`App`: everything one Tidings process owns, built from :class:`Settings`.

No import-time globals: the CLI, the HTTP server and the tests each build an App, use it in
an ``async with``, and it closes what it opened (worker first, then ingest, transports and
the database), committing everything that was acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from tidings import (
    apikeys,
    callbacks,
    clock,
    enrichment,
    ids,
    inbound,
    ingest,
    metrics,
    model,
    ratelimit,
    receipts,
)
from tidings.channels import base, failover, webhook
from tidings.channels.email import outbox as outbox_transport
from tidings.channels.email import smtp
from tidings.channels.push import apns, fcm
from tidings.channels.push import router as push_router
from tidings.channels.sms import smpp
from tidings.control import ctxschema, eventtypes
from tidings.engine import render, route, worker
from tidings.settings import Settings, SettingsError
from tidings.store import (
    batching,
    catalog,
    database,
    design,
    keys,
    nodes,
    notify,
    queue,
    retention,
    rollups,
)
from tidings.store import events as events_store
from tidings.store import outbox as outbox_store
from tidings.store import targeting as targeting_store

log = logging.getLogger("tidings")

ID_LEASE_MS = 30_000
_KEY_CACHE_SECONDS = 10.0
_UNKNOWN_KEY_CACHE_SECONDS = 1.0  # a flood of bad keys costs one lookup a second each
_ROUTING_CACHE_SECONDS = 1.0
_SHED_SAMPLE_SECONDS = 1.0


class App:
    """One process's database, ingest, worker and transports."""

    def __init__(self, settings: Settings, db: database.Database):
        self.settings = settings
        self.db = db
        self.holder = uuid.uuid4().hex
        self.slot = -1
        self.ids = ids.IdGenerator(settings.instance_id, 0, 0, -1)
        self.renderer = render.Renderer(
            default_sender=settings.default_sender,
            message_id_domain=settings.message_id_domain,
            bounce_address=settings.bounce_address,
        )
        self.outbox: batching.GroupCommitter[model.OutboxMessage, None] = batching.GroupCommitter(
            self._keep_outbox, max_items=500, name="outbox"
        )
        # Webhooks need no server: the transport is always there (it also sends callbacks).
        self.webhook = webhook.WebhookTransport(webhook_config(settings))
        self.transports: dict[model.Channel, base.Transport[Any]] = {
            model.Channel.EMAIL: self._email_transport(),
            model.Channel.WEBHOOK: self.webhook,
        }
        if settings.smpp_host:
            self.transports[model.Channel.SMS] = self._sms_transport()
        if settings.uses_apns or settings.uses_fcm:
            self.transports[model.Channel.PUSH] = self._push_transport()
        self.callbacks: callbacks.Sender | None = None  # with a worker
        self.worker: worker.Worker | None = None
        self.enricher = enrichment.Enricher(cache_size=settings.enrichment_cache_size)
        self.metrics = metrics.Metrics()
        self.limiter = ratelimit.Limiter.from_settings(settings)
        # True while the oldest due event waits longer than ``shed_queue_age`` (sampled).
        self.shedding = False
        self.ingest = ingest.Ingest(
            db,
            self.ids,
            routing=self.routing,
            checkers=self.ctx_checkers,
            on_commit=self._on_commit,
            on_written=self._count_written,
            max_rows=settings.commit_max_rows,
            max_delay=settings.commit_max_delay,
        )
        self._routing = route.Routing.build(-1, (), ())
        self._specs: dict[str, eventtypes.CompiledSpec] = {}
        self._ctx_checkers: dict[str, ctxschema.Checker] = {}
        self._routing_checked = 0.0
        self._routing_refresh: asyncio.Task[None] | None = None
        self._keys: dict[str, tuple[model.ApiKey | None, float]] = {}
        self._background: list[asyncio.Task[None]] = []
        # PostgreSQL: wake the workers of other processes after commits (store/notify.py).
        self.notifier = notify.Notifier(db) if db.dialect == "postgresql" else None
        self.callback_notifier = (
            notify.Notifier(db, notify.CALLBACKS) if db.dialect == "postgresql" else None
        )
        self.listener: notify.Listener | None = None
        self.bounce_listener: inbound.Listener | None = None  # with a worker, if configured

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, settings: Settings, *, run_worker: bool = True, migrate_schema: bool = True
    ) -> AsyncIterator[App]:
        """Open the database (migrating it), start the worker, and close it all at the end."""
        if migrate_schema:
            # Alembic and SQLAlchemy (~0.5 s of imports) only where the schema is migrated:
            # not in the processes a supervisor starts, whose parent migrated once.
            from tidings.store import migrate

            await asyncio.to_thread(migrate.upgrade, settings.database_url)
        db = await database.connect(settings.database_url)
        app = cls(settings, db)
        try:
            await app.start(run_worker=run_worker)
            yield app
        finally:
            await app.close()

    async def start(self, *, run_worker: bool) -> None:
        """Lease an id slot, load routing, start the worker."""
        await self._lease_id_slot()
        self._background.append(asyncio.create_task(self._renew_id_slot(), name="tidings-ids"))
        await self.refresh_routing()
        if self.settings.shed_queue_age > 0:
            self._background.append(
                asyncio.create_task(self._watch_queue(), name="tidings-shedding")
            )
        if run_worker:
            self.worker = worker.Worker(
                self.db,
                self.settings,
                transports=self.transports,
                renderer=self.renderer,
                counters=self.metrics,
                enricher=self.enricher,
                # PostgreSQL: the outcome's transaction notifies the senders itself.
                on_recorded=self._wake_sender if self.db.dialect != "postgresql" else None,
            )
            self.worker.start()
            self.callbacks = callbacks.Sender(
                self.db,
                self.webhook,
                self.settings,
                before_claim=(
                    (lambda: receipts.adopt_orphans(self.db))
                    if model.Channel.SMS in self.transports
                    else None
                ),
            )
            self.callbacks.start()
            if self.notifier is not None:
                self.listener = notify.Listener(
                    self.db.url, self.worker.wake, also={notify.CALLBACKS: self.callbacks.wake}
                )
                self.listener.start()
            s = self.settings
            if s.retention_interval > 0 and (s.event_retention > 0 or s.report_retention > 0):
                purging = retention.run_periodically(
                    self.db,
                    interval=s.retention_interval,
                    event_age=s.event_retention,
                    report_age=s.report_retention,
                    batch=s.retention_batch,
                    rollup_lag=s.rollup_lag,
                )
                self._background.append(asyncio.create_task(purging, name="tidings-retention"))
            if s.rollup_interval > 0:
                rolling = rollups.run_periodically(
                    self.db, interval=s.rollup_interval, lag=s.rollup_lag
                )
                self._background.append(asyncio.create_task(rolling, name="tidings-rollups"))
            if s.bounce_smtp_port:
                self.bounce_listener = await inbound.start(self.db, s)

    async def close(self) -> None:
        """Stop the worker, commit what was accepted, close transports and the database."""
        if self.bounce_listener is not None:
            await self.bounce_listener.aclose()
        if self.worker is not None:
            await self.worker.stop()
        if self.callbacks is not None:
            await self.callbacks.stop()
        if self.listener is not None:
            await self.listener.aclose()
        await self.ingest.aclose()
        if self.notifier is not None:
            await self.notifier.aclose()
        if self.callback_notifier is not None:
            await self.callback_notifier.aclose()
        await self.outbox.aclose()
        await self.enricher.aclose()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for transport in self.transports.values():
            # Every claimed event is recorded or released by now; a connection still stuck
            # (a server that stopped answering) is cut once the grace period is over.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(transport.aclose(), self.settings.shutdown_grace)
        if self.slot >= 0:
            with contextlib.suppress(Exception):
                async with self.db.transaction() as conn:
                    await nodes.release_slot(
                        conn, self.settings.instance_id, self.slot, self.holder, self.ids.last_ms
                    )
        await self.db.close()

    # ---------------------------------------------------------------- event ids

    async def _lease_id_slot(self) -> None:
        async with self.db.transaction() as conn:
            slot, start, until = await nodes.acquire_slot(
                conn, self.settings.instance_id, self.holder, ids.clock_ms(), ID_LEASE_MS
            )
        self.slot = slot
        self.ids.rebind(slot, start, until)

    async def _renew_id_slot(self) -> None:
        while True:
            await asyncio.sleep(ID_LEASE_MS / 3000)
            until = ids.clock_ms() + ID_LEASE_MS
            try:
                async with self.db.transaction() as conn:
                    ours = await nodes.renew_slot(
                        conn, self.settings.instance_id, self.slot, self.holder, until
                    )
                if ours:
                    self.ids.extend(until)
                else:
                    log.warning("id slot %d was taken over; leasing another", self.slot)
                    self.ids.revoke()
                    await self._lease_id_slot()
            except database.Unavailable as exc:
                log.warning("cannot renew the id slot lease: %s", exc)

    # ---------------------------------------------------------------- routing

    def routing(self) -> route.Routing | None:
        """The routing snapshot the API validates against (refreshed every second)."""
        if time.monotonic() - self._routing_checked > _ROUTING_CACHE_SECONDS and (
            self._routing_refresh is None or self._routing_refresh.done()
        ):
            self._routing_checked = time.monotonic()
            self._routing_refresh = asyncio.get_running_loop().create_task(self.refresh_routing())
        return self._routing if self._routing.revision >= 0 else None

    async def refresh_routing(self) -> None:
        """Reload event types and publications now."""
        try:
            async with self.db.connection() as conn:
                self._routing = route.Routing.build(
                    *await catalog.load_routing(conn),
                    targeting=await targeting_store.list_targeting(conn),
                )
                specs = await design.list_specs(conn)
            self._specs = eventtypes.compile_specs(specs, self._specs)
            self._ctx_checkers = {
                n: c.checker for n, c in self._specs.items() if c.checker is not None
            }
            self._routing_checked = time.monotonic()
        except database.Unavailable as exc:
            log.warning("cannot refresh routing: %s", exc)
        if self.worker is not None:
            self.worker.wake()

    def ctx_checkers(self) -> dict[str, ctxschema.Checker]:
        """The compiled ctx schemas ingest validates with (reloaded with routing, each
        compiled once per spec)."""
        return self._ctx_checkers

    # ---------------------------------------------------------------- operations

    def _count_written(self, events: Sequence[events_store.NewEvent]) -> None:
        self.metrics.committed((e.type, e.source) for e in events)

    async def sample_queue(self) -> None:
        """Read the queue depth and the age of the oldest due event into :attr:`metrics`
        (``database_up`` false, the rest unchanged, if the database does not answer)."""
        now = clock.now_us()
        try:
            async with self.db.connection() as conn:
                depth, oldest = await queue.queue_depth(conn, now)
        except database.Unavailable:
            self.metrics.database_up = False
            return
        self.metrics.database_up = True
        self.metrics.queue_depth = depth
        self.metrics.oldest_due_age = 0.0 if oldest is None else max(0, now - oldest) / 1e6

    async def _watch_queue(self) -> None:
        """Load shedding: sample the oldest due event's age every second (never per
        request) and set :attr:`shedding` from it."""
        bound = self.settings.shed_queue_age
        while True:
            try:
                await self.sample_queue()
            except Exception:
                log.exception("cannot sample the queue")
            shedding = self.metrics.oldest_due_age > bound
            if shedding != self.shedding:
                log.warning(
                    "%s shedding ingest: the oldest due event waited %.1f s (bound %.1f s)",
                    "start" if shedding else "stop",
                    self.metrics.oldest_due_age,
                    bound,
                )
                self.shedding = shedding
            await asyncio.sleep(_SHED_SAMPLE_SECONDS)

    # ---------------------------------------------------------------- transports

    def _email_transport(self) -> base.Transport[model.EmailMessage]:
        s = self.settings
        if not s.uses_smtp:
            return outbox_transport.OutboxTransport(self.outbox.submit)
        relays = [
            smtp.SMTPTransport(
                smtp.SMTPConfig(
                    host=host,
                    port=port,
                    tls=s.smtp_tls,
                    tls_verify=s.smtp_tls_verify,
                    ca_file=s.smtp_ca_file,
                    username=s.smtp_username,
                    password=s.smtp_password,
                    pool_size=s.smtp_pool_size,
                    timeout=s.smtp_timeout,
                    pipelining=s.smtp_pipelining,
                    helo_name=s.smtp_helo_name,
                )
            )
            for host, port in s.smtp_relays
        ]
        if len(relays) == 1 and s.smtp_rate_limit == 0:
            return relays[0]
        return failover.FailoverTransport(
            relays,
            s.failover_policy(s.smtp_rate_limit, s.smtp_rate_burst),
            names=[f"smtp {host}:{port}" for host, port in s.smtp_relays],
        )

    def _sms_transport(self) -> base.Transport[model.SmsMessage]:
        """One SMPP connector per SMSC of ``smpp_host``; several go behind failover, each
        with its own session, ``smpp_throughput`` pacing and receipts (matched to the
        deliveries that SMSC took, since two SMSCs may hand out the same message ids)."""
        s = self.settings
        smscs = s.smscs
        names = [f"smpp {host}:{port}" for host, port in smscs] if len(smscs) > 1 else ["smpp"]
        connectors = [
            smpp.SmppTransport(
                smpp.SmppConfig(
                    host=host,
                    port=port,
                    system_id=s.smpp_system_id,
                    password=s.smpp_password,
                    system_type=s.smpp_system_type,
                    source=s.smpp_source,
                    source_ton=s.smpp_source_ton,
                    source_npi=s.smpp_source_npi,
                    dest_ton=s.smpp_dest_ton,
                    dest_npi=s.smpp_dest_npi,
                    default_region=s.smpp_default_region,
                    window=s.smpp_window,
                    throughput=s.smpp_throughput,
                    enquire_link_interval=s.smpp_enquire_link_interval,
                    timeout=s.smpp_timeout,
                    use_message_payload=s.smpp_message_payload,
                    registered_delivery=s.smpp_registered_delivery,
                    reconnect_min=s.smpp_reconnect_min,
                    reconnect_max=s.smpp_reconnect_max,
                ),
                receipts.recorder(self.db, transport=name, on_enqueued=self._on_callbacks),
            )
            for (host, port), name in zip(smscs, names, strict=True)
        ]
        if len(connectors) == 1:
            return connectors[0]
        return failover.FailoverTransport(connectors, s.failover_policy(), names=names)

    def _push_transport(self) -> base.Transport[model.PushMessage]:
        """APNs and/or FCM behind a router; a key that cannot be used is a SettingsError."""
        try:
            return push_router.PushRouter(self._push_gateways())
        except ValueError as exc:
            raise SettingsError(str(exc)) from None

    def _push_gateways(self) -> dict[model.PushPlatform, base.Transport[model.PushMessage]]:
        s = self.settings
        gateways: dict[model.PushPlatform, base.Transport[model.PushMessage]] = {}
        if s.uses_apns:
            gateways[model.PushPlatform.APNS] = apns.ApnsTransport(
                apns.ApnsConfig(
                    key_id=s.apns_key_id,
                    team_id=s.apns_team_id,
                    topic=s.apns_topic,
                    key=s.apns_key,
                    key_file=s.apns_key_file,
                    endpoint=s.apns_endpoint,
                    ca_file=s.apns_ca_file,
                    timeout=s.apns_timeout,
                    concurrency=s.apns_concurrency,
                )
            )
        if s.uses_fcm:
            gateways[model.PushPlatform.FCM] = fcm.FcmTransport(
                fcm.FcmConfig(
                    service_account=s.fcm_service_account,
                    service_account_file=s.fcm_service_account_file,
                    endpoint=s.fcm_endpoint,
                    ca_file=s.fcm_ca_file,
                    timeout=s.fcm_timeout,
                    concurrency=s.fcm_concurrency,
                )
            )
        return gateways

    async def _keep_outbox(self, messages: list[model.OutboxMessage]) -> list[None]:
        async with self.db.transaction() as conn:
            await outbox_store.add_messages(conn, messages)
        return [None] * len(messages)

    def wake(self) -> None:
        """Tell the workers (this process's, and on PostgreSQL the others') that events were
        written outside ingest (a proof's)."""
        self._on_commit()

    def _on_commit(self) -> None:
        if self.worker is not None:
            self.worker.wake()
        if self.notifier is not None:
            self.notifier.poke()

    def _wake_sender(self) -> None:
        if self.callbacks is not None:
            self.callbacks.wake()

    def _on_callbacks(self) -> None:
        """A commit may have enqueued status callbacks: wake this process's sender now, and
        on PostgreSQL the other processes' (each has one)."""
        if self.callbacks is not None:
            self.callbacks.wake()
        if self.callback_notifier is not None:
            self.callback_notifier.poke()

    # ---------------------------------------------------------------- API keys

    async def authenticate(self, key: str) -> model.ApiKey | None:
        """The active API key ``key`` is, or None (results cached for a few seconds).
        A valid key is charged one request: over its rate limit this raises
        :class:`ratelimit.Limited`."""
        cached = self._keys.get(key)
        if cached is not None and cached[1] > time.monotonic():
            if self.limiter is not None and cached[0] is not None:
                self._charge(cached[0].prefix)
            return cached[0]
        found = await self._look_up_key(key)
        if self.limiter is not None and found is not None:
            self._charge(found.prefix)
        return found

    def _charge(self, prefix: str) -> None:
        assert self.limiter is not None
        try:
            self.limiter.check(prefix)
        except ratelimit.Limited:
            self.metrics.rejected["rate_limited"] += 1
            raise

    async def _look_up_key(self, key: str) -> model.ApiKey | None:
        prefix = apikeys.prefix_of(key)
        if prefix is None:
            return None
        async with self.db.connection() as conn:
            found = await keys.find_key(conn, prefix)
        valid = found is not None and found[0].revoked_at is None and apikeys.matches(key, found[1])
        if len(self._keys) > 10_000:
            self._keys.clear()
        if not valid or found is None:
            self._keys[key] = (None, time.monotonic() + _UNKNOWN_KEY_CACHE_SECONDS)
            return None
        self._keys[key] = (found[0], time.monotonic() + _KEY_CACHE_SECONDS)
        return found[0]

    def forget_key(self, prefix: str) -> None:
        """Drop a revoked key from the cache at once."""
        self._keys = {
            k: v for k, v in self._keys.items() if v[0] is not None and v[0].prefix != prefix
        }


def webhook_config(settings: Settings) -> webhook.WebhookConfig:
    """The webhook transport's configuration from the settings."""
    return webhook.WebhookConfig(
        secret=settings.webhook_secret,
        connect_timeout=settings.webhook_connect_timeout,
        total_timeout=settings.webhook_timeout,
        max_response_bytes=settings.webhook_max_response_bytes,
        allow_private=settings.webhook_allow_private,
        allowed_networks=tuple(
            n.strip() for n in settings.webhook_allowed_networks.split(",") if n.strip()
        ),
        user_agent=settings.webhook_user_agent,
        pool_size=settings.webhook_pool_size,
        id_header=settings.webhook_id_header,
        ca_file=settings.webhook_ca_file,
    )
