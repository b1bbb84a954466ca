"""``tidings profiles ...`` and ``tidings event-types targeting ...`` as a user runs them,
each verb its own process, against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TIDINGS = str(Path(sys.executable).parent / "tidings")


@pytest.fixture
def run(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(COLUMNS="200", TIDINGS_DATABASE_URL=database_url)

    def tidings(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [TIDINGS, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == code, (done.stdout, done.stderr)
        return done

    return tidings


def test_profiles_upsert_get_delete(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    created = run(
        "profiles",
        "upsert",
        "c-1",
        "--email",
        "jack@example.com",
        "--push-token",
        "fcm:a",
        "--push-token",
        "fcm:b",
        "--language",
        "en",
        "--attr",
        "firstName=Jack",
        "--attr",
        "city=Paris",
    )
    assert "created c-1" in created.stderr
    shown = json.loads(run("profiles", "get", "c-1").stdout)
    assert shown["email"] == "jack@example.com"
    assert shown["pushTokens"] == ["fcm:a", "fcm:b"]
    assert shown["attributes"] == {"firstName": "Jack", "city": "Paris"}
    replaced = run("profiles", "upsert", "c-1", "--attributes", '{"tier": 2}')
    assert "replaced c-1" in replaced.stderr
    assert json.loads(replaced.stdout)["attributes"] == {"tier": 2}
    bad = run("profiles", "upsert", "c-2", "--email", "nope@", code=1)
    assert "$.email" in bad.stderr
    run("profiles", "upsert", "c-2", "--attr", "novalue", code=2)
    assert "erased from 0 queued" in run("profiles", "delete", "c-1").stdout
    run("profiles", "get", "c-1", code=1)


def test_profiles_import_csv_and_ndjson(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv_file = tmp_path / "people.csv"
    rows = ["externalId,email,firstName"]
    rows += [f"p-{i},p{i}@example.com,Name {i}" for i in range(2500)]
    rows.insert(3, "p-bad,not-an-email,X")
    rows.insert(5, "p-short,only-two")
    csv_file.write_text("\n".join(rows) + "\n")
    done = run("profiles", "import", str(csv_file), "--no-progress", code=1)
    assert "imported 2500 profiles, 2 bad lines" in done.stdout
    assert f"{csv_file}:4: " in done.stderr
    assert f"{csv_file}:6: " in done.stderr
    assert json.loads(run("profiles", "get", "p-2499").stdout)["attributes"] == {
        "firstName": "Name 2499"
    }
    ndjson = tmp_path / "more.data"
    ndjson.write_text(
        '{"externalId": "j-1", "mobilePhone": "+33612345678", "language": "fr"}\n'
        '{"externalId": "j-2", "attributes": {"vip": true}}\n'
    )
    run("profiles", "import", str(ndjson), code=2)  # no format from the name
    done = run("profiles", "import", str(ndjson), "--format", "json")
    assert "imported 2 profiles, 0 bad lines" in done.stdout
    assert json.loads(run("profiles", "get", "j-2").stdout)["attributes"] == {"vip": True}


def test_event_type_targeting_verbs(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "templates" / "welcome"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Hi {{ profile.firstName }}\n")
    (folder / "email.txt").write_text("Hello\n")
    run("publish", str(tmp_path / "templates"))
    assert (
        json.loads(run("event-types", "targeting", "get", "welcome").stdout)["reconcileBy"]
        == "none"
    )
    shown = json.loads(
        run(
            "event-types",
            "targeting",
            "set",
            "welcome",
            "--reconcile-by",
            "externalId",
            "--on-missing",
            "targetingFailed",
            "--enrichment-url",
            "http://crm.local/e",
            "--enrichment-header",
            "Authorization: Bearer x",
        ).stdout
    )
    assert shown["reconcileBy"] == "externalId"
    assert shown["onMissing"] == "targetingFailed"
    assert shown["enrichmentHeaders"] == {"Authorization": "Bearer x"}
    got = json.loads(run("event-types", "targeting", "get", "welcome").stdout)
    assert got["enrichmentUrl"] == "http://crm.local/e"
    bad = run("event-types", "targeting", "set", "welcome", "--enrichment-url", "ftp://x", code=1)
    assert "$.enrichmentUrl" in bad.stderr
    run("event-types", "targeting", "set", "nope", code=1)
    run("event-types", "targeting", "clear", "welcome")
    assert (
        json.loads(run("event-types", "targeting", "get", "welcome").stdout)["enrichmentUrl"]
        is None
    )
