"""Status-callback subscriptions and their log (the API and the CLI call these).

A subscription names a URL, a secret (generated when none is given; it signs every
callback, see :mod:`tidings.signing`), the kinds of callback it wants (``status``: each event's
final status, ``receipt``: each delivery receipt; default both) and optional filters: event
types, final statuses and receipt states (empty: all). The URL is checked as the webhook
transport will check it: ``http``/``https``, no credentials, and an address literal must be
one the address policy allows; host names are checked at each send, against every address
they resolve to.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from tidings import clock, model
from tidings.channels import destination
from tidings.channels.sms import receipt
from tidings.store import callbacks as store
from tidings.store import subscriptions as subscriptions_store
from tidings.store.database import Database

#: Statuses a subscription may filter on: the final ones.
STATUSES = frozenset(str(s) for s in model.FINAL_STATUSES)
#: Receipt states a subscription may filter on.
RECEIPT_STATES = frozenset(str(s) for s in receipt.ReceiptState)
#: The kinds of callback: final statuses and delivery receipts.
KINDS = frozenset({"status", "receipt"})
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
MIN_SECRET, MAX_SECRET = 16, 256
MAX_FILTERS = 100


class InvalidSubscription(ValueError):
    """A subscription cannot be created as asked; ``field`` names the culprit."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def new_secret() -> str:
    """A random signing secret."""
    return "whsec_" + secrets.token_urlsafe(32)


def check(
    url: str,
    *,
    policy: destination.Policy,
    secret: str | None = None,
    event_types: Sequence[str] = (),
    statuses: Sequence[str] = (),
    kinds: Sequence[str] = tuple(sorted(KINDS)),
    receipts: Sequence[str] = (),
) -> None:
    """Raise :class:`InvalidSubscription` for anything :func:`subscribe` would refuse."""
    try:
        parsed = destination.parse_url(url)
        policy.check_literal(parsed.host)
    except destination.DestinationError as exc:
        raise InvalidSubscription(str(exc), "url") from None
    if secret is not None and not (
        MIN_SECRET <= len(secret) <= MAX_SECRET and secret.isascii() and secret.isprintable()
    ):
        raise InvalidSubscription(
            f"secret must be {MIN_SECRET} to {MAX_SECRET} printable ASCII characters", "secret"
        )
    if max(len(event_types), len(statuses), len(receipts)) > MAX_FILTERS:
        raise InvalidSubscription(f"at most {MAX_FILTERS} filters each", "eventTypes")
    if not kinds:
        raise InvalidSubscription("kinds needs status, receipt or both", "kinds")
    for kind in kinds:
        if kind not in KINDS:
            raise InvalidSubscription(f"{kind!r} is not a kind (status or receipt)", "kinds")
    for state in receipts:
        if state not in RECEIPT_STATES:
            raise InvalidSubscription(
                f"{state!r} is not a receipt state ({', '.join(sorted(RECEIPT_STATES))})",
                "receipts",
            )
    if receipts and "receipt" not in kinds:
        raise InvalidSubscription("a receipts filter needs the receipt kind", "receipts")
    for name in event_types:
        if not _NAME.match(name):
            raise InvalidSubscription(
                f"{name!r} is not an event type name (letters, digits, _ . : -)", "eventTypes"
            )
    for status in statuses:
        if status not in STATUSES:
            raise InvalidSubscription(
                f"{status!r} is not a final status ({', '.join(sorted(STATUSES))})", "statuses"
            )


async def subscribe(
    db: Database,
    url: str,
    *,
    policy: destination.Policy,
    secret: str | None = None,
    event_types: Sequence[str] = (),
    statuses: Sequence[str] = (),
    kinds: Sequence[str] = tuple(sorted(KINDS)),
    receipts: Sequence[str] = (),
) -> model.CallbackSubscription:
    """Create a subscription (checked by :func:`check`); its secret is in the answer."""
    check(
        url,
        policy=policy,
        secret=secret,
        event_types=event_types,
        statuses=statuses,
        kinds=kinds,
        receipts=receipts,
    )
    async with db.transaction() as conn:
        return await subscriptions_store.add_subscription(
            conn,
            url,
            secret or new_secret(),
            event_types=sorted(set(event_types)),
            statuses=sorted(set(statuses)),
            kinds=sorted(set(kinds)),
            receipt_states=sorted(set(receipts)),
            now=clock.now_us(),
        )


async def unsubscribe(db: Database, sub_id: int) -> bool:
    """Remove a subscription (its pending callbacks are given up); False if unknown."""
    async with db.transaction() as conn:
        return await subscriptions_store.remove_subscription(conn, sub_id)


async def active(db: Database) -> list[model.CallbackSubscription]:
    """The active subscriptions, oldest first."""
    async with db.connection() as conn:
        return await subscriptions_store.list_subscriptions(conn)


async def log(
    db: Database,
    *,
    subscription_id: int | None = None,
    event_id: int | None = None,
    state: model.CallbackState | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> tuple[list[model.Callback], dict[int, list[model.CallbackAttempt]], int | None]:
    """A page of callbacks, newest first, their attempts by callback id, and the cursor of
    the next page (None on the last)."""
    async with db.connection() as conn:
        found = await store.list_log(
            conn,
            subscription_id=subscription_id,
            event_id=event_id,
            state=state,
            before_id=before_id,
            limit=limit + 1,
        )
        page = found[:limit]
        attempts = await store.attempts_of(conn, [c.id for c in page])
    following = page[-1].id if len(found) > limit else None
    return page, attempts, following
