"""Event ids: 64-bit, time-ordered, instance in the high byte, unique."""

from __future__ import annotations

import time

import pytest

from tidings import ids


def generator(instance: int = 7, slot: int = 3) -> ids.IdGenerator:
    now = ids.clock_ms()
    return ids.IdGenerator(instance, slot, now, now + 60_000)


def test_instance_in_high_byte_and_time_recoverable() -> None:
    event_id = generator(instance=200).next()
    assert event_id < 1 << 64
    assert event_id >> 56 == 200
    assert ids.instance_of(event_id) == 200
    assert abs(ids.time_ms_of(event_id) - time.time() * 1000) < 1000


def test_ids_are_unique_and_increasing() -> None:
    g = generator()
    minted = g.next_many(100_000)  # far more than 512 per millisecond: borrows ahead
    assert minted == sorted(minted)
    assert len(set(minted)) == len(minted)


def test_slots_do_not_collide() -> None:
    a, b = generator(slot=1), generator(slot=2)
    assert not set(a.next_many(5000)) & set(b.next_many(5000))


def test_stops_at_end_of_reservation() -> None:
    now = ids.clock_ms()
    g = ids.IdGenerator(0, 0, now, now)
    with pytest.raises(ids.IdsExhausted):
        g.next_many(10_000)
    g.revoke()
    with pytest.raises(ids.IdsExhausted):
        g.next()


def test_starts_after_previous_holders_reservation() -> None:
    future = ids.clock_ms() + 5000
    g = ids.IdGenerator(0, 0, future, future + 60_000)
    assert ids.time_ms_of(g.next()) >= future + ids.EPOCH_MS


def test_signed_storage_round_trip() -> None:
    big = generator(instance=255).next()
    assert big >= 1 << 63
    assert ids.to_db(big) < 0
    assert ids.from_db(ids.to_db(big)) == big
    small = generator(instance=1).next()
    assert ids.to_db(small) == small


@pytest.mark.parametrize("text", ["", "abc", "-1", "0", str(1 << 64), "1" * 21, "12.5"])
def test_parse_rejects(text: str) -> None:
    assert ids.parse(text) is None


def test_parse_accepts() -> None:
    assert ids.parse("123") == 123
