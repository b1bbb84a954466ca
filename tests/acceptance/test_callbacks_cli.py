"""``tidings callbacks add|list|remove|log`` as a user runs them, each its own process, on
the SQLite file of a fresh folder."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.test_cli import run


def test_callbacks_add_list_log_remove(tmp_path: Path) -> None:
    added = run(
        tmp_path,
        "callbacks",
        "add",
        "https://hooks.example.com/tidings",
        "--event-type",
        "cartAbandonment",
        "--status",
        "processed",
        "--status",
        "deliveryFailed",
    )
    secret = added.stdout.strip()
    assert secret.startswith("whsec_")
    assert "subscription 1 to https://hooks.example.com/tidings" in added.stderr
    given = run(tmp_path, "callbacks", "add", "https://b.example.com/", "--secret", "x" * 20)
    assert given.stdout.strip() == "x" * 20

    run(
        tmp_path,
        "callbacks",
        "add",
        "https://c.example.com/",
        "--kind",
        "receipt",
        "--receipt",
        "undeliverable",
        "--receipt",
        "expired",
    )

    listed = run(tmp_path, "callbacks", "list").stdout
    assert "expired, undeliverable" in listed
    assert "receipt, status" in listed  # the first two: both kinds
    assert "https://hooks.example.com/tidings" in listed
    assert "cartAbandonment" in listed
    assert "deliveryFailed, processed" in listed
    assert secret not in listed

    assert run(tmp_path, "callbacks", "log").stdout.strip() == "no callbacks"
    assert (
        run(tmp_path, "callbacks", "log", "--state", "failed", "--subscription", "1").returncode
        == 0
    )

    assert "removed subscription 1" in run(tmp_path, "callbacks", "remove", "1").stdout
    again = run(tmp_path, "callbacks", "remove", "1", check=False)
    assert again.returncode == 1
    assert "no active subscription 1" in again.stderr
    assert "hooks.example.com" not in run(tmp_path, "callbacks", "list").stdout


def test_callbacks_add_refuses_bad_input(tmp_path: Path) -> None:
    for args, message in [
        (["http://127.0.0.1:9/"], "loopback"),
        (["ftp://example.com/"], "http:// or https://"),
        (["https://example.com/", "--status", "sent"], "not a final status"),
        (["https://example.com/", "--secret", "short"], "secret must be"),
        (["https://example.com/", "--kind", "bounce"], "is not a kind"),
        (["https://example.com/", "--receipt", "DELIVRD"], "is not a receipt state"),
        (
            ["https://example.com/", "--kind", "status", "--receipt", "expired"],
            "needs the receipt kind",
        ),
    ]:
        refused = run(tmp_path, "callbacks", "add", *args, check=False)
        assert refused.returncode == 2, args
        assert message in refused.stderr, (args, refused.stderr)
    assert run(tmp_path, "callbacks", "list").stdout.strip() == "no subscriptions"
    bad_event = run(tmp_path, "callbacks", "log", "--event", "nope", check=False)
    assert bad_event.returncode == 2
    assert "not an event id" in bad_event.stderr
