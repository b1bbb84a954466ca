"""Helpers for the console tests: operators, signing in over HTTP, the tokens pages carry."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Locator

from tidings import model, operators

from .conftest import Live

PASSWORD = "correct horse battery"
_LOGIN_TOKEN = re.compile(r'name="_csrf" value="([^"]+)"')
_SESSION_TOKEN = re.compile(r'"X-CSRF-Token": "([^"]+)"')


async def add_operator(
    live: Live, name: str, role: model.OperatorRole = model.OperatorRole.ADMIN
) -> model.Operator:
    """A new operator with :data:`PASSWORD`."""
    return await operators.create(live.app.db, name, PASSWORD, role)


def login_token(page: str) -> str:
    """The CSRF token of a sign-in form."""
    found = _LOGIN_TOKEN.search(page)
    assert found, page
    return found.group(1)


def session_token(page: str) -> str:
    """The session's CSRF token, as a signed-in page carries it."""
    found = _SESSION_TOKEN.search(page)
    assert found, page
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> str:
    """Sign ``client`` in through the form; return the session's CSRF token."""
    form = await client.get("/console/login")
    answer = await client.post(
        "/console/login",
        data={"name": name, "password": password, "_csrf": login_token(form.text)},
    )
    assert answer.status_code == 303, answer.text
    page = await client.get("/console/")
    assert page.status_code == 200, page.text
    return session_token(page.text)


async def fill_code(area: Locator, value: str) -> None:
    """Set a code field as typing would: through its CodeMirror editor once the console has
    enhanced it (the textarea hides underneath), in the textarea itself before."""
    await area.evaluate(
        """(area, value) => {
            const next = area.nextElementSibling;
            if (next && next.CodeMirror) {
                next.CodeMirror.setValue(value);
            } else {
                area.value = value;
                area.dispatchEvent(new Event("input", {bubbles: true}));
            }
        }""",
        value,
    )
