"""Helpers for the console tests: operators, signing in over HTTP, the tokens pages carry."""

from __future__ import annotations

import re

import httpx

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
