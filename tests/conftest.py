"""Shared fixtures: an app on a temporary SQLite file, and a signed-webhook sender."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from twilio.request_validator import RequestValidator

from app import create_app

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_FLOWS = ROOT / "flows" / "definitions"
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
PUBLIC_URL = "https://smsbot.example"
BUSINESS_NUMBER = "+15555550199"
PHONE = "+15555550100"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update",
        action="store_true",
        help="rewrite the expected replies of tests/transcripts/*.txt from the engine",
    )


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, object]:
    """The test configuration; a test may change it before asking for `app`."""
    return {
        "DATABASE": str(tmp_path / "smsbot.db"),
        "FLOWS_DIR": str(SHIPPED_FLOWS),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "PUBLIC_URL": PUBLIC_URL,
        "SECRET_KEY": "test-secret-key",
    }


@pytest.fixture
def app(settings: dict[str, object]):
    app = create_app(settings)
    yield app
    app.extensions["smsbot.store"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def store(app):
    return app.extensions["smsbot.store"]


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    """The X-Twilio-Signature Twilio would send for this URL and form."""
    return RequestValidator(token).compute_signature(url, params)


def replies(response) -> list[str]:
    """The <Message> texts of a TwiML response."""
    root = ET.fromstring(response.data)
    assert root.tag == "Response"
    return [message.text or "" for message in root.iter("Message")]


class Twilio:
    """Sends webhooks the way Twilio does: form-encoded, signed with the auth token."""

    def __init__(self, client):
        self.client = client
        self._sids = itertools.count(1)

    def next_sid(self) -> str:
        return f"SM{next(self._sids):032x}"

    def post(self, path: str, params: dict[str, str], signature: str | None = "sign"):
        headers = {}
        if signature == "sign":
            headers["X-Twilio-Signature"] = sign(PUBLIC_URL + path, params)
        elif signature is not None:
            headers["X-Twilio-Signature"] = signature
        return self.client.post(path, data=params, headers=headers)

    def text(self, body: str, phone: str = PHONE, sid: str | None = None, **extra: str):
        """Text `body` from `phone` to the business number; returns the response."""
        params = {
            "MessageSid": sid or self.next_sid(),
            "AccountSid": "AC" + "0" * 32,
            "From": phone,
            "To": BUSINESS_NUMBER,
            "Body": body,
            "NumMedia": "0",
            **extra,
        }
        return self.post("/sms", params)

    def say(self, body: str, phone: str = PHONE, **extra: str) -> list[str]:
        """Text `body` and return the reply texts (asserting a 200)."""
        response = self.text(body, phone, **extra)
        assert response.status_code == 200, response.data
        return replies(response)


@pytest.fixture
def twilio(client) -> Twilio:
    return Twilio(client)
