"""What the sending tests share: settings aimed at the fake Twilio, a clock the test turns,
an in-process worker, and subscribers made the way consumers make themselves (JOIN, YES)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from flows.schedule import parse_quiet_hours
from outbox import Worker, twilio_client
from tests import database
from tests.conftest import AUTH_TOKEN, PUBLIC_URL
from tests.fake_twilio import FakeTwilio

SENDER = "+15555550199"
SERVICE = "MG" + "0123456789abcdef" * 2  # a Messaging Service SID: MG + 32 hex digits
CALLBACK = PUBLIC_URL + "/status"
API_TOKEN = "test-api-token-fedcba9876543210"


def fake_settings(settings: dict, fake: FakeTwilio) -> dict:
    """`settings` sending through `fake`: no rate limit, no quiet hours (the in-process
    worker takes its own), and the API enabled."""
    settings.update(
        TWILIO_API_URL=fake.url,
        TWILIO_ACCOUNT_SID=fake.account_sid,
        TWILIO_AUTH_TOKEN=fake.auth_token,
        TWILIO_FROM=SENDER,
        SEND_RATE=0,
        QUIET_HOURS="off",
        API_TOKEN=API_TOKEN,
    )
    return settings


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    """The fake Twilio API, with the auth token the tests also sign webhooks with: the app
    has one token for both, as on Twilio."""
    with FakeTwilio(auth_token=AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def settings(settings: dict, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The test settings, sending through the fake."""
    # With an edge or region set, twilio-python rewrites the host of every URL.
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    return fake_settings(settings, fake_twilio)


class Clock:
    """The worker's clock: it moves only when the test (or the worker's sleep) moves it."""

    def __init__(self, now: datetime | None = None):
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def set(self, moment: datetime) -> None:
        self.now = moment.astimezone(UTC)

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def worker(
    app: Flask,
    fake: FakeTwilio,
    clock: Clock,
    sender: str = SENDER,
    quiet: str = "off",
    rate: float = 0,
) -> Worker:
    """An in-process worker on the app's store and flows, sending to `fake` on `clock`."""
    client = twilio_client(fake.account_sid, fake.auth_token, fake.url)
    return Worker(
        app.extensions["smsbot.store"],
        app.extensions["smsbot.flows"],
        client,
        sender,
        parse_quiet_hours(quiet),
        rate=rate,
        status_callback=CALLBACK,
        clock=clock,
        sleep=clock.sleep,
    )


def subscribe(twilio, *phones: str) -> None:
    """Each number texts JOIN then YES: a subscriber of vip."""
    for phone in phones:
        twilio.say("JOIN", phone=phone)
        twilio.say("YES", phone=phone)


def creates(fake: FakeTwilio, to: str | None = None) -> list[dict[str, str]]:
    """The forms of every create-message request the fake received (failed ones too)."""
    return [
        form
        for method, path, form in fake.requests
        if method == "POST" and (to is None or form.get("To") == to)
    ]


def outbox_column(settings: dict, column: str) -> list:
    """One column of every outbox row, by id, straight from the database."""
    return database.column(settings, f"SELECT {column} FROM outbox ORDER BY id")


def optin(client, phone: str, token: str | None = API_TOKEN, **fields: object):
    """POST a web form's opt-in to /api/optins, as the marketer's backend does."""
    payload = {
        "phone": phone,
        "flow": "vip",
        "consent_text": "Yes, text me Acme VIP Deals. Up to 4 msgs/month. Reply STOP to cancel.",
        "page_url": "https://acme.example/vip",
        "ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (test)",
        **fields,
    }
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/optins", json=payload, headers=headers)
