"""The signature scheme: what a receiver's ``verify`` accepts and refuses."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tidings import signing

SECRET = "whsec_test"
BODY = b'{"eventId":"42","status":"processed"}'


def test_header_is_stripe_style_hmac_over_timestamp_and_body() -> None:
    header = signing.sign(SECRET, BODY, timestamp=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_verify_returns_the_timestamp() -> None:
    header = signing.sign(SECRET, BODY, timestamp=1_700_000_000)
    assert signing.verify(SECRET, header, BODY, 300, now=1_700_000_100) == 1_700_000_000
    assert signing.verify(SECRET, header, BODY.decode(), 300, now=1_700_000_100) == 1_700_000_000


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "no signature header"),
        ("", "no signature header"),
        ("garbage", "malformed"),
        ("v1=abc", "no timestamp"),
        ("t=1700000000", "no v1"),
        ("t=abc,v1=00", "malformed timestamp"),
        ("t=1,t=2,v1=00", "malformed timestamp"),
        ("t=1700000000,v1=00", "does not match"),
        ("t=1700000000,v1=ünïcode", "does not match"),
    ],
)
def test_verify_refuses_bad_headers(header: str | None, message: str) -> None:
    with pytest.raises(signing.SignatureError, match=message):
        signing.verify(SECRET, header, BODY, 300, now=1_700_000_000)


def test_verify_refuses_another_body_or_secret() -> None:
    header = signing.sign(SECRET, BODY, timestamp=1_700_000_000)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(SECRET, header, BODY + b" ", 300, now=1_700_000_000)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify("other", header, BODY, 300, now=1_700_000_000)


def test_verify_refuses_old_and_future_timestamps_unless_tolerance_is_off() -> None:
    header = signing.sign(SECRET, BODY, timestamp=1_700_000_000)
    with pytest.raises(signing.SignatureError, match="tolerance"):
        signing.verify(SECRET, header, BODY, 300, now=1_700_000_301)
    with pytest.raises(signing.SignatureError, match="tolerance"):
        signing.verify(SECRET, header, BODY, 300, now=1_699_999_699)
    assert signing.verify(SECRET, header, BODY, 0, now=1_800_000_000) == 1_700_000_000


def test_any_of_several_signatures_may_match_during_rotation() -> None:
    good = signing.sign(SECRET, BODY, timestamp=1_700_000_000).split(",")[1]
    header = f"t=1700000000,v1={'0' * 64},{good},v0=ignored"
    assert signing.verify(SECRET, header, BODY, 300, now=1_700_000_000) == 1_700_000_000
