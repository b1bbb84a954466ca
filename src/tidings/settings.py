"""One frozen :class:`Settings` value, built at the edge.

Every field can be set by an environment variable ``TIDINGS_<FIELD>`` (upper case) or by a
key of the same name (lower case) in a ``tidings.toml`` file; the environment wins. Each field
carries its help text, which ``tidings settings`` prints and the README documents (a test
keeps the two in step).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from tidings import ratelimit
from tidings.channels import destination, failover


class SettingsError(ValueError):
    """A setting has a value Tidings cannot use; the message names the setting."""


def _port(text: str, entry: str, setting: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SettingsError(f"{setting}: {entry!r} has no valid port")
    return int(text)


def host_list(text: str, default_port: int, setting: str) -> list[tuple[str, int]]:
    """``host[:port],host[:port]`` (``[IPv6]:port`` too) as (host, port) pairs, in order;
    a bad port is a :class:`SettingsError` naming ``setting``."""
    hosts = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        host, port = entry, default_port
        if entry.startswith("["):  # [IPv6]:port
            host, _, rest = entry[1:].partition("]")
            if rest.startswith(":"):
                port = _port(rest[1:], entry, setting)
        elif entry.count(":") == 1:
            host, _, port_text = entry.partition(":")
            port = _port(port_text, entry, setting)
        hosts.append((host, port))
    return hosts


def _field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything an operator can configure. Durations are in seconds."""

    # Where things live
    database_url: str = _field(
        "sqlite:///tidings.db",
        "Database: `sqlite:///path.db` (embedded, the default) or "
        "`postgresql://user@host:port/db`.",
    )
    instance_id: int = _field(
        0, "This execution instance's id, 0-255; it is the high byte of every event id."
    )

    # HTTP
    host: str = _field("127.0.0.1", "Address the HTTP API listens on.")
    port: int = _field(8080, "Port the HTTP API listens on.")
    public_url: str = _field(
        "",
        "Base URL clients reach this instance at (`serverUrl` in Adobe answers); "
        "default `http://<host>:<port>`.",
    )
    org: str = _field("local", "`{org}` in the Campaign Standard route `/{org}/campaign/...`.")
    transactional_api: str = _field(
        "mclocal", "`{transactionalAPI}` in the Campaign Standard route (Adobe: `mc` + org id)."
    )
    processes: int = _field(
        1,
        "Processes `tidings serve`, `api` and `worker` run on this node (or `--processes`), "
        "sharing the listening port, each with its own database connections, group-commit "
        "writer, event-id slot and worker; 0: one per CPU core. At most 64.",
    )
    max_body_bytes: int = _field(262144, "Largest request body accepted (413 above it).")
    max_batch_events: int = _field(1000, "Most events in one `POST /api/v1/events/batch`.")

    # Ingest: group commit
    commit_max_rows: int = _field(
        1000, "Most events written in one ingest transaction (group commit)."
    )
    commit_max_delay: float = _field(
        0.0,
        "Longest an accepted event waits for companions before its transaction starts "
        "(group commit), in seconds. The default 0 commits as soon as the previous commit "
        "finished: a batch is what arrived meanwhile, which measured faster than waiting.",
    )

    # Worker
    worker_concurrency: int = _field(256, "Most messages one worker process sends at once.")
    claim_batch: int = _field(200, "Most events one claim takes from the queue.")
    lease_seconds: float = _field(
        120.0, "How long a claimed event belongs to its worker; after that another may take it."
    )
    poll_interval: float = _field(
        1.0, "How often an idle worker looks for due events without being woken."
    )
    retry_base: float = _field(30.0, "First retry delay after a temporary failure.")
    retry_max: float = _field(3600.0, "Longest delay between two attempts.")
    event_validity: float = _field(
        86400.0,
        "How long an event without `expiration` may keep being retried before it ends "
        "`tooOld`, counted from when it became due.",
    )
    shutdown_grace: float = _field(
        10.0, "On shutdown, how long in-flight sends may finish before their events are released."
    )

    # Email
    email_transport: str = _field(
        "",
        "`outbox` (keep messages in the local outbox) or `smtp`; empty means `smtp` when "
        "`smtp_host` is set, else `outbox`.",
    )
    default_sender: str = _field(
        "Tidings <noreply@tidings.localhost>",
        "Sender used when a template names none, as `Name <address>`.",
    )
    message_id_domain: str = _field(
        "", "Domain part of generated Message-IDs; default each message's sender's domain."
    )
    smtp_host: str = _field(
        "",
        "SMTP relay host name or address; several relays in priority order as "
        "`host[:port],host[:port]` (the next takes the traffic while one is down).",
    )
    smtp_port: int = _field(
        0, "SMTP port (where `smtp_host` names none); default 465 for `implicit` TLS, else 25."
    )
    smtp_tls: str = _field(
        "opportunistic",
        "`none`, `opportunistic` (STARTTLS when offered), `starttls` (required) "
        "or `implicit` (TLS from the first byte).",
    )
    smtp_tls_verify: bool = _field(True, "Verify the SMTP server's certificate and host name.")
    smtp_ca_file: str = _field("", "CA bundle (PEM) for the SMTP server's certificate.")
    smtp_username: str = _field("", "SMTP AUTH user name; empty means no AUTH.")
    smtp_password: str = _field("", "SMTP AUTH password.")
    smtp_pool_size: int = _field(8, "SMTP connections kept open to the relay.")
    smtp_timeout: float = _field(30.0, "Seconds to wait for an SMTP reply before giving up.")
    smtp_pipelining: bool = _field(
        True, "Pipeline SMTP commands (RFC 2920) when the server offers PIPELINING."
    )
    smtp_helo_name: str = _field("", "Name sent in EHLO; default this machine's FQDN.")
    smtp_rate_limit: float = _field(
        0.0, "Most messages a second to each SMTP relay (0: no limit); bursts wait their turn."
    )
    smtp_rate_burst: float = _field(
        0.0, "Messages an SMTP relay may take at once under its rate limit; default one second's."
    )

    # Failover (channels/failover.py), for channels with several connectors
    connector_down_after: int = _field(
        2, "Connection failures in a row after which a connector is marked down."
    )
    connector_down_for: float = _field(
        30.0, "How long a connector marked down gets no traffic before it is tried again."
    )
    connector_max_wait: float = _field(
        5.0, "Longest a message waits for a rate-limited connector before trying the next."
    )

    # SMS over SMPP 3.4 (channels/sms/)
    smpp_host: str = _field(
        "",
        "SMSC host name or address; several SMSCs in priority order as "
        "`host[:port],host[:port]` (the next takes the traffic while one is down); "
        "empty: no SMS transport.",
    )
    smpp_port: int = _field(2775, "SMSC port (where `smpp_host` names none).")
    smpp_system_id: str = _field("", "SMPP `system_id` to bind as transceiver with.")
    smpp_password: str = _field("", "SMPP bind password (at most 8 characters).")
    smpp_system_type: str = _field("", "SMPP `system_type` sent in the bind.")
    smpp_source: str = _field(
        "", "Sender of SMS whose template names none: alphanumeric (up to 11) or a number."
    )
    smpp_source_ton: int = _field(
        5, "TON of an alphanumeric sender and of the bind (5 alphanumeric); numbers go as 1/1."
    )
    smpp_source_npi: int = _field(0, "NPI of an alphanumeric sender and of the bind.")
    smpp_dest_ton: int = _field(1, "TON of destination numbers (1: international).")
    smpp_dest_npi: int = _field(1, "NPI of destination numbers (1: E.164).")
    smpp_default_region: str = _field(
        "",
        "Country (ISO 3166 code, `FR`) for phone numbers written without `+country`; "
        "empty: such numbers fail.",
    )
    smpp_window: int = _field(10, "Most `submit_sm` awaiting the SMSC's response at once.")
    smpp_throughput: float = _field(
        0.0, "Most `submit_sm` sent a second (the SMSC account's limit); 0: unlimited."
    )
    smpp_enquire_link_interval: float = _field(
        30.0, "Seconds between `enquire_link` keep-alives on the SMPP session."
    )
    smpp_timeout: float = _field(
        10.0, "Seconds to wait for the SMSC to connect or answer before dropping the session."
    )
    smpp_message_payload: bool = _field(
        False,
        "Send long SMS whole in the `message_payload` parameter instead of concatenated "
        "parts with a UDH.",
    )
    smpp_registered_delivery: bool = _field(
        True, "Ask the SMSC for delivery receipts (recorded in the `receipts` table)."
    )
    smpp_reconnect_min: float = _field(
        1.0, "First delay before binding again after a failed bind; doubles each failure."
    )
    smpp_reconnect_max: float = _field(60.0, "Longest delay between two bind attempts.")

    # Mobile push (channels/push/)
    apns_key_file: str = _field(
        "",
        "Path of the APNs token signing key (the .p8 file from Apple); push to APNs is on when "
        "this or `apns_key` is set.",
    )
    apns_key: str = _field("", "The APNs .p8 key as PEM text, instead of `apns_key_file`.")
    apns_key_id: str = _field("", "The 10-character key id of the APNs key (JWT `kid`).")
    apns_team_id: str = _field("", "The 10-character Apple team id (JWT `iss`).")
    apns_topic: str = _field("", "The app's bundle id, sent as `apns-topic`.")
    apns_endpoint: str = _field(
        "production", "`production`, `sandbox` (development builds) or an `https://` URL."
    )
    apns_ca_file: str = _field("", "CA bundle (PEM) for APNs' certificate; default the system's.")
    apns_timeout: float = _field(10.0, "Seconds allowed for connecting to APNs and each answer.")
    apns_concurrency: int = _field(
        100, "Most APNs requests in flight at once (HTTP/2 streams on one connection)."
    )
    fcm_service_account_file: str = _field(
        "",
        "Path of the Google service-account key (JSON) for FCM; push to FCM is on when this "
        "or `fcm_service_account` is set. The project id and token URI come from it.",
    )
    fcm_service_account: str = _field(
        "", "The FCM service-account key as JSON text, instead of the file."
    )
    fcm_endpoint: str = _field("https://fcm.googleapis.com", "The FCM HTTP v1 API's base URL.")
    fcm_ca_file: str = _field(
        "", "CA bundle (PEM) for FCM's and the token URI's certificates; default the system's."
    )
    fcm_timeout: float = _field(10.0, "Seconds allowed for connecting to FCM and each answer.")
    fcm_concurrency: int = _field(
        100, "Most FCM requests in flight at once (HTTP/2 streams on one connection)."
    )

    # Housekeeping
    idempotency_ttl: float = _field(86400.0, "How long an `Idempotency-Key` is remembered.")
    log_level: str = _field("info", "`debug`, `info`, `warning` or `error`.")
    log_format: str = _field("text", "`text` for people, `json` for log collectors.")

    # Retention (store/retention.py)
    event_retention: float = _field(
        2592000.0,
        "How long events, their delivery log, outbox messages and bounces are kept after "
        "they were received (default 30 days); older events in a final status are counted into the "
        "daily aggregates and purged. 0 keeps them forever.",
    )
    report_retention: float = _field(
        31104000.0, "How long the daily aggregates are kept (default 360 days); 0: forever."
    )
    retention_interval: float = _field(
        3600.0,
        "How often each worker process purges data older than the retention ages; 0: never.",
    )
    retention_batch: int = _field(1000, "Most events purged in one transaction.")
    rollup_interval: float = _field(
        60.0,
        "How often each worker process rolls finished events up into the hourly report "
        "aggregates (the reports add what is newer); 0: never.",
    )
    rollup_lag: float = _field(
        10.0,
        "How far behind now the roll-up stays, in seconds: more than the clocks of the "
        "nodes may differ.",
    )

    # Operations: rate limits and load shedding (ratelimit.py, api/ops.py)
    rate_limit: float = _field(
        0.0,
        "Requests a second each API key may make (token bucket refill rate, per process); "
        "0: unlimited. Over it the API answers 429 `rate_limited` with `Retry-After`.",
    )
    rate_limit_burst: int = _field(
        0, "Requests an API key may make at once (bucket size); 0: one second's worth."
    )
    rate_limits: str = _field(
        "",
        "Per-key limits overriding the default, as `prefix:rate/burst,...` with the key "
        "prefixes `tidings keys list` shows (`/burst` optional; rate 0: unlimited).",
    )
    shed_queue_age: float = _field(
        0.0,
        "Shed load: while the oldest due event has waited longer than this (sampled every "
        "second), event-ingest POSTs answer 503 `overloaded` with `Retry-After` and store "
        "nothing; 0: never.",
    )

    # Campaign Classic SOAP compatibility (api/soap.py, soap/)
    soap_max_body_bytes: int = _field(
        2097152,
        "Largest SOAP request (`/nl/jsp/soaprouter.jsp`) accepted; above it the call is "
        "refused with a SOAP fault and nothing is stored.",
    )
    soap_trusted_ips: str = _field(
        "",
        "Addresses and networks (`10.0.0.0/8,192.0.2.7`) whose SOAP calls need no API key "
        "(Adobe's trusted IP identification); the connection's peer address is checked.",
    )
    soap_session_ttl: float = _field(
        86400.0, "How long a session token from `xtk:session#Logon` stays valid."
    )
    soap_session_secret: str = _field(
        "",
        "Secret mixed into session token signatures (set the same value on every node), so "
        "that read access to the database is not enough to forge a session token.",
    )
    mc_ping_threshold: int = _field(
        400, "Pending events above which `/nl/jsp/mcPing.jsp` reports `Error` (Adobe's alert)."
    )

    # Bounces (bounces.py, inbound.py)
    bounce_address: str = _field(
        "",
        "Envelope sender (Return-Path) of every email, as `bounces@mail.example.com`: each "
        "message goes out from `bounces+<event id>@mail.example.com` (VERP), so a bounce names "
        "its event even when it quotes nothing of the message. Point that domain's MX at the "
        "bounce listener. Empty: the template's sender.",
    )
    bounce_smtp_port: int = _field(
        0,
        "Port of the inbound SMTP listener that takes bounces (delivery status notifications) "
        "in `tidings serve` and `tidings worker`; 0: no listener (bounces can still be POSTed "
        "to `/api/v1/bounces`).",
    )
    bounce_smtp_host: str = _field("127.0.0.1", "Address the inbound bounce listener binds.")
    bounce_max_bytes: int = _field(
        1048576,
        "Largest bounce message accepted, over HTTP (413 above it) or SMTP (552 above it).",
    )
    soft_bounce_limit: int = _field(
        3,
        "Soft bounces (4.x.x, mailbox full, policy) from this many distinct events within "
        "`TIDINGS_SOFT_BOUNCE_WINDOW` quarantine the address.",
    )
    soft_bounce_window: float = _field(
        604800.0, "How far back soft bounces count toward the limit (default 7 days)."
    )
    soft_bounce_quarantine: float = _field(
        604800.0,
        "How long an address that reached the soft-bounce limit stays quarantined "
        "(default 7 days); hard bounces quarantine for good.",
    )

    # Webhooks and status callbacks (channels/webhook.py, callbacks.py)
    webhook_secret: str = _field(
        "",
        "Secret that signs every webhook request (`Tidings-Signature` header, HMAC-SHA256 "
        "over the timestamp and the body); receivers verify with it. Status callbacks are "
        "signed with their subscription's own secret.",
    )
    instance_timeout: float = _field(
        10.0,
        "Seconds one attempt to deliver a publication to an execution instance may take "
        "(each of the instance_attempts is bounded by it).",
    )
    instance_allow_http: bool = _field(
        False,
        "Take http:// execution instance URLs on any host (by default only on a loopback "
        "host: the credential sent can rewrite the instance's templates).",
    )
    instance_attempts: int = _field(
        3, "Attempts to deliver a publication to an execution instance before it is failed."
    )
    webhook_connect_timeout: float = _field(
        5.0, "Seconds to resolve a webhook or callback host and connect to it."
    )
    webhook_timeout: float = _field(
        30.0, "Seconds a webhook or callback request may take in all before it is retried."
    )
    webhook_max_response_bytes: int = _field(
        4096, "How much of a receiver's answer is read and kept (the delivery log's reply)."
    )
    webhook_allow_private: bool = _field(
        False,
        "Let webhooks and callbacks reach loopback, private, link-local and reserved "
        "addresses (refused by default, so templates cannot reach into your network).",
    )
    webhook_allowed_networks: str = _field(
        "",
        "Networks webhooks and callbacks may reach although private (`10.1.0.0/16,::1`); "
        "checked against every address a host resolves to.",
    )
    webhook_user_agent: str = _field(
        "Tidings-Webhook/1", "`User-Agent` of webhook and callback requests."
    )
    webhook_pool_size: int = _field(
        32, "Most HTTP connections the webhook transport keeps open (per process)."
    )
    webhook_id_header: str = _field(
        "X-Request-Id",
        "Response header whose value becomes the provider id of a delivered webhook.",
    )
    webhook_ca_file: str = _field(
        "",
        "CA bundle (PEM) to verify HTTPS webhook and callback receivers with; default "
        "certifi's authorities.",
    )
    callback_max_attempts: int = _field(
        10, "Attempts to send one status callback before it is marked failed."
    )
    callback_max_age: float = _field(
        86400.0, "How long a status callback is retried, counted from its creation."
    )
    callback_retry_base: float = _field(
        10.0,
        "First delay before a status callback is tried again; it doubles per attempt, "
        "with jitter, up to `TIDINGS_CALLBACK_RETRY_MAX` (a `Retry-After` is honoured).",
    )
    callback_retry_max: float = _field(
        3600.0, "Longest delay between two attempts to send a status callback."
    )
    callback_poll_interval: float = _field(
        1.0, "How often the callback sender looks for due status callbacks."
    )
    callback_concurrency: int = _field(32, "Most status callbacks one process sends at once.")
    # Console (console/, operators.py) and its dashboard thresholds ("warning/alert")
    console_session_ttl: float = _field(
        43200.0, "How long a console sign-in lasts (default 12 hours)."
    )
    console_login_attempts: int = _field(
        5,
        "Failed console sign-ins allowed per operator name and per client address within "
        "`TIDINGS_CONSOLE_LOGIN_WINDOW`; more are refused (429) until the window has passed.",
    )
    console_login_window: float = _field(
        300.0, "The window failed console sign-ins are counted in, in seconds."
    )
    threshold_pending_queue: str = _field(
        "100/400", "Dashboard warning/alert thresholds for events waiting in the queue."
    )
    threshold_error_rate: str = _field(
        "1/5", "Dashboard warning/alert thresholds for the error rate, in percent."
    )
    threshold_time_in_queue: str = _field(
        "4/8", "Dashboard warning/alert thresholds for the average time in queue, in seconds."
    )
    threshold_sending_time: str = _field(
        "6/12", "Dashboard warning/alert thresholds for the average sending time, in seconds."
    )
    threshold_processing_time: str = _field(
        "10/20",
        "Dashboard warning/alert thresholds for the average processing time (received to "
        "sent), in seconds.",
    )
    # Profiles and enrichment
    profile_import_max_bytes: int = _field(
        1073741824,
        "Largest body `POST /api/v1/profiles/import` accepts (413 above it); the import is "
        "read as a stream, so this bounds the file, not memory.",
    )
    enrichment_cache_size: int = _field(
        10000, "Most enrichment answers kept in the cache (least recently used go first)."
    )

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, toml_path: str | Path | None = None
    ) -> Self:
        """Build settings from ``tidings.toml`` (if present) overlaid by ``TIDINGS_*``."""
        env = os.environ if env is None else env
        path = Path(toml_path or env.get("TIDINGS_CONFIG", "tidings.toml"))
        raw: dict[str, Any] = {}
        if path.is_file():
            with path.open("rb") as file:
                raw.update(tomllib.load(file))
        for field in dataclasses.fields(cls):
            value = env.get(f"TIDINGS_{field.name.upper()}")
            if value is not None:
                raw[field.name] = value
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Self:
        """Build settings from plain values (strings are converted), checking each."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        values = {name: _convert(names[name], value) for name, value in raw.items()}
        settings = cls(**values)
        settings.check()
        return settings

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (checked like any other)."""
        new = dataclasses.replace(self, **changes)
        new.check()
        return new

    def check(self) -> None:
        """Raise :class:`SettingsError` for values outside their range."""
        if not 0 <= self.instance_id <= 255:
            raise SettingsError("instance_id must be between 0 and 255")
        if not 0 <= self.processes <= 64:
            raise SettingsError("processes must be between 0 (one per CPU core) and 64")
        if self.email_transport not in ("", "outbox", "smtp"):
            raise SettingsError("email_transport must be `outbox` or `smtp`")
        if self.smtp_tls not in ("none", "opportunistic", "starttls", "implicit"):
            raise SettingsError("smtp_tls must be none, opportunistic, starttls or implicit")
        if self.email_transport == "smtp" and not self.smtp_host:
            raise SettingsError("email_transport is smtp but smtp_host is empty")
        if self.log_format not in ("text", "json"):
            raise SettingsError("log_format must be text or json")
        if self.rate_limit < 0 or self.rate_limit_burst < 0 or self.shed_queue_age < 0:
            raise SettingsError("rate_limit, rate_limit_burst and shed_queue_age must be >= 0")
        try:
            ratelimit.parse_overrides(self.rate_limits)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        for name in (
            "smtp_pool_size",
            "worker_concurrency",
            "claim_batch",
            "commit_max_rows",
            "max_batch_events",
            "max_body_bytes",
            "retention_batch",
            "bounce_max_bytes",
            "soft_bounce_limit",
            "connector_down_after",
            "smpp_window",
            "webhook_pool_size",
            "callback_max_attempts",
            "callback_concurrency",
            "apns_concurrency",
            "fcm_concurrency",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1")
        if self.bounce_address and (
            self.bounce_address.count("@") != 1 or self.bounce_address.startswith("@")
        ):
            raise SettingsError("bounce_address must be an address: `bounces@example.com`")
        if self.apns_key and self.apns_key_file:
            raise SettingsError("set apns_key or apns_key_file, not both")
        if self.uses_apns and not (self.apns_key_id and self.apns_team_id and self.apns_topic):
            raise SettingsError("APNs needs apns_key_id, apns_team_id and apns_topic")
        if self.apns_endpoint not in ("production", "sandbox") and not (
            self.apns_endpoint.startswith("https://")
        ):
            raise SettingsError("apns_endpoint must be production, sandbox or an https:// URL")
        if self.fcm_service_account and self.fcm_service_account_file:
            raise SettingsError("set fcm_service_account or fcm_service_account_file, not both")
        if not self.fcm_endpoint.startswith("https://"):
            raise SettingsError("fcm_endpoint must be an https:// URL")
        if self.apns_timeout <= 0 or self.fcm_timeout <= 0:
            raise SettingsError("apns_timeout and fcm_timeout must be > 0")
        if not 0 <= self.bounce_smtp_port <= 65535:
            raise SettingsError("bounce_smtp_port must be between 0 and 65535")
        if self.soft_bounce_window <= 0 or self.soft_bounce_quarantine <= 0:
            raise SettingsError("soft_bounce_window and soft_bounce_quarantine must be > 0")
        for name in ("smtp_rate_limit", "smtp_rate_burst", "connector_down_for"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be >= 0")
        if self.connector_max_wait < 0:
            raise SettingsError("connector_max_wait must be >= 0")
        if self.console_session_ttl <= 0 or self.console_login_window <= 0:
            raise SettingsError("console_session_ttl and console_login_window must be > 0")
        if self.console_login_attempts < 1:
            raise SettingsError("console_login_attempts must be at least 1")
        for name in THRESHOLDS:
            self.threshold(name)
        self.smtp_relays  # noqa: B018 (parses smtp_host, raising for a bad port)
        if self.smpp_host.strip() and not self.smscs:
            raise SettingsError("smpp_host names no SMSC: `host[:port],host[:port]`")
        if self.smpp_throughput < 0 or self.smpp_reconnect_min <= 0:
            raise SettingsError("smpp_throughput must be >= 0 and smpp_reconnect_min > 0")
        if len(self.smpp_password) > 8 or len(self.smpp_system_id) > 15:
            raise SettingsError("smpp_password has at most 8 characters, smpp_system_id 15")
        if self.instance_timeout <= 0 or self.instance_attempts < 1:
            raise SettingsError("instance_timeout must be > 0 and instance_attempts >= 1")
        if min(self.webhook_connect_timeout, self.webhook_timeout) <= 0:
            raise SettingsError("webhook_connect_timeout and webhook_timeout must be > 0")
        if min(self.callback_retry_base, self.callback_retry_max, self.callback_max_age) <= 0:
            raise SettingsError("callback_retry_base, _retry_max and _max_age must be > 0")
        if self.callback_poll_interval <= 0 or self.webhook_max_response_bytes < 0:
            raise SettingsError("callback_poll_interval must be > 0, max response bytes >= 0")
        try:
            destination.parse_networks(self.webhook_allowed_networks.split(","))
        except ValueError as exc:
            raise SettingsError(f"webhook_allowed_networks: {exc}") from None
        if not self.database_url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise SettingsError("database_url must start with sqlite:// or postgresql://")

    @property
    def server_url(self) -> str:
        """The base URL of this instance as clients see it."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def threshold(self, name: str) -> tuple[float, float]:
        """The (warning, alert) pair of ``threshold_<name>``."""
        text = getattr(self, f"threshold_{name}")
        warning, slash, alert = text.partition("/")
        try:
            pair = (float(warning), float(alert))
        except ValueError:
            pair = (-1.0, -1.0)
        if not slash or pair[0] < 0 or pair[1] < pair[0]:
            raise SettingsError(
                f"threshold_{name} must be `warning/alert`, two numbers, warning <= alert"
            )
        return pair

    @property
    def uses_smtp(self) -> bool:
        """Whether email goes to the SMTP relay rather than the local outbox."""
        return self.email_transport == "smtp" or (
            self.email_transport == "" and bool(self.smtp_host)
        )

    @property
    def uses_apns(self) -> bool:
        """Whether push to APNs is configured."""
        return bool(self.apns_key or self.apns_key_file)

    @property
    def uses_fcm(self) -> bool:
        """Whether push to FCM is configured."""
        return bool(self.fcm_service_account or self.fcm_service_account_file)

    @property
    def effective_smtp_port(self) -> int:
        """The SMTP port, defaulted from the TLS mode."""
        return self.smtp_port or (465 if self.smtp_tls == "implicit" else 25)

    @property
    def smtp_relays(self) -> list[tuple[str, int]]:
        """``smtp_host`` as (host, port) pairs, in priority order."""
        return host_list(self.smtp_host, self.effective_smtp_port, "smtp_host")

    @property
    def smscs(self) -> list[tuple[str, int]]:
        """``smpp_host`` as (host, port) pairs, in priority order (``smpp_port`` where an
        entry names none)."""
        return host_list(self.smpp_host, self.smpp_port, "smpp_host")

    def failover_policy(self, rate: float = 0.0, burst: float = 0.0) -> failover.Policy:
        """The failover and rate-limit policy for one channel's connectors."""
        return failover.Policy(
            down_after=self.connector_down_after,
            down_for=self.connector_down_for,
            rate=rate,
            burst=burst or max(rate, 1.0),
            max_wait=self.connector_max_wait,
        )


#: The dashboard's thresholds: ``threshold_<name>`` settings.
THRESHOLDS = ("pending_queue", "error_rate", "time_in_queue", "sending_time", "processing_time")


def describe() -> list[tuple[str, str, str]]:
    """(environment variable, default, help) for every setting, in declaration order."""
    return [
        (f"TIDINGS_{f.name.upper()}", repr(f.default), f.metadata["help"])
        for f in dataclasses.fields(Settings)
    ]


def _convert(field: dataclasses.Field[Any], value: Any) -> Any:
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    if not isinstance(value, str):
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        expected = {"str": str, "int": int, "float": float, "bool": bool}[kind]
        if not isinstance(value, expected) or (kind == "int" and isinstance(value, bool)):
            raise SettingsError(f"{field.name} must be a {kind}, not {value!r}")
        return value
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
    except ValueError:
        raise SettingsError(f"{field.name} must be a {kind}, not {value!r}") from None
    return value
