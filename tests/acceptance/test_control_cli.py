"""The control verbs of the ``tidings`` command (``event-types …``, ``templates …``), each its
own process against the same SQLite file, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.acceptance.test_cli import run

DEFINITION = {
    "name": "welcome",
    "label": "Welcome",
    "defaultChannel": "email",
    "channels": ["sms"],
    "validation": "strict",
    "ctxSchema": [{"name": "firstName", "type": "string", "required": True, "example": "Ann"}],
}

BOB = {"recipient": {"email": "bob@example.com"}, "ctx": {"firstName": "Bob"}}


def write(folder: Path, name: str, value: object) -> str:
    path = folder / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def test_event_types_and_templates_from_design_to_publication(tmp_path: Path) -> None:
    run(tmp_path, "event-types", "create", write(tmp_path, "type.json", DEFINITION))
    shown = json.loads(run(tmp_path, "event-types", "show", "welcome").stdout)
    assert shown["ctxSchema"][0]["name"] == "firstName"
    duplicate = run(
        tmp_path, "event-types", "create", write(tmp_path, "type.json", DEFINITION), check=False
    )
    assert duplicate.returncode == 1
    assert "duplicate_event_type" in duplicate.stderr
    example = run(tmp_path, "event-types", "example", "welcome").stdout
    assert "/api/v1/events" in example
    assert "EVTwelcome" in example
    assert '"firstName":"Ann"' in example

    broken = {"content": {"type": "email", "subject": "Hi {{ ctx.first }}", "html": "<div>x"}}
    run(tmp_path, "templates", "save", "welcome", "email", write(tmp_path, "v1.json", broken))
    invalid = run(tmp_path, "templates", "validate", "welcome", "email", "1", check=False)
    assert invalid.returncode == 1
    assert "subject:1:7: error: unknown_variable: ctx.first is not in" in invalid.stderr
    assert "html:1:1: error: unclosed_tag" in invalid.stderr
    refused = run(tmp_path, "templates", "publish", "welcome", "email", "1", check=False)
    assert refused.returncode == 1
    assert "invalid_version" in refused.stderr

    run(tmp_path, "templates", "block", "footer", write(tmp_path, "f.html", "Bye"))
    good = {
        "content": {
            "type": "email",
            "subject": "Hi {{ ctx.firstName }}",
            "html": '<p>Hello {{ ctx.firstName }}</p>{% include "block:footer" %}',
            "sender_address": "team@example.com",
        }
    }
    saved = run(tmp_path, "templates", "save", "welcome", "email", write(tmp_path, "v2.json", good))
    assert "saved version 2" in saved.stdout
    assert "is valid" in run(tmp_path, "templates", "validate", "welcome", "email", "2").stdout
    diff = run(tmp_path, "templates", "diff", "welcome", "email", "1", "2").stdout
    assert "-Hi {{ ctx.first }}" in diff
    assert "+Hi {{ ctx.firstName }}" in diff
    run(
        tmp_path,
        "event-types",
        "profile",
        "welcome",
        "bob",
        write(tmp_path, "bob.json", BOB),
    )
    preview = json.loads(
        run(tmp_path, "templates", "preview", "welcome", "email", "2", "--profile", "bob").stdout
    )
    assert preview["message"]["subject"] == "Hi Bob"
    assert "Bye" in preview["message"]["html"]
    published = run(tmp_path, "templates", "publish", "welcome", "email", "2", "--author", "ann")
    assert "version 2 published" in published.stdout
    audit = run(tmp_path, "templates", "audit", "--type", "welcome").stdout
    assert "ann" in audit
    assert "publish" in audit
    restored = run(tmp_path, "templates", "restore", "welcome", "email", "1")
    assert "restored as version 3" in restored.stdout
    versions = run(tmp_path, "templates", "versions", "welcome", "email").stdout
    assert "│ 3 " in versions or " 3 " in versions
    run(tmp_path, "templates", "unpublish", "welcome", "email")
    gone = run(tmp_path, "templates", "unpublish", "welcome", "email", check=False)
    assert gone.returncode == 1
    assert "not_published" in gone.stderr
    run(tmp_path, "event-types", "delete", "welcome")
    missing = run(tmp_path, "event-types", "show", "welcome", check=False)
    assert missing.returncode == 1
    assert "unknown_event_type" in missing.stderr
