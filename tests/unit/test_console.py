"""Pure parts of the console: login throttling, where sign-in may send, thresholds, report
windows and gauges, the filters pages use."""

from __future__ import annotations

import pytest

from tidings import reports
from tidings.console import auth, frame, monitor, signin
from tidings.settings import Settings, SettingsError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_login_throttle_counts_per_key_within_the_window() -> None:
    clock = FakeClock()
    throttle = auth.LoginThrottle(3, 60, clock)
    for _ in range(3):
        throttle.check("ip:1", "name:ada")
        throttle.fail("ip:1", "name:ada")
    with pytest.raises(auth.Throttled) as refused:
        throttle.check("ip:1")
    assert refused.value.retry_after == 61
    with pytest.raises(auth.Throttled):
        throttle.check("ip:2", "name:ada")  # the name is throttled from anywhere
    throttle.check("ip:2", "name:bob")
    clock.now += 30
    with pytest.raises(auth.Throttled) as later:
        throttle.check("ip:1")
    assert later.value.retry_after == 31
    clock.now += 31
    throttle.check("ip:1", "name:ada")
    throttle.fail("name:ada")
    throttle.forget("name:ada")
    throttle.check("name:ada")


def test_login_throttle_forgets_quiet_keys_under_a_flood() -> None:
    clock = FakeClock()
    throttle = auth.LoginThrottle(3, 60, clock)
    for i in range(10_001):
        throttle.fail(f"name:{i}")
    clock.now += 120
    throttle.fail("name:new")
    assert len(throttle._failures) == 1


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/console/events?status=processed", "/console/events?status=processed"),
        (None, "/console/"),
        ("", "/console/"),
        ("https://evil.example/console/", "/console/"),
        ("//evil.example", "/console/"),
        ("/console/\\evil.example", "/console/"),
        ("/console/login", "/console/"),
        ("/api/v1/keys", "/console/"),
    ],
)
def test_sign_in_sends_only_to_console_pages(target: str | None, expected: str) -> None:
    assert signin.safe_next(target) == expected


def test_thresholds_default_to_adobes_and_are_checked() -> None:
    s = Settings.load(env={}, toml_path="/nonexistent.toml")
    assert s.threshold("pending_queue") == (100, 400)
    assert s.threshold("error_rate") == (1, 5)
    assert s.threshold("time_in_queue") == (4, 8)
    assert s.threshold("sending_time") == (6, 12)
    assert s.threshold("processing_time") == (10, 20)
    for bad in ("100", "400/100", "a/b", "-1/2"):
        with pytest.raises(SettingsError, match="threshold_pending_queue"):
            Settings.from_mapping({"threshold_pending_queue": bad})
    with pytest.raises(SettingsError, match="console_login_attempts"):
        Settings.from_mapping({"console_login_attempts": 0})


def test_gauge_levels() -> None:
    s = Settings.from_mapping({"threshold_error_rate": "1/5"})
    assert reports.gauge(s, "error_rate", 0.5).level == "ok"
    assert reports.gauge(s, "error_rate", 1).level == "warning"
    assert reports.gauge(s, "error_rate", 5).level == "alert"
    assert reports.gauge(s, "error_rate", None).level == "none"


def test_report_windows_end_with_the_current_bucket() -> None:
    now = 1_700_000_123_456_789
    hour = reports.window(reports.Period.HOUR, now)
    assert hour.bucket == 300 * 10**6
    assert hour.start < now < hour.end
    assert hour.end % hour.bucket == 0
    assert hour.end - hour.start == 3600 * 10**6
    assert len(hour.buckets()) == 12
    month = reports.window(reports.Period.MONTH, now)
    assert len(month.buckets()) == 30


def test_filters() -> None:
    assert frame.duration(None) == "—"
    assert frame.duration(840) == "840 µs"
    assert frame.duration(12_500) == "12.5 ms"
    assert frame.duration(3_200_000) == "3.20 s"
    assert frame.number(12345) == "12,345"
    assert frame.number(1.5) == "1.50"
    assert frame.span(300) == "5 min"
    assert frame.span(86400) == "1 day"
    assert frame.tone("processed") == "good"
    assert frame.tone("deliveryFailed") == "bad"
    assert frame.tone("retry") == "warn"
    assert frame.tone("whatever") == "muted"
    assert frame.ago(0, now=125_000_000) == "2 min ago"


def test_database_urls_lose_their_password() -> None:
    assert (
        monitor._redacted("postgresql://tidings:s3cret@db.example:5432/tidings")
        == "postgresql://tidings@db.example:5432/tidings"
    )
    assert monitor._redacted("sqlite:///tidings.db") == "sqlite:///tidings.db"
