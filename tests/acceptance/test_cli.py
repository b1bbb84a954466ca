"""The ``tidings`` command as a user runs it: ``tidings serve`` in a fresh folder (first start
prints a key once), then the other verbs against the same SQLite file, each its own process."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

TIDINGS = str(Path(sys.executable).parent / "tidings")
EXAMPLE = {
    "email": "test@example.com",
    "ctx": {"cartAmount": "$ 125", "lastProduct": "Leather motorbike jacket", "firstName": "Jack"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TIDINGS, *args],
        cwd=folder,
        env=_env(folder),
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["COLUMNS"] = "200"
    return env


class Served:
    def __init__(self, folder: Path, port: int, output: Path, process: subprocess.Popen[bytes]):
        self.folder = folder
        self.url = f"http://127.0.0.1:{port}"
        self.output = output
        self.process = process

    def text(self) -> str:
        return self.output.read_text()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """``tidings serve --port N`` in an empty folder, until the test ends (then SIGTERM)."""
    port = free_port()
    output = tmp_path / "serve.log"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [TIDINGS, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(tmp_path, port, output, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(served.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, served.text()
            assert time.monotonic() < deadline, served.text()
            time.sleep(0.05)
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def key_of(text: str) -> str:
    found = re.findall(r"tid_[a-z0-9]{8}_[A-Za-z0-9_-]+", text)
    assert len(set(found)) == 1, text
    return found[0]


def wait_status(url: str, key: str, pkey: str, status: str) -> dict[str, object]:
    deadline = time.monotonic() + 15
    while True:
        body: dict[str, object] = httpx.get(
            f"{url}/local/campaign/mclocal/EVTcartAbandonment/{pkey}",
            headers={"Authorization": f"Bearer {key}"},
        ).json()
        if body["status"] == status:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_first_start_then_the_readme_example(served: Served) -> None:
    key = key_of(served.text())
    assert (served.folder / "tidings.db").is_file()
    # Only the hash is stored: the key's text is nowhere in the database file.
    assert key.encode() not in (served.folder / "tidings.db").read_bytes()

    answer = httpx.post(
        f"{served.url}/local/campaign/mclocal/EVTcartAbandonment",
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json;charset=utf-8",
        },
        json=EXAMPLE,
    )
    assert answer.status_code == 201, answer.text
    pkey = answer.json()["PKey"]
    wait_status(served.url, key, pkey, "processed")

    listing = run(served.folder, "outbox").stdout
    assert "test@example.com" in listing
    message_id = re.search(r"^\W*(\d+)\W", listing, re.MULTILINE)
    assert message_id is not None, listing
    text = run(served.folder, "outbox", "--show", message_id.group(1)).stdout
    assert "Jack" in text
    assert "Leather motorbike jacket" in text
    raw = run(served.folder, "outbox", "--show", message_id.group(1), "--raw").stdout
    parsed = email.message_from_string(raw, policy=email.policy.default)
    assert parsed["To"] == "test@example.com"
    assert parsed.get_content_type() == "multipart/alternative"

    status = run(served.folder, "status", pkey).stdout
    assert "processed" in status
    assert "outbox" in status


def test_second_start_prints_no_key(served: Served, tmp_path: Path) -> None:
    key_of(served.text())
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=20) == 0
    port = free_port()
    again = subprocess.Popen(
        [TIDINGS, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        again.send_signal(signal.SIGTERM)
        output, _ = again.communicate(timeout=20)
    assert "tid_" not in output.decode()


def test_a_port_in_use_fails_at_once_with_a_clear_message(served: Served) -> None:
    port = served.url.rsplit(":", 1)[1]
    result = run(served.folder, "serve", "--port", port, check=False)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_keys_create_list_revoke(served: Served) -> None:
    created = run(served.folder, "keys", "create", "website").stdout
    key = key_of(created)
    ok = httpx.get(f"{served.url}/api/v1/events", headers={"X-Api-Key": key})
    assert ok.status_code == 200
    prefix = key.split("_")[1]
    assert "website" in run(served.folder, "keys", "list").stdout
    run(served.folder, "keys", "revoke", prefix)
    deadline = time.monotonic() + 15  # the server caches a key for a few seconds
    while httpx.get(f"{served.url}/api/v1/events", headers={"X-Api-Key": key}).status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_publish_a_template_folder_and_send(served: Served, tmp_path: Path) -> None:
    key = key_of(served.text())
    folder = tmp_path / "templates" / "orderShipped"
    folder.mkdir(parents=True)
    (folder / "template.toml").write_text('label = "Order shipped"\n')
    (folder / "subject.txt").write_text("Order {{ ctx.order }} is on its way\n")
    (folder / "email.txt").write_text("Hello {{ ctx.name }}, parcel {{ ctx.order }}.\n")
    published = run(served.folder, "publish", str(tmp_path / "templates"))
    assert "orderShipped" in published.stdout + published.stderr
    deadline = time.monotonic() + 15
    while True:  # the server picks up publications within a second
        answer = httpx.post(
            f"{served.url}/api/v1/events",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "type": "orderShipped",
                "recipient": {"email": "ann@example.com"},
                "ctx": {"order": "A-17", "name": "Ann"},
            },
        )
        assert answer.status_code == 201, answer.text
        event = answer.json()["id"]
        while True:
            body = httpx.get(
                f"{served.url}/api/v1/events/{event}", headers={"Authorization": f"Bearer {key}"}
            ).json()
            if body["status"] not in ("pending", "processing"):
                break
            time.sleep(0.05)
        if body["status"] == "processed":
            break
        assert time.monotonic() < deadline, body
    shown = run(served.folder, "outbox").stdout
    assert "Order A-17 is on its way" in shown


def test_a_template_with_a_syntax_error_is_not_published(served: Served, tmp_path: Path) -> None:
    folder = tmp_path / "bad" / "broken"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Hello {{ ctx.name \n")
    (folder / "email.txt").write_text("x\n")
    result = run(served.folder, "publish", str(tmp_path / "bad"), check=False)
    assert result.returncode != 0
    assert "broken" in result.stderr + result.stdout
    types = run(served.folder, "event-types", "list").stdout
    assert "broken" not in types


def test_settings_lists_every_variable(tmp_path: Path) -> None:
    listing = run(tmp_path, "settings").stdout
    for name in ("TIDINGS_DATABASE_URL", "TIDINGS_SMTP_HOST", "TIDINGS_INSTANCE_ID"):
        assert name in listing


def test_templates_proof_waits_for_the_result(served: Served, tmp_path: Path) -> None:
    definition = tmp_path / "welcome.json"
    definition.write_text(
        json.dumps(
            {"name": "welcome", "defaultChannel": "email", "seeds": {"email": ["qa@example.com"]}}
        )
    )
    run(served.folder, "event-types", "create", str(definition))
    draft = tmp_path / "draft.json"
    draft.write_text(
        json.dumps(
            {
                "content": {
                    "type": "email",
                    "subject": "Welcome aboard",
                    "html": "<p>Hello</p>",
                    "sender_address": "shop@example.com",
                }
            }
        )
    )
    run(served.folder, "templates", "save", "welcome", "email", str(draft))
    sent = run(served.folder, "templates", "proof", "welcome", "email", "1", "--wait")
    assert "qa@example.com" in sent.stdout
    assert "processed" in sent.stdout, sent.stdout
    assert "[Proof] Welcome aboard" in run(served.folder, "outbox").stdout

    missing = run(served.folder, "templates", "proof", "welcome", "email", "7", check=False)
    assert missing.returncode == 1
    assert "unknown_version" in missing.stderr


def test_templates_export_import_round_trip(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    shown = run(served.folder, "templates", "export", str(out))
    assert "cartAbandonment" in shown.stdout
    example = out / "cartAbandonment"
    assert (example / "subject.txt").read_text().startswith("{{ ctx.firstName")
    assert (
        'channels = ["email", "sms", "push", "webhook"]' in (example / "template.toml").read_text()
    )
    again = run(served.folder, "templates", "import", str(out))
    assert "cartAbandonment: email version 1 (unchanged)" in again.stdout

    (example / "subject.txt").write_text("{{ ctx.firstName }, come back\n")
    broken = run(served.folder, "templates", "import", str(out), check=False)
    assert broken.returncode == 1
    assert "not imported" in broken.stderr
    assert "cartAbandonment (email)" in broken.stderr
    (example / "subject.txt").write_text("{{ ctx.firstName }}, come back\n")
    published = run(served.folder, "publish", str(out))
    assert "cartAbandonment: email version 2 published (new publication)" in published.stdout
