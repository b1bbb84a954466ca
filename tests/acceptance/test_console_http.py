"""The console over plain HTTP (a real server, both databases): signing in, sessions, CSRF,
roles, throttling, the security headers, hostile input; and the reports API."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.smtp_servers import Recorder, aiosmtpd_server
from tidings import clock, model, operators, quarantine
from tidings.store import bounces as bounces_store

from .conftest import EXAMPLE_CTX, Live, Serve
from .console import PASSWORD, add_operator, login_token, sign_in

OPERATOR = model.OperatorRole.OPERATOR


@pytest.fixture
async def browser(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client with no API key."""
    async with httpx.AsyncClient(base_url=live.url, timeout=15) as client:
        yield client


async def post_cart(live: Live, address: str, **ctx: str) -> str:
    event = await live.post_event(
        type="cartAbandonment", recipient={"email": address}, ctx={**EXAMPLE_CTX, **ctx}
    )
    return str(event["id"])


async def test_pages_need_a_session(live: Live, browser: httpx.AsyncClient) -> None:
    for path in ("/console/events", "/console/keys", "/console/outbox/1/html"):
        answer = await browser.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == f"/console/login?next={path}"
    searched = await browser.get("/console/events?status=processed")
    assert (
        searched.headers["location"] == "/console/login?next=/console/events%3Fstatus%3Dprocessed"
    )
    # HTMX polling after the session ended is sent to the sign-in page too.
    polled = await browser.get("/console/queue", headers={"HX-Request": "true"})
    assert polled.headers["hx-redirect"].startswith("/console/login")
    # An API key is not a console session.
    keyed = await browser.get("/console/", headers={"Authorization": f"Bearer {live.key}"})
    assert keyed.status_code == 303


async def test_sign_in_refuses_wrong_passwords_and_forms_without_token(
    live: Live, browser: httpx.AsyncClient
) -> None:
    await add_operator(live, "ada")
    form = await browser.get("/console/login")
    assert form.status_code == 200
    token = login_token(form.text)
    cookie = form.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()

    wrong = await browser.post(
        "/console/login", data={"name": "ada", "password": "wrong password!", "_csrf": token}
    )
    assert wrong.status_code == 401
    assert "wrong name or password" in wrong.text
    assert "tidings_session" not in wrong.headers.get("set-cookie", "")

    # Each answered form carries a fresh token (and cookie).
    token = login_token(wrong.text)
    unknown = await browser.post(
        "/console/login", data={"name": "nobody", "password": PASSWORD, "_csrf": token}
    )
    assert unknown.status_code == 401

    async with httpx.AsyncClient(base_url=live.url) as fresh:  # no login cookie
        forged = await fresh.post(
            "/console/login", data={"name": "ada", "password": PASSWORD, "_csrf": token}
        )
        assert forged.status_code == 403
        assert "tidings_session" not in forged.headers.get("set-cookie", "")
        missing = await fresh.post("/console/login", data={"name": "ada", "password": PASSWORD})
        assert missing.status_code == 403

    form = await browser.get("/console/login?next=/console/outbox")
    right = await browser.post(
        "/console/login",
        data={
            "name": "ada",
            "password": PASSWORD,
            "_csrf": login_token(form.text),
            "next": "/console/outbox",
        },
    )
    assert right.status_code == 303
    assert right.headers["location"] == "/console/outbox"
    session_cookie = next(
        v for k, v in right.headers.multi_items() if k == "set-cookie" and "tidings_session=" in v
    )
    assert "HttpOnly" in session_cookie
    assert "samesite=lax" in session_cookie.lower()
    assert "Path=/console" in session_cookie
    assert "Secure" not in session_cookie  # plain http here
    # The cookie's token is not stored: only its hash is.
    token_value = session_cookie.split(";")[0].split("=", 1)[1]
    page = await browser.get("/console/outbox")
    assert page.status_code == 200
    assert token_value not in str(await operators.list_all(live.app.db))


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/api/v1/keys"])
async def test_sign_in_never_sends_elsewhere(
    live: Live, browser: httpx.AsyncClient, target: str
) -> None:
    await add_operator(live, "ada")
    form = await browser.get("/console/login")
    answer = await browser.post(
        "/console/login",
        data={"name": "ada", "password": PASSWORD, "_csrf": login_token(form.text), "next": target},
    )
    assert answer.headers["location"] == "/console/"


async def test_posts_without_the_csrf_token_change_nothing(
    live: Live, browser: httpx.AsyncClient
) -> None:
    await add_operator(live, "ada")
    token = await sign_in(browser, "ada")
    for data in ({"address": "x@example.com"}, {"address": "x@example.com", "_csrf": "forged"}):
        refused = await browser.post("/console/quarantine", data=data)
        assert refused.status_code == 403
        assert "expired" in refused.text
    refused = await browser.post("/console/keys", data={"name": "sneaky", "scope": "admin"})
    assert refused.status_code == 403
    assert await quarantine.entries(live.app.db) == []
    assert [k["name"] for k in (await live.client.get("/api/v1/keys")).json()] == ["first key"]

    # The token in the form field or in the HTMX header is accepted.
    added = await browser.post(
        "/console/quarantine", data={"address": "x@example.com", "_csrf": token}
    )
    assert added.status_code == 200
    released = await browser.post(
        "/console/quarantine/release",
        data={"address": "x@example.com", "channel": "email"},
        headers={"X-CSRF-Token": token},
    )
    assert released.status_code == 200
    assert await quarantine.entries(live.app.db) == []


async def test_roles(live: Live, browser: httpx.AsyncClient) -> None:
    await add_operator(live, "olga", OPERATOR)
    token = await sign_in(browser, "olga")
    for path in (
        "/console/",
        "/console/events",
        "/console/outbox",
        "/console/reports",
        "/console/quarantine",
        "/console/instances",
    ):
        assert (await browser.get(path)).status_code == 200, path
    for path in ("/console/keys", "/console/operators"):
        page = await browser.get(path)
        assert page.status_code == 403, path
        assert "needs the admin role" in page.text
    created = await browser.post("/console/keys", data={"name": "mine", "_csrf": token})
    assert created.status_code == 403
    added = await browser.post(
        "/console/operators",
        data={"name": "eve", "password": PASSWORD, "role": "admin", "_csrf": token},
    )
    assert added.status_code == 403
    assert [o.name for o in await operators.list_all(live.app.db)] == ["olga"]
    # Operators manage quarantine.
    added = await browser.post(
        "/console/quarantine", data={"address": "q@example.com", "_csrf": token}
    )
    assert added.status_code == 200
    entries = await quarantine.entries(live.app.db)
    assert [(e.address, e.source) for e in entries] == [("q@example.com", "console:olga")]


async def test_disabling_or_a_new_password_ends_sessions(
    live: Live, browser: httpx.AsyncClient
) -> None:
    await add_operator(live, "ada")
    await sign_in(browser, "ada")
    await operators.set_password(live.app.db, "ada", "another long password")
    assert (await browser.get("/console/")).status_code == 303
    await sign_in(browser, "ada", "another long password")
    await operators.set_disabled(live.app.db, "ada")
    assert (await browser.get("/console/")).status_code == 303
    form = await browser.get("/console/login")
    again = await browser.post(
        "/console/login",
        data={"name": "ada", "password": "another long password", "_csrf": login_token(form.text)},
    )
    assert again.status_code == 401


async def test_sign_out(live: Live, browser: httpx.AsyncClient) -> None:
    await add_operator(live, "ada")
    token = await sign_in(browser, "ada")
    assert (await browser.post("/console/logout")).status_code == 403  # no token
    out = await browser.post("/console/logout", data={"_csrf": token})
    assert out.status_code == 303
    assert (await browser.get("/console/")).status_code == 303


async def test_failed_sign_ins_are_throttled(serve: Serve) -> None:
    async with serve(console_login_attempts=3, console_login_window=600) as live:
        await add_operator(live, "ada")
        async with httpx.AsyncClient(base_url=live.url) as client:
            for _ in range(3):
                form = await client.get("/console/login")
                answer = await client.post(
                    "/console/login",
                    data={
                        "name": "ada",
                        "password": "not it at all",
                        "_csrf": login_token(form.text),
                    },
                )
                assert answer.status_code == 401
            form = await client.get("/console/login")
            answer = await client.post(
                "/console/login",
                data={"name": "ada", "password": PASSWORD, "_csrf": login_token(form.text)},
            )
            assert answer.status_code == 429
            assert int(answer.headers["retry-after"]) > 0
            assert "too many failed sign-ins" in answer.text
            assert (await client.get("/console/")).status_code == 303


async def test_security_headers_and_sandboxed_message_html(
    live: Live, browser: httpx.AsyncClient
) -> None:
    await add_operator(live, "ada")
    await sign_in(browser, "ada")
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    event_id = await post_cart(live, "jack@example.com", firstName=hostile)
    await live.wait_status(event_id, "processed")

    page = await browser.get(f"/console/events/{event_id}")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>alert(1)" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert 'sandbox=""' in page.text

    outbox = (await live.client.get("/api/v1/outbox")).json()["items"]
    html = await browser.get(f"/console/outbox/{outbox[0]['id']}/html")
    assert html.status_code == 200
    policy = html.headers["content-security-policy"]
    assert policy.startswith("sandbox;")
    assert "script-src" not in policy  # default-src 'none' covers scripts
    assert "default-src 'none'" in policy


async def test_an_event_sent_by_smtp_is_re_rendered_from_its_template_version(
    serve: Serve,
) -> None:
    recorder = Recorder()
    async with (
        aiosmtpd_server(recorder) as smtp,
        serve(
            email_transport="smtp",
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_tls="none",
            smtp_timeout=5.0,
        ) as live,
        httpx.AsyncClient(base_url=live.url) as browser,
    ):
        await add_operator(live, "ada", OPERATOR)
        await sign_in(browser, "ada")
        event_id = await post_cart(live, "smtp@example.com", firstName="Zoe")
        await live.wait_status(event_id, "processed")
        async with live.app.db.transaction() as conn:
            await bounces_store.add(
                conn,
                model.Bounce(
                    event_id=int(event_id),
                    channel=model.Channel.EMAIL,
                    address="smtp@example.com",
                    message_id="<m@example.com>",
                    kind=model.BounceKind.HARD,
                    status="5.1.1",
                    diagnostic="550 5.1.1 no such user here",
                    received_at=clock.now_us(),
                ),
            )

        page = await browser.get(f"/console/events/{event_id}")
        assert page.status_code == 200
        assert "Re-rendered from template version 1" in page.text
        assert "no such user here" in page.text  # the bounce
        assert "250" in page.text  # the SMTP server's reply in the delivery log
        message = await browser.get(f"/console/events/{event_id}/message.html")
        assert message.status_code == 200
        assert "Zoe" in message.text
        assert message.headers["content-security-policy"].startswith("sandbox;")
        assert len(recorder.received) == 1


async def test_unknown_pages_and_bad_searches(live: Live, browser: httpx.AsyncClient) -> None:
    await add_operator(live, "ada")
    await sign_in(browser, "ada")
    missing = await browser.get("/console/no/such/page")
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"]
    assert (await browser.get("/console/events/123")).status_code == 404
    assert (await browser.get("/console/events/not-an-id")).status_code == 404
    assert (await browser.get("/console/outbox/999")).status_code == 404
    bad = await browser.get("/console/events", params={"status": "sent", "from": "yesterday"})
    assert bad.status_code == 422
    assert "not an event status" in bad.text
    nul = await browser.get("/console/events", params={"recipient": "a\x00b"})
    assert nul.status_code == 422


async def test_explorer_search_and_paging(live: Live, browser: httpx.AsyncClient) -> None:
    await add_operator(live, "ada")
    await sign_in(browser, "ada")
    ids = [await post_cart(live, f"p{i}@example.com") for i in range(3)]
    for event_id in ids:
        await live.wait_status(event_id, "processed")
    found = await browser.get("/console/events", params={"recipient": "p1@example.com"})
    assert ids[1] in found.text
    assert ids[0] not in found.text
    jump = await browser.get("/console/events", params={"id": ids[2]})
    assert jump.status_code == 303
    assert jump.headers["location"] == f"/console/events/{ids[2]}"
    by_status = await browser.get("/console/events", params={"status": "processed"})
    assert all(i in by_status.text for i in ids)
    older = await browser.get("/console/events", params={"cursor": ids[1]})
    assert ids[0] in older.text
    assert ids[2] not in older.text


async def test_queue_fragment_and_dashboard_counts(live: Live, browser: httpx.AsyncClient) -> None:
    await add_operator(live, "ada", OPERATOR)
    await sign_in(browser, "ada")
    event_id = await post_cart(live, "count@example.com")
    await live.wait_status(event_id, "processed")
    fragment = await browser.get("/console/queue", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert 'data-queue="pending">0<' in fragment.text
    board = await browser.get("/console/")
    assert '<td class="num" data-period="hour">1</td>' in board.text


# ---------------------------------------------------------------------------- reports API


async def test_reports_api_json_and_csv(live: Live) -> None:
    ids = [await post_cart(live, f"r{i}@example.com") for i in range(2)]
    await quarantine.add(live.app.db, model.Channel.EMAIL, "gone@example.com", reason="test")
    ids.append(await post_cart(live, "gone@example.com"))
    for event_id in ids[:2]:
        await live.wait_status(event_id, "processed")
    await live.wait_status(ids[2], "ignored")

    history = await live.client.get("/api/v1/reports/event-history", params={"period": "hour"})
    assert history.status_code == 200, history.text
    body = history.json()
    assert body["name"] == "event-history"
    assert body["bucketSeconds"] == 300
    lines = body["lines"]
    assert sum(line["events"] for line in lines) == 3
    assert sum(line["sent"] for line in lines) == 2
    assert sum(line["success"] for line in lines) == 2

    service = (await live.client.get("/api/v1/reports/service-level")).json()
    assert sum(line["incoming"] for line in service["lines"]) == 3
    assert sum(line["outgoing"] for line in service["lines"]) == 2
    assert all(line["errorRate"] == 0 for line in service["lines"])

    timing = (await live.client.get("/api/v1/reports/processing-time?period=week")).json()
    assert sum(line["events"] for line in timing["lines"]) == 2
    line = timing["lines"][0]
    assert line["processingMinMs"] <= line["processingAvgMs"] <= line["processingMaxMs"]

    as_csv = await live.client.get("/api/v1/reports/event-history", params={"format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["eventType"] for r in rows] == ["cartAbandonment"]
    assert (rows[0]["events"], rows[0]["sent"], rows[0]["success"]) == ("3", "2", "2")
    accepted = await live.client.get(
        "/api/v1/reports/service-level", headers={"Accept": "text/csv"}
    )
    assert accepted.text.startswith("time,incoming,outgoing,")


async def test_reports_api_errors(live: Live) -> None:
    bad = await live.client.get("/api/v1/reports/event-history", params={"period": "year"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "period"
    fmt = await live.client.get("/api/v1/reports/event-history", params={"format": "xml"})
    assert fmt.status_code == 422
    missing = await live.client.get("/api/v1/reports/everything")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    async with httpx.AsyncClient(base_url=live.url) as anonymous:
        assert (await anonymous.get("/api/v1/reports/event-history")).status_code == 401
    events_key = (await live.client.post("/api/v1/keys", json={"name": "shop"})).json()["key"]
    limited = await live.client.get(
        "/api/v1/reports/event-history", headers={"Authorization": f"Bearer {events_key}"}
    )
    assert limited.status_code == 403


async def test_cookies_are_secure_behind_https(serve: Serve) -> None:
    async with (
        serve(public_url="https://tidings.example") as live,
        httpx.AsyncClient(base_url=live.url) as client,
    ):
        await add_operator(live, "ada")
        form = await client.get("/console/login")
        login_cookie = form.headers["set-cookie"]
        assert "secure" in login_cookie.lower()
        # A client keeps Secure cookies for https; this test talks plain http to the server
        # behind the (imagined) TLS proxy, so it hands the cookie back itself.
        client.cookies.clear()
        answer = await client.post(
            "/console/login",
            data={"name": "ada", "password": PASSWORD, "_csrf": login_token(form.text)},
            headers={"Cookie": login_cookie.split(";")[0]},
        )
        assert answer.status_code == 303
        session_cookie = next(
            v
            for k, v in answer.headers.multi_items()
            if k == "set-cookie" and "tidings_session=" in v
        )
        assert "secure" in session_cookie.lower()
