"""Settings: defaults, SMSBOT_* environment variables, then the config mapping (SPEC §2)."""

from __future__ import annotations

from shutil import copytree

import pytest

from app import SettingsError, create_app
from flows.model import FlowError
from tests.conftest import SHIPPED_FLOWS


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("SMSBOT_DATABASE", str(tmp_path / "env.db"))
    return monkeypatch


def test_environment_values_keep_their_text(env) -> None:
    # Regression: Flask's JSON decoding turned a digits-and-e token into a float.
    env.setenv("SMSBOT_TWILIO_AUTH_TOKEN", "1e51234")
    env.setenv("SMSBOT_API_TOKEN", "0123")
    app = create_app()
    assert app.config["TWILIO_AUTH_TOKEN"] == "1e51234"
    assert app.config["API_TOKEN"] == "0123"


@pytest.mark.parametrize("text, expected", [("false", False), ("0", False), ("TRUE", True)])
def test_boolean_settings_read_words(env, text, expected) -> None:
    env.setenv("SMSBOT_VALIDATE_SIGNATURES", text)
    assert create_app().config["VALIDATE_SIGNATURES"] is expected


def test_numbers_are_numbers(env) -> None:
    env.setenv("SMSBOT_BEHIND_PROXY", "2")
    env.setenv("SMSBOT_SEND_RATE", "2.5")
    app = create_app()
    assert (app.config["BEHIND_PROXY"], app.config["SEND_RATE"]) == (2, 2.5)


def test_config_mapping_wins_over_environment(env, tmp_path) -> None:
    env.setenv("SMSBOT_DEFAULT_REGION", "GB")
    app = create_app({"SMSBOT_DEFAULT_REGION": "DE", "DATABASE": str(tmp_path / "c.db")})
    assert app.config["DEFAULT_REGION"] == "DE"
    assert app.config["DATABASE"] == str(tmp_path / "c.db")


def test_database_url_falls_back_to_herokus_variable(env) -> None:
    # Nothing listens on port 1: the error names the server, never the password.
    env.setenv("DATABASE_URL", "postgres://user:s3cret@127.0.0.1:1/app")
    with pytest.raises(SettingsError, match="can't connect to postgres://127.0.0.1:1/app") as e:
        create_app()
    assert "s3cret" not in str(e.value)


def test_database_url_must_be_postgres(env) -> None:
    env.setenv("SMSBOT_DATABASE_URL", "mysql://127.0.0.1/app")
    with pytest.raises(SettingsError, match="must start with postgres://"):
        create_app()


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"TWILIO_AUTH_TOKEN": "t"}, "SMSBOT_SECRET_KEY"),
        ({"SECRET_KEY": "s"}, "SMSBOT_TWILIO_AUTH_TOKEN"),
        ({"SECRET_KEY": "s", "VALIDATE_SIGNATURES": False}, "VALIDATE_SIGNATURES"),
    ],
    ids=["no-secret-key", "no-auth-token", "validation-off"],
)
def test_production_refuses_to_start_without_its_secrets(env, settings, message) -> None:
    with pytest.raises(SettingsError, match=message):
        create_app({"ENV": "production", **settings})


def test_development_starts_with_warnings(env, caplog) -> None:
    app = create_app()
    assert app.config["SECRET_KEY"]
    assert "SMSBOT_SECRET_KEY is unset" in caplog.text


def test_bad_number_setting_is_a_clear_error(env) -> None:
    env.setenv("SMSBOT_BEHIND_PROXY", "yes please")
    with pytest.raises(SettingsError, match="SMSBOT_BEHIND_PROXY must be a number"):
        create_app()


def test_broken_flow_stops_the_app_naming_file_and_key(env, tmp_path, caplog) -> None:
    folder = copytree(SHIPPED_FLOWS, tmp_path / "flows")
    text = (
        (folder / "vip.yaml").read_text().replace('STOP to cancel."\n  welcome', '"\n  welcome', 1)
    )
    (folder / "vip.yaml").write_text(text)
    with pytest.raises(FlowError) as raised:
        create_app({"FLOWS_DIR": str(folder)})
    line = 'vip.yaml: replies.prompt: prompt must say how to opt out (e.g. "Reply STOP to cancel")'
    assert line in str(raised.value)
    assert line in caplog.text
