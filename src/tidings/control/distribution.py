"""Delivering publications to the registered execution instances.

:func:`publish` and :func:`unpublish` apply a change here as :mod:`.publishing` does, then
deliver it to every registered instance concurrently over HTTP (each request bounded by
``instance_timeout``, tried up to ``instance_attempts`` times when the instance does not
answer or answers 5xx/429), recording one result per instance. With no instance registered
they are the local call only. :func:`sync` catches a lagging instance up: it reads what the
instance holds and sends what differs (and the unpublications it missed).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec

from tidings import clock, model
from tidings.control import errors, eventtypes, instances, publishing, remote
from tidings.settings import Settings
from tidings.store import design
from tidings.store import instances as store
from tidings.store import targeting as targeting_store
from tidings.store.database import Connection, Database

PATH = "/api/v1/execution/publications"
_MAX_ERROR = 500
_encode = msgspec.json.Encoder().encode
_holdings = msgspec.json.Decoder(list[remote.Holding])


class _Answer(msgspec.Struct, frozen=True):
    status: int | None
    error: str
    attempts: int
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _reason(response: httpx.Response) -> str:
    """What an instance's error answer says (its code and message, when it is ours)."""
    try:
        body: Any = response.json()
        error = body["error"]
        return f"{error['code']}: {error['message']}"[:_MAX_ERROR]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"


async def _call(
    client: httpx.AsyncClient,
    settings: Settings,
    row: store.InstanceRow,
    method: str,
    path: str,
    body: bytes | None = None,
) -> _Answer:
    """One request to an instance, retried while it does not answer or answers 5xx/429."""
    headers = {"Authorization": f"Bearer {row.credential}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    status: int | None = None
    error = ""
    attempt = 0
    for attempt in range(1, settings.instance_attempts + 1):
        try:
            async with asyncio.timeout(settings.instance_timeout):
                response = await client.request(
                    method, row.base_url + path, content=body, headers=headers
                )
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            status = None
            error = _transport_error(exc, settings)
        else:
            status = response.status_code
            if response.is_success:
                return _Answer(status, "", attempt, response.content)
            error = _reason(response)
            if status < 500 and status != 429:
                break
        if attempt < settings.instance_attempts:
            await asyncio.sleep(0.2 * attempt)
    return _Answer(status, error, attempt)


def _transport_error(exc: BaseException, settings: Settings) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"no answer within {settings.instance_timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc}"[:_MAX_ERROR] if str(exc) else "cannot connect"
    return f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]


async def _shipment(
    conn: Connection, event_type: str, channel: model.Channel
) -> remote.Shipment | None:
    """What to send for (event type, channel): its definition and routed bundle (None when
    nothing with a bundle is routed there)."""
    row = await design.get_event_type(conn, event_type)
    current = await design.active_publication(conn, event_type, channel)
    if row is None or current is None or current.bundle is None:
        return None
    definition = remote.Definition(
        row.name,
        row.label,
        row.default_channel,
        eventtypes.parse_spec(row.spec),
        await targeting_store.get_targeting(conn, event_type),
    )
    return remote.Shipment(definition, current.content_hash, current.bundle, current.published_by)


async def _deliver_one(
    db: Database,
    client: httpx.AsyncClient,
    settings: Settings,
    row: store.InstanceRow,
    audit_id: int | None,
    event_type: str,
    channel: model.Channel,
    content_hash: str,
    shipment: remote.Shipment | None,
) -> publishing.Delivered:
    path = f"{PATH}/{event_type}/{channel}"
    if shipment is None:
        answer = await _call(client, settings, row, "DELETE", path)
        action = "unpublish"
    else:
        answer = await _call(client, settings, row, "PUT", path, _encode(shipment))
        action = "publish"
    return await _record(db, row, audit_id, event_type, channel, action, content_hash, answer)


async def _record(
    db: Database,
    row: store.InstanceRow,
    audit_id: int | None,
    event_type: str,
    channel: model.Channel,
    action: str,
    content_hash: str,
    answer: _Answer,
) -> publishing.Delivered:
    now = clock.now_us()
    outcome = "ok" if answer.ok else "failed"
    async with db.transaction() as conn:
        done = await store.add_delivery(
            conn,
            store.DeliveryRow(
                0,
                row.name,
                audit_id,
                event_type,
                channel,
                action,
                content_hash,
                outcome,
                answer.status,
                answer.error,
                answer.attempts,
                now,
            ),
        )
        await store.mark_instance(
            conn, row.name, outcome, answer.error, None if answer.status is None else now
        )
    return instances.delivered(done)


def _client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=settings.instance_timeout, follow_redirects=False)


async def deliver(
    db: Database, settings: Settings, event_type: str, channel: model.Channel
) -> list[publishing.Delivered]:
    """Send what (event type, channel) is now here — its routed publication, or its
    unpublication — to every registered instance at once; one result per instance."""
    async with db.connection() as conn:
        targets = await store.list_instances(conn)
        if not targets:
            return []
        latest = await design.latest_audit(conn, event_type, channel)
        shipment = await _shipment(conn, event_type, channel)
    audit_id = None if latest is None else latest[0]
    if shipment is not None:
        content_hash = shipment.contentHash
    else:
        content_hash = "" if latest is None else latest[2]
    async with _client(settings) as client:
        return list(
            await asyncio.gather(
                *(
                    _deliver_one(
                        db,
                        client,
                        settings,
                        row,
                        audit_id,
                        event_type,
                        channel,
                        content_hash,
                        shipment,
                    )
                    for row in targets
                )
            )
        )


async def publish(
    db: Database,
    settings: Settings,
    event_type: str,
    channel: model.Channel,
    number: int,
    *,
    actor: str,
) -> publishing.Published:
    """Publish a version here (:func:`.publishing.publish`), then to every instance."""
    done = await publishing.publish(
        db, event_type, channel, number, actor=actor, default_sender=settings.default_sender
    )
    delivered = await deliver(db, settings, event_type, channel)
    return msgspec.structs.replace(done, instances=delivered)


async def unpublish(
    db: Database, settings: Settings, event_type: str, channel: model.Channel, *, actor: str
) -> list[publishing.Delivered]:
    """Unpublish here (:func:`.publishing.unpublish`), then on every instance."""
    await publishing.unpublish(db, event_type, channel, actor=actor)
    return await deliver(db, settings, event_type, channel)


#: One delivery a sync makes: (event type, channel, content hash, what to send — None to
#: unpublish —, the audit line it carries out).
_Due = tuple[str, model.Channel, str, remote.Shipment | None, int | None]


async def sync(db: Database, settings: Settings, name: str) -> list[publishing.Delivered]:
    """Catch an instance up: read what it holds, send each publication routed here that it
    lacks (or holds another version of) and each unpublication it missed. Nothing to send:
    an empty list. :class:`~tidings.control.errors.Unreachable` if it cannot be read."""
    async with db.connection() as conn:
        row = await store.get_instance(conn, name)
        if row is None:
            raise instances.unknown(name)
    async with _client(settings) as client:
        answer = await _call(client, settings, row, "GET", PATH)
        try:
            held = _holdings.decode(answer.body) if answer.ok else None
        except msgspec.DecodeError:
            error = "the answer is not a list of publications"
            held, answer = None, _Answer(answer.status, error, answer.attempts)
        if held is None:
            async with db.transaction() as conn:
                contacted = None if answer.status is None else clock.now_us()
                await store.mark_instance(conn, name, "failed", answer.error, contacted)
            raise errors.Unreachable(
                "instance_unreachable", f"instance {name!r}: {answer.error}", field="name"
            )
        async with db.connection() as conn:
            due = await _due(conn, {(h.eventType, h.channel): h.contentHash for h in held})
        if not due:
            async with db.transaction() as conn:
                await store.mark_instance(conn, name, "ok", "", clock.now_us())
            return []
        return [
            await _deliver_one(db, client, settings, row, audit_id, et, ch, digest, shipment)
            for et, ch, digest, shipment, audit_id in due
        ]


async def _due(conn: Connection, there: dict[tuple[str, model.Channel], str]) -> list[_Due]:
    """What an instance holding ``there`` (content hashes) lacks: the publications routed
    here with another hash there or none, and the unpublications of what it still holds."""
    local = await design.list_active_publications(conn)
    due: list[_Due] = []
    for p in local:
        if p.bundle is None or there.get((p.event_type, p.channel)) == p.content_hash:
            continue
        shipment = await _shipment(conn, p.event_type, p.channel)
        latest = await design.latest_audit(conn, p.event_type, p.channel)
        if shipment is not None:
            due.append((p.event_type, p.channel, p.content_hash, shipment, latest and latest[0]))
    routed = {(p.event_type, p.channel) for p in local}
    for (event_type, channel), content_hash in sorted(there.items()):
        if (event_type, channel) in routed:
            continue
        latest = await design.latest_audit(conn, event_type, channel)
        if latest is not None and latest[1] == "unpublish":
            due.append((event_type, channel, content_hash, None, latest[0]))
    return due
