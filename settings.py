"""smsbot's settings (SPEC §2): every name, its default, its type and the start-up checks."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from pathlib import Path

from flows.schedule import parse_quiet_hours

ROOT = Path(__file__).resolve().parent
DEV_SECRET_KEY = "smsbot-development-key-not-secret"

# Every setting (SPEC §2): name without the SMSBOT_ prefix → default. The README's table
# lists each one; tests/test_docs.py keeps the two in step.
DEFAULTS: dict[str, object] = {
    "DATABASE": str(ROOT / "instance" / "smsbot.db"),
    "DATABASE_URL": None,
    "FLOWS_DIR": str(ROOT / "flows" / "definitions"),
    "TWILIO_ACCOUNT_SID": None,
    "TWILIO_AUTH_TOKEN": None,
    "TWILIO_FROM": None,
    "TWILIO_API_URL": None,
    "PUBLIC_URL": None,
    "BEHIND_PROXY": 0,
    "VALIDATE_SIGNATURES": True,
    "SECRET_KEY": None,
    "API_TOKEN": None,
    "MESSAGE_RETENTION_DAYS": 90,
    "EVIDENCE_RETENTION_DAYS": 1826,
    "QUIET_HOURS": "21:00-08:00",
    "SEND_RATE": 1.0,
    "ENV": "development",
    "DEFAULT_REGION": "US",
    # Not in SPEC §2: how long a message waits for another writer before answering 503.
    "BUSY_TIMEOUT": 5.0,
}


class SettingsError(RuntimeError):
    """A setting is missing or malformed; raised by create_app so the process exits."""


def coerce(name: str, value: object) -> object:
    """Environment values arrive as text (or JSON-decoded); give each setting its type."""
    default = DEFAULTS[name]
    if value is None:
        return None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise SettingsError(f"SMSBOT_{name} must be true or false, got {value!r}")
        return text in ("1", "true", "yes", "on")
    if isinstance(default, int | float):
        try:
            return type(default)(value)
        except (TypeError, ValueError):
            raise SettingsError(f"SMSBOT_{name} must be a number, got {value!r}") from None
    return str(value)


def check(config: MutableMapping[str, object], logger: logging.Logger) -> None:
    """Give every setting its type, then refuse what can't run; warn about what is unsafe."""
    for name in DEFAULTS:
        config[name] = coerce(name, config.get(name))
    try:
        parse_quiet_hours(config["QUIET_HOURS"])
    except ValueError as error:
        raise SettingsError(f"SMSBOT_QUIET_HOURS: {error}") from None
    production = config["ENV"] == "production"
    if not config["SECRET_KEY"]:
        if production:
            raise SettingsError("SMSBOT_SECRET_KEY is required when SMSBOT_ENV=production")
        logger.warning("SMSBOT_SECRET_KEY is unset: using the development key")
        config["SECRET_KEY"] = DEV_SECRET_KEY
    if not config["VALIDATE_SIGNATURES"]:
        if production:
            raise SettingsError("SMSBOT_VALIDATE_SIGNATURES=false is refused in production")
        logger.warning("Twilio signature validation is OFF: for local development only")
    elif not config["TWILIO_AUTH_TOKEN"]:
        if production:
            raise SettingsError("SMSBOT_TWILIO_AUTH_TOKEN is required to validate webhooks")
        logger.warning("SMSBOT_TWILIO_AUTH_TOKEN is unset: every webhook will get 403")
