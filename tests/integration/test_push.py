"""The push router and the App's push wiring, against local APNs and FCM servers."""

from __future__ import annotations

import pytest
import trustme

from tests import push_servers
from tests.conftest import test_settings as settings_for
from tests.integration.gateways import (
    DELIVERED,
    FAILED,
    KEY_ID,
    TEAM_ID,
    TOPIC,
    Clock,
    apns_gateway,
    fcm_gateway,
    push,
    sends,
)
from tests.push_servers import ApnsServer, FcmServer
from tidings import model
from tidings.app import App
from tidings.channels.push import router
from tidings.settings import SettingsError

# ----------------------------------------------------------------------------------- router


async def test_router_sends_each_platform_to_its_gateway(ca: trustme.CA, clock: Clock) -> None:
    async with (
        apns_gateway(ca, clock) as (apple, apns_transport),
        fcm_gateway(ca, clock) as (
            google,
            fcm_transport,
            _,
        ),
    ):
        both = router.PushRouter(
            {model.PushPlatform.APNS: apns_transport, model.PushPlatform.FCM: fcm_transport}
        )
        to_apple = await both.send(push())
        to_google = await both.send(push(token="t", platform=model.PushPlatform.FCM))
        only_apple = router.PushRouter({model.PushPlatform.APNS: apns_transport})
        nowhere = await only_apple.send(push(token="t", platform=model.PushPlatform.FCM))
    assert (to_apple.kind, to_google.kind) == (DELIVERED, DELIVERED)
    assert len(apple.requests) == 1
    assert len(sends(google)) == 1
    assert (nowhere.kind, nowhere.quarantine) == (FAILED, False)
    assert nowhere.reply == "no push gateway is configured for fcm"


# -------------------------------------------------------------------------------- app wiring


async def test_app_routes_push_to_the_configured_gateways(
    ca: trustme.CA, clock: Clock, sqlite_url: str
) -> None:
    pem, public = push_servers.apns_key()
    apple = ApnsServer(public, key_id=KEY_ID, team_id=TEAM_ID, topic=TOPIC)
    google = FcmServer()
    async with (
        push_servers.serving(apple, ca) as apns_at,
        push_servers.serving(google, ca) as fcm_at,
    ):
        account, account_key = push_servers.service_account(f"{fcm_at.url}/token")
        google.trust(account, account_key)
        settings = settings_for(
            sqlite_url,
            apns_key=pem,
            apns_key_id=KEY_ID,
            apns_team_id=TEAM_ID,
            apns_topic=TOPIC,
            apns_endpoint=apns_at.url,
            apns_ca_file=apns_at.ca_file,
            fcm_service_account=account,
            fcm_endpoint=fcm_at.url,
            fcm_ca_file=fcm_at.ca_file,
        )
        async with App.running(settings, run_worker=False, migrate_schema=False) as app:
            transport = app.transports[model.Channel.PUSH]
            to_apple = await transport.send(push())
            to_google = await transport.send(push(token="t", platform=model.PushPlatform.FCM))
    assert (to_apple.kind, to_google.kind) == (DELIVERED, DELIVERED)
    assert len(apple.requests) == 1
    assert len(sends(google)) == 1


async def test_app_without_push_settings_has_no_push_transport(sqlite_url: str) -> None:
    async with App.running(settings_for(sqlite_url), run_worker=False, migrate_schema=False) as app:
        assert model.Channel.PUSH not in app.transports


async def test_app_refuses_an_unusable_push_key(sqlite_url: str) -> None:
    settings = settings_for(
        sqlite_url, apns_key="garbage", apns_key_id=KEY_ID, apns_team_id=TEAM_ID, apns_topic=TOPIC
    )
    with pytest.raises(SettingsError, match="APNs key is not a PEM private key"):
        async with App.running(settings, run_worker=False, migrate_schema=False):
            pass
