"""The tables, declared once (SQLAlchemy Core) for both databases.

Alembic migrations under ``migrations/`` must produce exactly this schema on SQLite and on
PostgreSQL; a test compares them. Conventions: times are ``BIGINT`` microseconds since the
epoch (UTC), JSON is stored as text encoded by msgspec, event ids are signed 64-bit
(``ids.to_db``), statuses are Adobe's names as text.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

BigInt = sa.BigInteger()
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # rowid alias on SQLite

#: Statuses in which an event sits in the queue (due or leased).
QUEUED = ("pending", "processing")
_queued = sa.text("status IN ('pending', 'processing')")

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=True, comment="wished channel; null: type default"),
    sa.Column("email", sa.Text, nullable=True),
    sa.Column("mobile_phone", sa.Text, nullable=True),
    sa.Column("push_token", sa.Text, nullable=True),
    sa.Column("external_id", sa.Text, nullable=True),
    sa.Column("ctx", sa.Text, nullable=False, comment="JSON object"),
    sa.Column("priority", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False, comment="api, adobe or soap"),
    sa.Column("received_at", BigInt, nullable=False),
    sa.Column("scheduled_at", BigInt, nullable=True),
    sa.Column("expires_at", BigInt, nullable=True, comment="the event's own expiration"),
    sa.Column("due_at", BigInt, nullable=False, comment="next claim: schedule, retry or lease end"),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("claimed_at", BigInt, nullable=True),
    sa.Column("sent_at", BigInt, nullable=True),
    sa.Column("finished_at", BigInt, nullable=True),
    sa.Column("publication_id", BigInt, nullable=True),
    sa.Column("template_version_id", BigInt, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("ctx_issues", sa.Text, nullable=True, comment="lenient ctx check: what mismatched"),
    sa.Column("proof_id", BigInt, nullable=True, comment="set: a proof's event"),
    sa.Index(
        "ix_events_queue",
        "priority",
        "due_at",
        sqlite_where=_queued,
        postgresql_where=_queued,
    ),
    sa.Index("ix_events_type_id", "type", "id"),
    sa.Index("ix_events_status_id", "status", "id"),
    # Retention purges by age; the reports (store/reports.py) read a window of receipt times
    # from this index alone, without visiting the rows (covering: 4-6x faster, BENCHMARKS.md).
    sa.Index(
        "ix_events_received_at",
        "received_at",
        "type",
        "status",
        "claimed_at",
        "sent_at",
        "scheduled_at",
        "proof_id",  # proofs are left out of every report
    ),
    sa.Index("ix_events_email", "email"),
    # The hourly roll-ups (store/rollups.py) take finished events by the time they finished.
    sa.Index(
        "ix_events_finished_at",
        "finished_at",
        sqlite_where=sa.text("finished_at IS NOT NULL"),
        postgresql_where=sa.text("finished_at IS NOT NULL"),
    ),
    sa.Index(
        "ix_events_proof_id",
        "proof_id",
        sqlite_where=sa.text("proof_id IS NOT NULL"),
        postgresql_where=sa.text("proof_id IS NOT NULL"),
    ),
    sa.Index(
        "ix_events_external_id",
        "external_id",
        sqlite_where=sa.text("external_id IS NOT NULL"),
        postgresql_where=sa.text("external_id IS NOT NULL"),
    ),
    sa.Index(
        "ix_events_mobile_phone",
        "mobile_phone",
        sqlite_where=sa.text("mobile_phone IS NOT NULL"),
        postgresql_where=sa.text("mobile_phone IS NOT NULL"),
    ),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("event_id", BigInt, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("transport", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False, comment="delivered, retry, failed, ignored"),
    sa.Column("reply", sa.Text, nullable=False),
    sa.Column("render_us", sa.Integer, nullable=False),
    sa.Column("send_us", sa.Integer, nullable=False),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Column(
        "provider_id",
        sa.Text,
        nullable=False,
        server_default="",
        comment="the provider's id for the message (SMPP message_id); receipts name it",
    ),
    sa.Index("ix_deliveries_event_id", "event_id"),
    sa.Index(
        "ix_deliveries_provider_id",
        "provider_id",
        sqlite_where=sa.text("provider_id <> ''"),
        postgresql_where=sa.text("provider_id <> ''"),
    ),
)

event_types = sa.Table(
    "event_types",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("default_channel", sa.Text, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Column("updated_at", BigInt, nullable=False),
    sa.Column("spec", sa.Text, nullable=True, comment="JSON: description, channels, ctx schema"),
)

template_versions = sa.Table(
    "template_versions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("content", sa.Text, nullable=False, comment="JSON, per channel"),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Column("variants", sa.Text, nullable=True, comment="JSON: language -> content"),
    sa.UniqueConstraint("event_type", "channel", "number"),
)

publications = sa.Table(
    "publications",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("version_id", BigInt, nullable=False),
    sa.Column("content", sa.Text, nullable=False, comment="JSON snapshot of the version"),
    sa.Column("content_hash", sa.Text, nullable=False),
    sa.Column("published_by", sa.Text, nullable=False),
    sa.Column("published_at", BigInt, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("bundle", sa.Text, nullable=True, comment="JSON: the whole frozen publication"),
    sa.Index(
        "ix_publications_active",
        "event_type",
        "channel",
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    ),
)

revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", BigInt, nullable=False),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("channel", sa.Text, primary_key=True),
    sa.Column("address", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("event_id", BigInt, nullable=True),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Column("expires_at", BigInt, nullable=True),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("event_id", BigInt, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False, unique=True),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("sender", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("raw", sa.Text, nullable=False, comment="the whole MIME message"),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Index("ix_outbox_event_id", "event_id"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text, nullable=False, unique=True),
    sa.Column("secret_hash", sa.Text, nullable=False),
    sa.Column("scopes", sa.Text, nullable=False, comment="space-separated"),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Column("revoked_at", BigInt, nullable=True),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("api_key_id", BigInt, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Index("ix_idempotency_keys_created_at", "created_at"),
)

id_slots = sa.Table(
    "id_slots",
    metadata,
    sa.Column("instance_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("lease_until_ms", BigInt, nullable=False),
    sa.Column("reserved_until_ms", BigInt, nullable=False),
)

# -- retention (store/retention.py) ------------------------------------------------------------

#: One row per UTC day, event type and final status, for events purged by retention: reports
#: add these to a live count of the events still stored, so every event counts exactly once.
daily_stats = sa.Table(
    "daily_stats",
    metadata,
    sa.Column("day", BigInt, primary_key=True, comment="UTC midnight, µs since the epoch"),
    sa.Column("event_type", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, primary_key=True, comment="a final status"),
    sa.Column("events", BigInt, nullable=False),
    sa.Column("attempts", BigInt, nullable=False, comment="sum of delivery attempts"),
    sa.Column("send_us", BigInt, nullable=False, comment="processed: sum of due-to-sent times, µs"),
)

# -- hourly roll-ups (store/rollups.py) -----------------------------------------------------------

#: One row per UTC hour of receipt, event type and final status: the events that finished
#: before the roll-up watermark (``rollup_marks``), with their times, so the reports read a
#: day or a month from a few hundred rows. Kept after retention purges the events, until the
#: report retention age. The queue, sending and processing columns cover the ``timed`` events
#: (``processed``, with a claim and a sent time), in µs.
hourly_stats = sa.Table(
    "hourly_stats",
    metadata,
    sa.Column("hour", BigInt, primary_key=True, comment="start of the UTC hour of receipt, µs"),
    sa.Column("event_type", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, primary_key=True, comment="a final status"),
    sa.Column("events", BigInt, nullable=False),
    sa.Column("timed", BigInt, nullable=False),
    sa.Column("queue_sum", BigInt, nullable=False),
    sa.Column("queue_min", BigInt, nullable=True),
    sa.Column("queue_max", BigInt, nullable=True),
    sa.Column("sending_sum", BigInt, nullable=False),
    sa.Column("sending_min", BigInt, nullable=True),
    sa.Column("sending_max", BigInt, nullable=True),
    sa.Column("processing_sum", BigInt, nullable=False),
    sa.Column("processing_min", BigInt, nullable=True),
    sa.Column("processing_max", BigInt, nullable=True),
)

#: The roll-up watermark: ``hourly_stats`` holds exactly the final events that finished before
#: ``until`` (one row, ``name`` = 'hourly').
rollup_marks = sa.Table(
    "rollup_marks",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("until", BigInt, nullable=False, comment="µs since the epoch"),
)

# -- bounces (store/bounces.py) ------------------------------------------------------------------

#: One row per bounce report about one recipient of one event's message (a DSN or an
#: asynchronous bounce, matched to the delivery by its Message-ID).
bounces = sa.Table(
    "bounces",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("event_id", BigInt, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False, comment="the address the event was sent to"),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False, comment="hard, soft or delayed"),
    sa.Column("status", sa.Text, nullable=False, comment="enhanced status code, 5.1.1"),
    sa.Column("diagnostic", sa.Text, nullable=False),
    sa.Column("received_at", BigInt, nullable=False),
    # The same report twice (a re-sent DSN, the HTTP and SMTP paths both) is kept once.
    sa.Index("ix_bounces_event_id_address_kind", "event_id", "address", "kind", unique=True),
    sa.Index("ix_bounces_address_received_at", "address", "received_at"),
)

# -- profiles and targeting (store/profiles.py, store/targeting.py) -----------------------------

#: What Tidings knows about a recipient; events of a reconciling event type are matched to one.
profiles = sa.Table(
    "profiles",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("external_id", sa.Text, nullable=False, unique=True),
    sa.Column("email", sa.Text, nullable=True),
    sa.Column("mobile_phone", sa.Text, nullable=True),
    sa.Column("push_tokens", sa.Text, nullable=False, comment="JSON list"),
    sa.Column("language", sa.Text, nullable=True),
    sa.Column("attributes", sa.Text, nullable=False, comment="JSON object"),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Column("updated_at", BigInt, nullable=False),
    sa.Index("ix_profiles_email", "email"),
    sa.Index("ix_profiles_mobile_phone", "mobile_phone"),
)

#: Per event type: reconciliation with profiles and the HTTP enrichment source (kept apart
#: from ``event_types`` so that each can change without the other).
event_type_targeting = sa.Table(
    "event_type_targeting",
    metadata,
    sa.Column("event_type", sa.Text, primary_key=True),
    sa.Column(
        "reconcile_by", sa.Text, nullable=False, comment="none, externalId, email, mobilePhone"
    ),
    sa.Column("on_missing", sa.Text, nullable=False, comment="send or targetingFailed"),
    sa.Column("enrichment_url", sa.Text, nullable=True),
    sa.Column("enrichment_method", sa.Text, nullable=False, comment="GET or POST"),
    sa.Column("enrichment_timeout", sa.Float, nullable=False, comment="seconds"),
    sa.Column("enrichment_ttl", sa.Float, nullable=False, comment="seconds an answer is cached"),
    sa.Column("enrichment_headers", sa.Text, nullable=False, comment="JSON object"),
    sa.Column("updated_at", BigInt, nullable=False),
)

# -- delivery receipts (store/receipts.py) ---------------------------------------------------------

#: One row per delivery receipt (an SMPP ``deliver_sm`` receipt), matched to the delivery by the
#: provider's message id; a receipt for an id no delivery has is kept with ``event_id`` null.
receipts = sa.Table(
    "receipts",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("provider_id", sa.Text, nullable=False),
    sa.Column("event_id", BigInt, nullable=True, comment="null: no delivery has this id"),
    sa.Column("attempt", sa.Integer, nullable=True),
    sa.Column("state", sa.Text, nullable=False, comment="delivered, undeliverable, expired..."),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False, comment="the receipt as received"),
    sa.Column("received_at", BigInt, nullable=False),
    sa.Column(
        "transport",
        sa.Text,
        nullable=False,
        server_default="",
        comment="the connector (SMSC) the receipt came through",
    ),
    # The same receipt twice (an SMSC re-sending it) is kept once; two SMSCs may hand out the
    # same message ids.
    sa.Index(
        "ix_receipts_channel_transport_provider_id_state",
        "channel",
        "transport",
        "provider_id",
        "state",
        unique=True,
    ),
    sa.Index("ix_receipts_event_id", "event_id"),
)

# -- status callbacks (store/callbacks.py, callbacks.py) ----------------------------------------

#: A client's subscription: each event's final status (and delivery receipts) POSTed to ``url``,
#: signed with ``secret`` (kept in clear: it is needed to sign). Removing one deactivates it,
#: so the log keeps naming it.
callback_subscriptions = sa.Table(
    "callback_subscriptions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("event_types", sa.Text, nullable=False, comment="comma-separated; empty: all"),
    sa.Column("statuses", sa.Text, nullable=False, comment="comma-separated; empty: all"),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Column(
        "kinds",
        sa.Text,
        nullable=False,
        server_default="receipt,status",
        comment="comma-separated: status, receipt",
    ),
    sa.Column(
        "receipt_states",
        sa.Text,
        nullable=False,
        server_default="",
        comment="comma-separated; empty: all",
    ),
)

#: The outbox of callbacks: one row per (subscription, event, status or receipt), written in
#: the transaction that records the event's final status, sent and retried by the sender.
callbacks = sa.Table(
    "callbacks",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("subscription_id", BigInt, nullable=False),
    sa.Column("event_id", BigInt, nullable=False),
    sa.Column("kind", sa.Text, nullable=False, comment="status or receipt"),
    sa.Column("payload", sa.Text, nullable=False, comment="the JSON body POSTed"),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_at", BigInt, nullable=False, comment="next attempt, or lease end"),
    sa.Column("last_reply", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False, comment="pending, delivered or failed"),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Column("delivered_at", BigInt, nullable=True),
    sa.Index(
        "ix_callbacks_due",
        "next_at",
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    ),
    sa.Index("ix_callbacks_event_id_subscription_id", "event_id", "subscription_id"),
    sa.Index("ix_callbacks_subscription_id_id", "subscription_id", "id"),
)

#: Every attempt to send a callback: the log.
callback_attempts = sa.Table(
    "callback_attempts",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("callback_id", BigInt, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False, comment="delivered, retry or failed"),
    sa.Column("reply", sa.Text, nullable=False),
    sa.Column("duration_us", BigInt, nullable=False),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Index("ix_callback_attempts_callback_id", "callback_id"),
)

# -- the control instance (store/design.py) ------------------------------------------------------

#: Shared template parts (header, footer, legal text): every save is a new numbered version.
content_blocks = sa.Table(
    "content_blocks",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("created_at", BigInt, nullable=False),
    sa.UniqueConstraint("name", "number"),
)

#: Sample events (recipient and ctx) per event type, to preview templates with.
test_profiles = sa.Table(
    "test_profiles",
    metadata,
    sa.Column("event_type", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("recipient", sa.Text, nullable=False, comment="JSON"),
    sa.Column("ctx", sa.Text, nullable=False, comment="JSON object"),
    sa.Column("updated_at", BigInt, nullable=False),
)

#: Proofs: a template version, compiled and marked, sent to the event type's seed addresses by
#: events that carry the proof's id (control/proofs.py).
proofs = sa.Table(
    "proofs",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("version_id", BigInt, nullable=False),
    sa.Column("version_number", sa.Integer, nullable=False),
    sa.Column("profile", sa.Text, nullable=False, comment="test profile; empty: examples"),
    sa.Column("bundle", sa.Text, nullable=False, comment="JSON: the marked frozen bundle"),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Index("ix_proofs_event_type", "event_type"),
)

#: Who published or unpublished what, and when.
publication_audit = sa.Table(
    "publication_audit",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False, comment="publish or unpublish"),
    sa.Column("version_number", sa.Integer, nullable=True),
    sa.Column("publication_id", BigInt, nullable=True),
    sa.Column("content_hash", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Index("ix_publication_audit_event_type", "event_type"),
)

# -- execution instances (store/instances.py) ---------------------------------------------------

#: The execution instances a control instance publishes to. The credential (an execution
#: instance's API key with the ``publish`` scope) is kept in clear: it is needed to send.
instances = sa.Table(
    "instances",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("base_url", sa.Text, nullable=False),
    sa.Column("credential", sa.Text, nullable=False),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Column("contacted_at", BigInt, nullable=True, comment="last answer received"),
    sa.Column("last_outcome", sa.Text, nullable=False, comment="'', ok or failed"),
    sa.Column("last_error", sa.Text, nullable=False),
)

#: One row per delivery of a publication (or an unpublication) to an execution instance.
instance_deliveries = sa.Table(
    "instance_deliveries",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("instance", sa.Text, nullable=False),
    sa.Column("audit_id", BigInt, nullable=True, comment="the audit line it carried out"),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False, comment="publish or unpublish"),
    sa.Column("content_hash", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False, comment="ok or failed"),
    sa.Column("http_status", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Index("ix_instance_deliveries_instance_id", "instance", "id"),
    sa.Index("ix_instance_deliveries_audit_id", "audit_id"),
)

# -- console (store/operators.py) ----------------------------------------------------------------

#: People who sign in to the console (``tidings operators``); passwords as argon2 hashes.
operators = sa.Table(
    "operators",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False, comment="argon2id"),
    sa.Column("role", sa.Text, nullable=False, comment="admin, designer or operator"),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
)

#: Signed-in console sessions: the cookie holds a random token, the table its SHA-256.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("operator_id", BigInt, nullable=False),
    sa.Column("csrf_token", sa.Text, nullable=False),
    sa.Column("created_at", BigInt, nullable=False),
    sa.Column("expires_at", BigInt, nullable=False),
    sa.Index("ix_console_sessions_operator_id", "operator_id"),
)
