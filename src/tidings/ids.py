"""Event ids: 64-bit, time-ordered, never reused, naming the instance that holds the event.

Layout, high bit to low::

    | instance (8) | milliseconds since 2025-01-01 (41) | slot (6) | sequence (9) |

The instance id (0-255, a setting) is the high byte, as in Adobe's event ids, so any id tells
which execution instance holds the event. The slot tells apart the processes of one instance;
each process leases a slot from the database (``store.nodes``) together with a *reservation*:
a time up to which only it may mint ids in that slot. A process that takes over a slot starts
after the previous holder's reservation, so ids stay unique even across crashes and clock
steps backwards. Within a millisecond the sequence counts up to 512; past that the generator
borrows the next millisecond, never beyond its reservation.

Instance ids 128-255 set the top bit: such ids exceed 2**63 - 1, so clients that keep ids in a
signed 64-bit integer (SOAP's ``xsd:long``) should use instance ids 0-127. The database stores
ids as signed 64-bit values (:func:`to_db` / :func:`from_db`).
"""

from __future__ import annotations

import time

EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
INSTANCE_BITS, TIME_BITS, SLOT_BITS, SEQ_BITS = 8, 41, 6, 9
SLOTS = 1 << SLOT_BITS
_SEQ_MAX = (1 << SEQ_BITS) - 1
_TIME_SHIFT = SLOT_BITS + SEQ_BITS
_INSTANCE_SHIFT = TIME_BITS + _TIME_SHIFT


class IdsExhausted(RuntimeError):
    """The generator reached the end of its reservation (its database lease is not renewed)."""


def clock_ms() -> int:
    """Milliseconds since the id epoch."""
    return time.time_ns() // 1_000_000 - EPOCH_MS


class IdGenerator:
    """Mints ids for one (instance, slot) pair inside a reserved time window."""

    def __init__(self, instance_id: int, slot: int, start_ms: int, reserved_until_ms: int):
        if not 0 <= instance_id <= 255:
            raise ValueError("instance_id must be 0-255")
        self.instance_id = instance_id
        self.rebind(slot, start_ms, reserved_until_ms)

    def rebind(self, slot: int, start_ms: int, reserved_until_ms: int) -> None:
        """Mint in ``slot`` from ``start_ms`` on (after leasing a slot)."""
        if not 0 <= slot < SLOTS:
            raise ValueError(f"slot must be 0-{SLOTS - 1}")
        self._prefix = (self.instance_id << _INSTANCE_SHIFT) | (slot << SEQ_BITS)
        self._last_ms = start_ms - 1
        self._seq = _SEQ_MAX
        self.reserved_until_ms = reserved_until_ms

    def extend(self, reserved_until_ms: int) -> None:
        """Move the end of the reservation forward (after a successful lease renewal)."""
        self.reserved_until_ms = max(self.reserved_until_ms, reserved_until_ms)

    @property
    def last_ms(self) -> int:
        """The last millisecond ids were minted in (or the one before the first)."""
        return self._last_ms

    def revoke(self) -> None:
        """Stop minting: the lease was lost."""
        self.reserved_until_ms = -1

    def next(self) -> int:
        """One new id."""
        now = clock_ms()
        if now > self._last_ms:
            self._last_ms, self._seq = now, 0
        elif self._seq < _SEQ_MAX:
            self._seq += 1
        else:
            self._last_ms, self._seq = self._last_ms + 1, 0
        if self._last_ms > self.reserved_until_ms:
            raise IdsExhausted("event id reservation ran out; is the database reachable?")
        return self._prefix | (self._last_ms << _TIME_SHIFT) | self._seq

    def next_many(self, n: int) -> list[int]:
        """``n`` new ids, ascending."""
        return [self.next() for _ in range(n)]


def instance_of(event_id: int) -> int:
    """The execution instance an id was minted by."""
    return event_id >> _INSTANCE_SHIFT


def time_ms_of(event_id: int) -> int:
    """Unix time in milliseconds at which an id was minted (to the millisecond it used)."""
    return ((event_id >> _TIME_SHIFT) & ((1 << TIME_BITS) - 1)) + EPOCH_MS


def to_db(event_id: int) -> int:
    """The signed 64-bit value stored for an id."""
    return event_id - (1 << 64) if event_id >= 1 << 63 else event_id


def from_db(value: int) -> int:
    """The id for a stored signed 64-bit value."""
    return value + (1 << 64) if value < 0 else value


def parse(text: str) -> int | None:
    """An id from its decimal string form, or None if it is not one."""
    if not text.isdigit() or len(text) > 20:
        return None
    value = int(text)
    return value if 0 < value < 1 << 64 else None
