"""Push pieces without a network: request bodies and headers, Retry-After, the router, settings."""

from __future__ import annotations

import email.utils
from typing import Any

import httpx
import pytest

from tidings import model
from tidings.channels import base, errors
from tidings.channels.push import apns, fcm, gateway, router
from tidings.settings import Settings, SettingsError

NOW = 1_800_000_000.0


def push(**fields: Any) -> model.PushMessage:
    values: dict[str, Any] = {
        "event_id": 7,
        "message_id": "m7",
        "platform": model.PushPlatform.APNS,
        "token": "ab" * 32,
        "title": "Hello",
        "body": "World",
    }
    return model.PushMessage(**(values | fields))


def answer(
    headers: dict[str, str] | None = None, body: bytes = b"", status: int = 503
) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, content=body)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
        (email.utils.formatdate(NOW - 90, usegmt=True), 0.0),
        ("soon", None),
        ("-5", None),
        ("", None),
    ],
)
def test_retry_after(value: str, expected: float | None) -> None:
    headers = {"retry-after": value} if value else {}
    assert gateway.retry_after(answer(headers), NOW) == expected


def test_apns_push_type_and_payload() -> None:
    assert apns.push_type(push()) == "alert"
    assert apns.push_type(push(title="", body="", badge=0)) == "alert"  # a badge is visible
    assert apns.push_type(push(title="", body="")) == "background"
    assert (
        apns.payload(push(title="", body="Only a body"))
        == b'{"aps":{"alert":{"body":"Only a body"}}}'
    )
    assert apns.payload(push(title="", body="", badge=0)) == b'{"aps":{"badge":0}}'


def test_apns_headers() -> None:
    headers = apns.headers(push(priority=7, expires_at=1_900_000_000_999_999), "com.example")
    assert headers["apns-priority"] == "5"  # 10 only when asked for 10 or more
    assert headers["apns-expiration"] == "1900000000"
    assert "apns-collapse-id" not in headers
    assert headers["apns-id"] == apns.headers(push(), "com.example")["apns-id"]


@pytest.mark.parametrize(
    ("status", "body", "kind", "quarantine"),
    [
        (410, b'{"reason":"Unregistered","timestamp":1}', model.OutcomeKind.FAILED, True),
        (400, b'{"reason":"BadDeviceToken"}', model.OutcomeKind.FAILED, True),
        (400, b'{"reason":"BadTopic"}', model.OutcomeKind.FAILED, False),
        (403, b'{"reason":"ExpiredProviderToken"}', model.OutcomeKind.RETRY, False),
        (403, b'{"reason":"Forbidden"}', model.OutcomeKind.FAILED, False),
        (429, b'{"reason":"TooManyRequests"}', model.OutcomeKind.RETRY, False),
        (500, b"not json", model.OutcomeKind.RETRY, False),
    ],
)
def test_apns_failures(status: int, body: bytes, kind: model.OutcomeKind, quarantine: bool) -> None:
    outcome = errors.outcome_for(apns.failure(answer(body=body, status=status), NOW))
    assert (outcome.kind, outcome.quarantine) == (kind, quarantine)


def test_fcm_error_detail_wins_over_status() -> None:
    body = (
        b'{"error":{"code":404,"message":"gone","status":"NOT_FOUND","details":'
        b'[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}'
    )
    assert fcm.error_body(answer(body=body, status=404))[:2] == ("UNREGISTERED", "gone")
    assert fcm.error_body(answer(body=b"<html>", status=502)) == ("", "Bad Gateway", [])
    assert fcm.error_body(answer(body=b'{"error": "x"}', status=400))[0] == ""


def test_fcm_ttl_never_negative() -> None:
    message = push(platform=model.PushPlatform.FCM, expires_at=int((NOW - 10) * 1_000_000))
    body = fcm.message_json(message, NOW)
    assert body["android"]["ttl"] == "0s"
    assert body["apns"]["headers"]["apns-expiration"] == str(int(NOW - 10))


async def test_router_picks_by_platform_and_closes_all() -> None:
    apple: base.MockTransport[model.PushMessage] = base.MockTransport()
    google: base.MockTransport[model.PushMessage] = base.MockTransport()
    both = router.PushRouter({model.PushPlatform.APNS: apple, model.PushPlatform.FCM: google})
    await both.send(push())
    await both.send(push(platform=model.PushPlatform.FCM))
    await both.aclose()
    assert [m.platform for m in apple.sent] == [model.PushPlatform.APNS]
    assert [m.platform for m in google.sent] == [model.PushPlatform.FCM]
    assert apple.closed
    assert google.closed
    assert both.platforms == {model.PushPlatform.APNS, model.PushPlatform.FCM}


def test_push_settings() -> None:
    plain = Settings.load(env={}, toml_path="/nonexistent.toml")
    assert not plain.uses_apns
    assert not plain.uses_fcm
    env = {
        "TIDINGS_APNS_KEY_FILE": "/keys/AuthKey.p8",
        "TIDINGS_APNS_KEY_ID": "KEYID12345",
        "TIDINGS_APNS_TEAM_ID": "TEAMID1234",
        "TIDINGS_APNS_TOPIC": "com.example.app",
        "TIDINGS_APNS_ENDPOINT": "sandbox",
        "TIDINGS_FCM_SERVICE_ACCOUNT_FILE": "/keys/sa.json",
        "TIDINGS_FCM_CONCURRENCY": "32",
    }
    s = Settings.load(env=env, toml_path="/nonexistent.toml")
    assert s.uses_apns
    assert s.uses_fcm
    assert (s.apns_endpoint, s.fcm_concurrency) == ("sandbox", 32)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TIDINGS_APNS_KEY": "k"}, "apns_key_id, apns_team_id and apns_topic"),
        ({"TIDINGS_APNS_KEY": "k", "TIDINGS_APNS_KEY_FILE": "f"}, "not both"),
        ({"TIDINGS_APNS_ENDPOINT": "http://apns"}, "apns_endpoint"),
        (
            {"TIDINGS_FCM_SERVICE_ACCOUNT": "{}", "TIDINGS_FCM_SERVICE_ACCOUNT_FILE": "f"},
            "not both",
        ),
        ({"TIDINGS_FCM_ENDPOINT": "http://fcm"}, "fcm_endpoint"),
        ({"TIDINGS_APNS_CONCURRENCY": "0"}, "apns_concurrency"),
        ({"TIDINGS_FCM_TIMEOUT": "0"}, "fcm_timeout"),
    ],
)
def test_bad_push_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.load(env=env, toml_path="/nonexistent.toml")
