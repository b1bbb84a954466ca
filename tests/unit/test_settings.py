"""Settings: environment over tidings.toml, checked, and every one documented."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tidings.settings import Settings, SettingsError, describe

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    s = Settings.load(env={}, toml_path="/nonexistent.toml")
    assert s.database_url == "sqlite:///tidings.db"
    assert (s.host, s.port, s.org, s.transactional_api) == ("127.0.0.1", 8080, "local", "mclocal")
    assert s.max_body_bytes == 256 * 1024
    assert not s.uses_smtp
    assert s.server_url == "http://127.0.0.1:8080"


def test_environment_beats_toml(tmp_path: Path) -> None:
    toml = tmp_path / "tidings.toml"
    toml.write_text('port = 9000\norg = "acme"\nsmtp_host = "mail.example.com"\n')
    s = Settings.load(env={"TIDINGS_PORT": "9100", "TIDINGS_SMTP_TLS_VERIFY": "no"}, toml_path=toml)
    assert (s.port, s.org) == (9100, "acme")
    assert s.uses_smtp
    assert s.effective_smtp_port == 25
    assert s.smtp_tls_verify is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TIDINGS_PORT": "eighty"}, "port must be a int"),
        ({"TIDINGS_INSTANCE_ID": "256"}, "instance_id"),
        ({"TIDINGS_SMTP_TLS": "sometimes"}, "smtp_tls"),
        ({"TIDINGS_EMAIL_TRANSPORT": "smtp"}, "smtp_host is empty"),
        ({"TIDINGS_DATABASE_URL": "mysql://x"}, "database_url"),
        ({"TIDINGS_BOUNCE_ADDRESS": "bounces"}, "bounce_address must be an address"),
        ({"TIDINGS_SMTP_HOST": "a.example:25,b.example:http"}, "'b.example:http' has no valid"),
        ({"TIDINGS_SMTP_HOST": "a.example:0"}, "smtp_host: 'a.example:0'"),
        ({"TIDINGS_SMPP_HOST": " , "}, "smpp_host names no SMSC"),
        ({"TIDINGS_SMPP_HOST": "smsc1:2775,smsc2:x"}, "smpp_host: 'smsc2:x' has no valid"),
        ({"TIDINGS_SMPP_HOST": "[::1]:99999"}, r"smpp_host: '\[::1\]:99999'"),
        ({"TIDINGS_CONNECTOR_DOWN_AFTER": "0"}, "connector_down_after must be at least 1"),
        ({"TIDINGS_SMTP_RATE_LIMIT": "-1"}, "smtp_rate_limit must be >= 0"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.load(env=env, toml_path="/nonexistent.toml")


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "tidings.toml"
    toml.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.load(env={}, toml_path=toml)


def test_every_setting_has_help_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for variable, _, help_text in describe():
        assert help_text.strip(), variable
        assert f"`{variable}`" in readme, f"{variable} is not documented in README.md"
    assert len(describe()) == len(dataclasses.fields(Settings))


def test_smtp_relays_in_priority_order() -> None:
    settings = Settings.load(
        env={"TIDINGS_SMTP_HOST": "a.example:587, b.example ,[2001:db8::1]:2525,[::1]"},
        toml_path=None,
    )
    assert settings.smtp_relays == [
        ("a.example", 587),
        ("b.example", 25),
        ("2001:db8::1", 2525),
        ("::1", 25),
    ]


def test_smscs_in_priority_order_with_smpp_port_as_default() -> None:
    settings = Settings.load(
        env={
            "TIDINGS_SMPP_HOST": "smsc1.example:2775, smsc2.example,[::1]:2776",
            "TIDINGS_SMPP_PORT": "9000",
        },
        toml_path=None,
    )
    assert settings.smscs == [("smsc1.example", 2775), ("smsc2.example", 9000), ("::1", 2776)]
    assert Settings.load(env={}, toml_path=None).smscs == []
