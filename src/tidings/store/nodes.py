"""Id slots: which process of an instance may mint event ids in which slot, until when.

See :mod:`tidings.ids` for why. A slot is free when its lease ran out; taking it moves its
reservation forward, and the new holder starts minting after the old reservation.
"""

from __future__ import annotations

from tidings import ids
from tidings.store.database import Connection, sql

SLOTS_OF = sql(
    "SELECT slot, holder, lease_until_ms, reserved_until_ms FROM id_slots WHERE instance_id = $1"
)
TAKE = sql(
    """UPDATE id_slots SET holder = $3, lease_until_ms = $4, reserved_until_ms = $5
       WHERE instance_id = $1 AND slot = $2 AND lease_until_ms < $6"""
)
CREATE = sql(
    """INSERT INTO id_slots (instance_id, slot, holder, lease_until_ms, reserved_until_ms)
       VALUES ($1, $2, $3, $4, $5) ON CONFLICT (instance_id, slot) DO NOTHING"""
)


class NoFreeSlot(RuntimeError):
    """Every id slot of this instance is leased by a live process."""


async def acquire_slot(
    conn: Connection, instance_id: int, holder: str, now_ms: int, lease_ms: int
) -> tuple[int, int, int]:
    """Lease a free slot; return (slot, first usable millisecond, reserved until).

    Milliseconds are on the id clock (:func:`tidings.ids.clock_ms`).
    """
    rows = await conn.fetch(SLOTS_OF, instance_id)
    known = {int(r[0]): (r[1], int(r[2]), int(r[3])) for r in rows}
    reserve = now_ms + lease_ms
    for slot in range(ids.SLOTS):
        if slot not in known:
            if await conn.execute(CREATE, instance_id, slot, holder, reserve, reserve):
                return slot, now_ms, reserve
            continue
        _, lease_until, reserved_until = known[slot]
        if lease_until >= now_ms:
            continue
        start = max(now_ms, reserved_until + 1)
        until = max(reserve, start + lease_ms)
        if await conn.execute(TAKE, instance_id, slot, holder, until, until, now_ms):
            return slot, start, until
    raise NoFreeSlot(f"all {ids.SLOTS} id slots of instance {instance_id} are in use")


RENEW = sql(
    """UPDATE id_slots
       SET lease_until_ms = $4, reserved_until_ms = GREATEST(reserved_until_ms, $4)
       WHERE instance_id = $1 AND slot = $2 AND holder = $3""",
    sqlite="""UPDATE id_slots
       SET lease_until_ms = $4, reserved_until_ms = MAX(reserved_until_ms, $4)
       WHERE instance_id = $1 AND slot = $2 AND holder = $3""",
)


async def renew_slot(
    conn: Connection, instance_id: int, slot: int, holder: str, until_ms: int
) -> bool:
    """Extend our lease and reservation; False if the slot is no longer ours."""
    return await conn.execute(RENEW, instance_id, slot, holder, until_ms) > 0


RELEASE = sql(
    """UPDATE id_slots SET lease_until_ms = 0, reserved_until_ms = $4
       WHERE instance_id = $1 AND slot = $2 AND holder = $3"""
)


async def release_slot(
    conn: Connection, instance_id: int, slot: int, holder: str, last_used_ms: int
) -> None:
    """Give the slot up; the next holder starts after ``last_used_ms``, the last millisecond
    we minted ids in (so a clean restart does not skip ahead of the clock)."""
    await conn.execute(RELEASE, instance_id, slot, holder, last_used_ms)
