"""The console from the command line: ``tidings serve`` prints how to sign in on first start,
and ``tidings operators`` manages operators, each its own process on one SQLite file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx

from .test_cli import TIDINGS, Served, _env, run, served  # noqa: F401 (the fixture)


def password_of(text: str) -> str:
    found = re.search(r"Console:.*?\n\n\s+(\S+)\n", text, re.DOTALL)
    assert found, text
    return found.group(1)


def sign_in(url: str, name: str, password: str) -> int:
    with httpx.Client(base_url=url) as client:
        form = client.get("/console/login").text
        token = re.search(r'name="_csrf" value="([^"]+)"', form)
        assert token
        answer = client.post(
            "/console/login", data={"name": name, "password": password, "_csrf": token.group(1)}
        )
        return answer.status_code


def with_stdin(folder: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TIDINGS, *args],
        cwd=folder,
        env=_env(folder),
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_first_start_prints_how_to_sign_in(served: Served) -> None:  # noqa: F811
    text = served.text()
    assert f"{served.url}/console" in text
    password = password_of(text)
    assert password.encode() not in (served.folder / "tidings.db").read_bytes()
    assert sign_in(served.url, "admin", password) == 303
    assert sign_in(served.url, "admin", password + "x") == 401


def test_operators_verbs(served: Served) -> None:  # noqa: F811
    folder = served.folder
    added = with_stdin(
        folder,
        "a designer's password\n",
        "operators",
        "add",
        "dee",
        "--role",
        "designer",
        "--password-stdin",
    )
    assert added.returncode == 0, added.stderr
    assert "added dee (designer)" in added.stdout
    assert sign_in(served.url, "dee", "a designer's password") == 303

    again = with_stdin(
        folder, "a designer's password\n", "operators", "add", "dee", "--password-stdin"
    )
    assert again.returncode == 1
    assert "already" in again.stderr
    short = with_stdin(folder, "short\n", "operators", "add", "eve", "--password-stdin")
    assert short.returncode == 2
    assert "at least 10" in short.stderr

    generated = run(folder, "operators", "add", "olga")
    password = generated.stdout.strip().splitlines()[-1]
    assert sign_in(served.url, "olga", password) == 303

    listing = run(folder, "operators", "list").stdout
    assert re.search(r"dee\s+.*designer", listing), listing
    assert re.search(r"olga\s+.*operator", listing), listing

    changed = run(folder, "operators", "passwd", "olga")
    new_password = changed.stdout.strip().splitlines()[-1]
    assert sign_in(served.url, "olga", password) == 401
    assert sign_in(served.url, "olga", new_password) == 303

    assert run(folder, "operators", "disable", "olga").returncode == 0
    assert sign_in(served.url, "olga", new_password) == 401
    assert "disabled" in run(folder, "operators", "list").stdout
    assert run(folder, "operators", "disable", "olga", "--enable").returncode == 0
    assert sign_in(served.url, "olga", new_password) == 303

    missing = run(folder, "operators", "disable", "nobody", check=False)
    assert missing.returncode == 1
    assert run(folder, "operators", "passwd", "nobody", check=False).returncode == 1
