"""Delivering publications to the registered execution instances.

:func:`publish` and :func:`unpublish` apply a change here as :mod:`.publishing` does, then
deliver it to every registered instance concurrently over HTTP (each attempt bounded by
``instance_timeout``, tried up to ``instance_attempts`` times when the instance does not
answer or answers 5xx/429), recording one result per instance; :func:`delete_event_type`
deletes an event type and delivers the unpublication of each channel it routed. With no
instance registered they are the local call only. :func:`sync` catches a lagging instance
up: it reads what the instance holds and sends what differs (bundle or definition) and the
unpublications it missed.

Every change carries its audit line id as ``sequence``; an instance that applied a newer one
answers ``stale_publication``, recorded as ``superseded`` (not a failure). A 2xx answer is
``ok`` only if it is the :class:`~.remote.Applied` of what was sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec

from tidings import clock, model
from tidings.control import errors, instances, publishing, remote
from tidings.settings import Settings
from tidings.store import design
from tidings.store import instances as store
from tidings.store.database import Connection, Database

PATH = "/api/v1/execution/publications"
_MAX_ERROR = 500
_encode = msgspec.json.Encoder().encode
_holdings = msgspec.json.Decoder(list[remote.Holding])
_applied = msgspec.json.Decoder(remote.Applied)
OK, FAILED, SUPERSEDED = "ok", "failed", "superseded"


class _Answer(msgspec.Struct, frozen=True):
    status: int | None
    error: str
    attempts: int
    body: bytes = b""
    code: str = ""

    @property
    def ok(self) -> bool:
        """A 2xx answer (not found to be wrong: ``code`` empty)."""
        return self.status is not None and 200 <= self.status < 300 and not self.code


def _reason(response: httpx.Response) -> tuple[str, str]:
    """What an instance's error answer says: its code (when it is ours) and a reason."""
    try:
        body: Any = response.json()
        error = body["error"]
        return str(error["code"]), f"{error['code']}: {error['message']}"[:_MAX_ERROR]
    except (ValueError, KeyError, TypeError):
        return "", f"HTTP {response.status_code}: {response.text[:200]}"


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
    error = code = ""
    attempt = 0
    for attempt in range(1, settings.instance_attempts + 1):
        try:
            async with asyncio.timeout(settings.instance_timeout):
                response = await client.request(
                    method, row.base_url + path, content=body, headers=headers
                )
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            status = None
            error, code = _transport_error(exc, settings), ""
        else:
            status = response.status_code
            if response.is_success:
                return _Answer(status, "", attempt, response.content)
            code, error = _reason(response)
            if status < 500 and status != 429:
                break
        if attempt < settings.instance_attempts:
            await asyncio.sleep(0.2 * attempt)
    return _Answer(status, error, attempt, code=code)


def _transport_error(exc: BaseException, settings: Settings) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"no answer within {settings.instance_timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc}"[:_MAX_ERROR] if str(exc) else "cannot connect"
    return f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]


class _Change(msgspec.Struct, frozen=True):
    """What (event type, channel) is here now: the audit line it carries out, the content
    hash, and the shipment (None: an unpublication)."""

    event_type: str
    channel: model.Channel
    audit_id: int | None
    content_hash: str
    shipment: remote.Shipment | None


def _change(
    event_type: str,
    channel: model.Channel,
    publication: design.PublicationRow | None,
    definition: remote.Definition | None,
    latest: tuple[int, str, str] | None,
) -> _Change:
    audit_id = None if latest is None else latest[0]
    if publication is None or publication.bundle is None or definition is None:
        return _Change(event_type, channel, audit_id, "" if latest is None else latest[2], None)
    shipment = remote.Shipment(
        definition,
        publication.content_hash,
        publication.bundle,
        publication.published_by,
        audit_id,
    )
    return _Change(event_type, channel, audit_id, publication.content_hash, shipment)


async def _current(conn: Connection, event_type: str, channel: model.Channel) -> _Change:
    """What to send for (event type, channel) now: its definition and routed bundle, or its
    unpublication when nothing with a bundle is routed there."""
    publication = await design.active_publication(conn, event_type, channel)
    definitions = await remote.definitions_of(conn, {event_type})
    latest = await design.latest_audit(conn, event_type, channel)
    return _change(event_type, channel, publication, definitions.get(event_type), latest)


def _checked_answer(change: _Change, answer: _Answer) -> _Answer:
    """``answer`` if it is not a 2xx, or a 2xx that is the :class:`~.remote.Applied` of what
    was sent; otherwise a failed answer saying what is wrong with it."""
    if not answer.ok:
        return answer
    try:
        applied = _applied.decode(answer.body)
    except msgspec.DecodeError:
        problem = "the answer is not the result of applying the change"
    else:
        if (applied.eventType, applied.channel) != (change.event_type, change.channel):
            problem = f"the answer is about {applied.eventType} {applied.channel}"
        elif change.shipment is not None and applied.contentHash != change.content_hash:
            problem = (
                f"the instance holds {applied.contentHash or 'nothing'}, "
                f"not the {change.content_hash} sent"
            )
        else:
            return answer
    return _Answer(answer.status, problem[:_MAX_ERROR], answer.attempts, code="bad_answer")


async def _deliver_one(
    db: Database,
    client: httpx.AsyncClient,
    settings: Settings,
    row: store.InstanceRow,
    change: _Change,
) -> publishing.Delivered:
    path = f"{PATH}/{change.event_type}/{change.channel}"
    if change.shipment is None:
        query = "" if change.audit_id is None else f"?sequence={change.audit_id}"
        answer = await _call(client, settings, row, "DELETE", path + query)
    else:
        answer = await _call(client, settings, row, "PUT", path, _encode(change.shipment))
    return await _record(db, row, change, _checked_answer(change, answer))


async def _record(
    db: Database, row: store.InstanceRow, change: _Change, answer: _Answer
) -> publishing.Delivered:
    now = clock.now_us()
    if answer.ok:
        outcome = OK
    elif answer.status == 409 and answer.code == "stale_publication":
        outcome = SUPERSEDED
    else:
        outcome = FAILED
    async with db.transaction() as conn:
        done = await store.add_delivery(
            conn,
            store.DeliveryRow(
                0,
                row.name,
                change.audit_id,
                change.event_type,
                change.channel,
                "unpublish" if change.shipment is None else "publish",
                change.content_hash,
                outcome,
                answer.status,
                answer.error,
                answer.attempts,
                now,
            ),
        )
        await store.mark_instance(
            conn,
            row.name,
            FAILED if outcome == FAILED else OK,
            answer.error if outcome == FAILED else "",
            None if answer.status is None else now,
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
        change = await _current(conn, event_type, channel)
    async with _client(settings) as client:
        return list(
            await asyncio.gather(
                *(_deliver_one(db, client, settings, row, change) for row in targets)
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


async def delete_event_type(
    db: Database, settings: Settings, name: str, *, actor: str
) -> list[publishing.Delivered]:
    """Delete an event type here (:func:`.publishing.delete_event_type`: each channel it
    routed is unpublished and logged), then deliver those unpublications to every instance."""
    stopped = await publishing.delete_event_type(db, name, actor=actor)
    delivered: list[publishing.Delivered] = []
    for channel in stopped:
        delivered += await deliver(db, settings, name, channel)
    return delivered


async def sync(db: Database, settings: Settings, name: str) -> list[publishing.Delivered]:
    """Catch an instance up: read what it holds, send each publication routed here that it
    lacks (or holds another version or definition of) and unpublish what it holds that is
    not routed here. Each change is read again just before it is sent; once the instance
    stops answering, the rest are recorded as not attempted. Nothing to send: an empty
    list. :class:`~tidings.control.errors.Unreachable` if it cannot be read."""
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
                await store.mark_instance(conn, name, FAILED, answer.error, contacted)
            raise errors.Unreachable(
                "instance_unreachable", f"instance {name!r}: {answer.error}", field="name"
            )
        async with db.connection() as conn:
            due = await _due(conn, {(h.eventType, h.channel): h for h in held})
        if not due:
            async with db.transaction() as conn:
                await store.mark_instance(conn, name, OK, "", clock.now_us())
            return []
        results: list[publishing.Delivered] = []
        for planned in due:
            if results and results[-1].httpStatus is None and results[-1].outcome == FAILED:
                skipped = _Answer(None, "not attempted: the instance stopped answering", 0)
                results.append(await _record(db, row, planned, skipped))
                continue
            async with db.connection() as conn:
                change = await _current(conn, planned.event_type, planned.channel)
            results.append(await _deliver_one(db, client, settings, row, change))
        return results


async def _due(
    conn: Connection, there: dict[tuple[str, model.Channel], remote.Holding]
) -> list[_Change]:
    """What an instance holding ``there`` lacks: the publications routed here with another
    bundle or definition there or none, and the unpublication of each pair it holds that was
    published from here and is not routed here any more (whatever the last audit line says;
    a pair this instance never published is the execution instance's own business)."""
    local = await design.list_active_publications(conn)
    definitions = await remote.definitions_of(conn, {p.event_type for p in local})
    latest = await design.latest_audits(conn)
    due: list[_Change] = []
    for p in local:
        definition = definitions.get(p.event_type)
        if p.bundle is None or definition is None:
            continue
        held = there.get((p.event_type, p.channel))
        if (
            held is not None
            and held.contentHash == p.content_hash
            and held.definitionHash == remote.definition_hash(definition)
        ):
            continue
        found = latest.get((p.event_type, str(p.channel)))
        due.append(_change(p.event_type, p.channel, p, definition, found))
    routed = {(p.event_type, p.channel) for p in local}
    for (event_type, channel), holding in sorted(there.items()):
        found = latest.get((event_type, str(channel)))
        if (event_type, channel) not in routed and found is not None:
            due.append(_Change(event_type, channel, found[0], holding.contentHash, None))
    return due
