"""The execution instances a control instance publishes to (:mod:`.distribution` sends
them publications).

An instance is registered with a name, its base URL and a credential: an API key of that
instance holding the ``publish`` scope (``tidings keys create NAME --scope publish`` there).
The credential is kept to send with, and never shown. It can rewrite the instance's
templates, so it travels over https only, but to a loopback host (or where the operator
allowed plain http with ``instance_allow_http``).
"""

from __future__ import annotations

import re

import msgspec

from tidings import clock
from tidings.channels import destination
from tidings.control import errors, publishing
from tidings.store import instances as store
from tidings.store.database import Database

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class NewInstance(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An instance to register: ``credential`` is its API key with the ``publish`` scope."""

    name: str
    baseUrl: str
    credential: str


class Instance(msgspec.Struct, frozen=True):
    """A registered instance (its credential is never shown) and its last outcome."""

    name: str
    baseUrl: str
    createdAt: str
    contactedAt: str | None
    lastOutcome: str
    lastError: str


class InstanceDetail(msgspec.Struct, frozen=True):
    """An instance with its latest deliveries, newest first."""

    instance: Instance
    deliveries: list[publishing.Delivered]


def _instance(row: store.InstanceRow) -> Instance:
    return Instance(
        row.name,
        row.base_url,
        clock.format_iso(row.created_at),
        None if row.contacted_at is None else clock.format_iso(row.contacted_at),
        row.last_outcome,
        row.last_error,
    )


def delivered(row: store.DeliveryRow) -> publishing.Delivered:
    """A delivery row as the surfaces show it."""
    return publishing.Delivered(
        row.instance,
        row.event_type,
        row.channel,
        row.action,
        row.content_hash,
        row.outcome,
        row.http_status,
        row.error,
        row.attempts,
        clock.format_iso(row.created_at),
    )


def _checked(new: NewInstance, allow_http: bool) -> NewInstance:
    if not NAME.match(new.name):
        raise errors.Invalid(
            "invalid_name",
            "an instance name starts with a letter or digit and holds only letters, digits, "
            "'_', '.' and '-' (at most 64)",
            field="$.name",
        )
    base = new.baseUrl.strip().rstrip("/")
    try:
        url = destination.parse_url(base)
    except destination.DestinationError as exc:
        raise errors.Invalid("invalid_url", f"baseUrl: {exc}", field="$.baseUrl") from None
    if url.query or url.fragment or "?" in base or "#" in base:
        raise errors.Invalid(
            "invalid_url", "baseUrl must not carry a query or fragment", field="$.baseUrl"
        )
    if url.scheme == "http" and not allow_http and not _loopback(url.host):
        raise errors.Invalid(
            "invalid_url",
            "baseUrl must be https:// (the credential can rewrite the instance's templates); "
            "http:// is taken for a loopback host, or everywhere with "
            "TIDINGS_INSTANCE_ALLOW_HTTP",
            field="$.baseUrl",
        )
    credential = new.credential.strip()
    if not credential or len(credential) > 500 or any(c.isspace() for c in credential):
        raise errors.Invalid(
            "invalid_field",
            "credential is the instance's API key with the publish scope",
            field="$.credential",
        )
    return NewInstance(new.name, base, credential)


def _loopback(host: str) -> bool:
    address = destination.literal_address(host)
    if address is None:
        return host.lower() == "localhost"
    return destination.kind_of(address) == "loopback"


async def add(db: Database, new: NewInstance, *, allow_http: bool = False) -> Instance:
    """Register an instance; :class:`~tidings.control.errors.Conflict` if the name is taken,
    :class:`~tidings.control.errors.Invalid` (``invalid_url``) for an ``http://`` URL to a
    host that is not loopback unless ``allow_http``."""
    new = _checked(new, allow_http)
    now = clock.now_us()
    async with db.transaction() as conn:
        if not await store.insert_instance(conn, new.name, new.baseUrl, new.credential, now):
            raise errors.Conflict(
                "duplicate_instance", f"an instance named {new.name!r} exists", field="$.name"
            )
        row = await store.get_instance(conn, new.name)
    assert row is not None
    return _instance(row)


async def list_all(db: Database) -> list[Instance]:
    """Every registered instance, by name."""
    async with db.connection() as conn:
        return [_instance(r) for r in await store.list_instances(conn)]


def unknown(name: str) -> errors.NotFound:
    """The error for an instance name not registered."""
    return errors.NotFound("unknown_instance", f"no instance named {name!r}", field="name")


async def get(db: Database, name: str, limit: int = 20) -> InstanceDetail:
    """An instance and its latest deliveries."""
    async with db.connection() as conn:
        row = await store.get_instance(conn, name)
        if row is None:
            raise unknown(name)
        found = await store.list_deliveries(conn, name, limit, row.created_at)
    return InstanceDetail(_instance(row), [delivered(d) for d in found])


async def remove(db: Database, name: str) -> None:
    """Forget an instance (it keeps what it holds; nothing is sent to it any more)."""
    async with db.transaction() as conn:
        if not await store.delete_instance(conn, name):
            raise unknown(name)
