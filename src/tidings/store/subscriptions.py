"""Status-callback subscriptions: who gets callbacks, at which URL, signed with which secret.

Filters (and the kinds of callback wanted) are kept as comma-separated names (empty: all) so
that the enqueueing statement in :mod:`tidings.store.callbacks` can match them in SQL.
Removing a subscription deactivates it (the log keeps naming it) and gives up its pending
callbacks.
"""

from __future__ import annotations

from collections.abc import Sequence

from tidings import model
from tidings.store.database import Connection, Row, sql

_SUB_COLUMNS = "id, url, secret, event_types, statuses, active, created_at, kinds, receipt_states"


def _split(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)


def _subscription(row: Row) -> model.CallbackSubscription:
    return model.CallbackSubscription(
        id=int(row[0]),
        url=row[1],
        secret=row[2],
        event_types=_split(row[3]),
        statuses=_split(row[4]),
        active=bool(row[5]),
        created_at=int(row[6]),
        kinds=_split(row[7]),
        receipt_states=_split(row[8]),
    )


INSERT_SUBSCRIPTION = sql(
    f"""INSERT INTO callback_subscriptions (url, secret, event_types, statuses, active,
       created_at, kinds, receipt_states) VALUES ($1, $2, $3, $4, TRUE, $5, $6, $7)
       RETURNING {_SUB_COLUMNS}"""
)


async def add_subscription(
    conn: Connection,
    url: str,
    secret: str,
    *,
    event_types: Sequence[str] = (),
    statuses: Sequence[str] = (),
    kinds: Sequence[str] = ("receipt", "status"),
    receipt_states: Sequence[str] = (),
    now: int,
) -> model.CallbackSubscription:
    """Subscribe ``url``; filters are names without commas (checked by the caller)."""
    row = await conn.fetchrow(
        INSERT_SUBSCRIPTION,
        url,
        secret,
        ",".join(event_types),
        ",".join(statuses),
        now,
        ",".join(kinds),
        ",".join(receipt_states),
    )
    assert row is not None
    return _subscription(row)


LIST_SUBSCRIPTIONS = sql(
    f"SELECT {_SUB_COLUMNS} FROM callback_subscriptions WHERE active = TRUE ORDER BY id"
)


async def list_subscriptions(conn: Connection) -> list[model.CallbackSubscription]:
    """The active subscriptions, oldest first."""
    return [_subscription(r) for r in await conn.fetch(LIST_SUBSCRIPTIONS)]


GET_SUBSCRIPTION = sql(f"SELECT {_SUB_COLUMNS} FROM callback_subscriptions WHERE id = $1")


async def get_subscription(conn: Connection, sub_id: int) -> model.CallbackSubscription | None:
    """One subscription, active or removed."""
    row = await conn.fetchrow(GET_SUBSCRIPTION, sub_id)
    return None if row is None else _subscription(row)


SUBSCRIPTIONS_BY_IDS = sql(
    f"SELECT {_SUB_COLUMNS} FROM callback_subscriptions WHERE id = ANY($1::bigint[])",
    sqlite=f"""SELECT {_SUB_COLUMNS} FROM callback_subscriptions
       WHERE id IN (SELECT value FROM json_each($1))""",
)


async def subscriptions_by_ids(
    conn: Connection, sub_ids: Sequence[int]
) -> dict[int, model.CallbackSubscription]:
    """The subscriptions with these ids, by id."""
    rows = await conn.fetch(SUBSCRIPTIONS_BY_IDS, list(sub_ids))
    return {s.id: s for s in map(_subscription, rows)}


DEACTIVATE = sql("UPDATE callback_subscriptions SET active = FALSE WHERE id = $1 AND active")
FAIL_PENDING = sql(
    """UPDATE callbacks SET state = 'failed', last_reply = $2
       WHERE subscription_id = $1 AND state = 'pending'"""
)


async def remove_subscription(conn: Connection, sub_id: int) -> bool:
    """Deactivate a subscription and give up its pending callbacks; False if it was not
    active."""
    if not await conn.execute(DEACTIVATE, sub_id):
        return False
    await conn.execute(FAIL_PENDING, sub_id, "subscription removed")
    return True
