"""Token buckets per API key, and the setting that configures them."""

from __future__ import annotations

import pytest

from tidings import ratelimit
from tidings.settings import Settings, SettingsError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    limiter = ratelimit.Limiter(2.0, 3, clock=clock)
    for _ in range(3):
        limiter.check("abc")
    with pytest.raises(ratelimit.Limited) as refused:
        limiter.check("abc")
    assert refused.value.retry_after == pytest.approx(0.5)
    assert refused.value.retry_after_header == "1"
    clock.now += 0.5
    limiter.check("abc")  # one token came back
    with pytest.raises(ratelimit.Limited):
        limiter.check("abc")
    clock.now += 60  # never more than the burst
    for _ in range(3):
        limiter.check("abc")
    with pytest.raises(ratelimit.Limited):
        limiter.check("abc")


def test_keys_have_buckets_of_their_own_and_overrides() -> None:
    clock = Clock()
    limiter = ratelimit.Limiter(1.0, 1, {"big": (100.0, 10.0), "free": (0.0, 1.0)}, clock=clock)
    limiter.check("a")
    limiter.check("b")
    with pytest.raises(ratelimit.Limited):
        limiter.check("a")
    for _ in range(10):
        limiter.check("big")
    with pytest.raises(ratelimit.Limited):
        limiter.check("big")
    for _ in range(1000):
        limiter.check("free")


def test_a_burst_of_zero_means_one_seconds_worth() -> None:
    limiter = ratelimit.Limiter(5.0, 0, clock=Clock())
    for _ in range(5):
        limiter.check("k")
    with pytest.raises(ratelimit.Limited):
        limiter.check("k")


def test_overrides_are_parsed_and_checked() -> None:
    assert ratelimit.parse_overrides(" a1b2c3d4:50/100, e5f6:0 ,x:7") == {
        "a1b2c3d4": (50.0, 100.0),
        "e5f6": (0.0, 1.0),
        "x": (7.0, 7.0),
    }
    assert ratelimit.parse_overrides("") == {}
    for bad in ("a1b2", "a1b2:x", ":5", "a:-1", "a:5/0", "a:inf"):
        with pytest.raises(ValueError, match="rate_limits"):
            ratelimit.parse_overrides(bad)
    with pytest.raises(SettingsError, match="rate_limits"):
        Settings.from_mapping({"rate_limits": "a1b2"})
    with pytest.raises(SettingsError):
        Settings.from_mapping({"rate_limit": -1})


def test_no_limiter_unless_some_key_is_limited() -> None:
    assert ratelimit.Limiter.from_settings(Settings()) is None
    assert ratelimit.Limiter.from_settings(Settings(rate_limits="k:0")) is None
    only = ratelimit.Limiter.from_settings(Settings(rate_limits="k:5/5"))
    assert only is not None
    for _ in range(100):
        only.check("other")  # the default stays unlimited
    limiter = ratelimit.Limiter.from_settings(Settings(rate_limit=10))
    assert limiter is not None
    assert (limiter.rate, limiter.burst) == (10, 10)
