"""The fake Twilio Messages API, driven through the real twilio client."""

from __future__ import annotations

import time

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from tests.fake_twilio import FakeTwilio
from tests.fake_twilio import fake_twilio as fake_twilio  # the fixture, as conftest will share

SENDER = "+15555550199"
SERVICE = "MG" + "1" * 32
PHONE = "+15555550100"
CALLBACK = "https://smsbot.example/status"


@pytest.fixture
def twilio(fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch) -> Client:
    """A real twilio client whose API domain is the fake."""
    # With an edge or region set, twilio-python rewrites the host of every URL.
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    client = Client(fake_twilio.account_sid, fake_twilio.auth_token)
    client.api.base_url = fake_twilio.url
    return client


def test_create_returns_a_queued_message(twilio: Client, fake_twilio: FakeTwilio) -> None:
    message = twilio.messages.create(to=PHONE, from_=SENDER, body="Reply YES to confirm.")

    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert (message.status, message.to, message.from_) == ("queued", PHONE, SENDER)
    assert message.body == "Reply YES to confirm."
    assert message.account_sid == fake_twilio.account_sid
    assert message.num_segments == "1" and message.error_code is None
    assert message.date_created is not None and message.date_created.tzinfo is not None
    assert fake_twilio.sent() == [fake_twilio.sent(to=PHONE)[0]]
    assert fake_twilio.sent()[0]["sid"] == message.sid


def test_requests_reach_the_fake_at_twilios_path(twilio: Client, fake_twilio: FakeTwilio) -> None:
    twilio.messages.create(to=PHONE, from_=SENDER, body="hi")

    method, path, form = fake_twilio.requests[-1]
    assert method == "POST"
    assert path == f"/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json"
    assert form == {"To": PHONE, "From": SENDER, "Body": "hi"}


def test_messaging_service_send(twilio: Client, fake_twilio: FakeTwilio) -> None:
    message = twilio.messages.create(to=PHONE, messaging_service_sid=SERVICE, body="hi")

    assert message.messaging_service_sid == SERVICE and message.from_ is None
    # Twilio answers "accepted" until the service picks a sender.
    assert message.status == "accepted"
    assert fake_twilio.requests[-1].form["MessagingServiceSid"] == SERVICE


def test_status_callback_is_recorded(twilio: Client, fake_twilio: FakeTwilio) -> None:
    twilio.messages.create(to=PHONE, from_=SENDER, body="hi", status_callback=CALLBACK)

    assert fake_twilio.requests[-1].form["StatusCallback"] == CALLBACK


@pytest.mark.parametrize(
    "body, segments",
    [
        pytest.param("a" * 160, "1", id="gsm-160-one"),
        pytest.param("a" * 161, "2", id="gsm-161-two"),
        pytest.param("’" + "a" * 70, "2", id="ucs2-71-two"),
    ],
)
def test_num_segments(twilio: Client, body: str, segments: str) -> None:
    assert twilio.messages.create(to=PHONE, from_=SENDER, body=body).num_segments == segments


def test_unsubscribed_recipient_raises_21610(twilio: Client, fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail(PHONE, 21610)

    for _ in range(2):  # forever, not once
        with pytest.raises(TwilioRestException) as raised:
            twilio.messages.create(to=PHONE, from_=SENDER, body="hi")
        assert (raised.value.code, raised.value.status) == (21610, 400)
    assert "Attempt to send to unsubscribed recipient" in raised.value.msg
    assert fake_twilio.sent() == []
    assert twilio.messages.create(to="+15555550101", from_=SENDER, body="hi").status == "queued"


def test_recover_lets_sends_succeed_again(twilio: Client, fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail(PHONE, 21610)
    fake_twilio.recover(PHONE)

    assert twilio.messages.create(to=PHONE, from_=SENDER, body="hi").status == "queued"


@pytest.mark.parametrize(
    "code, status",
    [
        pytest.param(20429, 429, id="too-many-requests"),
        pytest.param(20500, 500, id="internal-error"),
        pytest.param(20503, 503, id="unavailable"),
    ],
)
def test_transient_failure_then_success(
    twilio: Client, fake_twilio: FakeTwilio, code: int, status: int
) -> None:
    fake_twilio.fail(PHONE, code, status=status, times=1)

    with pytest.raises(TwilioRestException) as raised:
        twilio.messages.create(to=PHONE, from_=SENDER, body="hi")
    assert (raised.value.code, raised.value.status) == (code, status)
    assert twilio.messages.create(to=PHONE, from_=SENDER, body="hi").status == "queued"
    assert len(fake_twilio.sent(to=PHONE)) == 1


def test_failure_times_counts_down(twilio: Client, fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail(PHONE, 20429, status=429, times=2)

    for _ in range(2):
        with pytest.raises(TwilioRestException):
            twilio.messages.create(to=PHONE, from_=SENDER, body="hi")
    assert twilio.messages.create(to=PHONE, from_=SENDER, body="hi").status == "queued"


def test_wrong_credentials_get_401(fake_twilio: FakeTwilio, twilio: Client) -> None:
    intruder = Client(fake_twilio.account_sid, "wrong-token")
    intruder.api.base_url = fake_twilio.url

    with pytest.raises(TwilioRestException) as raised:
        intruder.messages.create(to=PHONE, from_=SENDER, body="hi")
    assert (raised.value.code, raised.value.status) == (20003, 401)
    assert fake_twilio.sent() == []


@pytest.mark.parametrize(
    "fields, code",
    [
        pytest.param({"to": "", "from_": SENDER, "body": "hi"}, 21604, id="no-to"),
        pytest.param({"to": PHONE, "body": "hi"}, 21603, id="no-from-or-service"),
        pytest.param({"to": PHONE, "from_": SENDER}, 21602, id="no-body"),
        pytest.param({"to": PHONE, "from_": SENDER, "body": "a" * 1601}, 21617, id="too-long"),
    ],
)
def test_invalid_sends_are_refused(twilio: Client, fields: dict[str, str], code: int) -> None:
    with pytest.raises(TwilioRestException) as raised:
        twilio.messages.create(**fields)
    assert (raised.value.code, raised.value.status) == (code, 400)


def test_list_by_to(twilio: Client) -> None:
    first = twilio.messages.create(to=PHONE, from_=SENDER, body="one")
    twilio.messages.create(to="+15555550101", from_=SENDER, body="other")
    second = twilio.messages.create(to=PHONE, messaging_service_sid=SERVICE, body="two")

    listed = twilio.messages.list(to=PHONE)

    assert [m.sid for m in listed] == [second.sid, first.sid]  # newest first, like Twilio
    assert len(twilio.messages.list()) == 3


def test_list_follows_next_page(twilio: Client) -> None:
    sids = [twilio.messages.create(to=PHONE, from_=SENDER, body=str(i)).sid for i in range(5)]

    listed = twilio.messages.list(to=PHONE, page_size=2)

    assert [m.sid for m in listed] == sids[::-1]


def test_fetch_one_message(twilio: Client) -> None:
    sid = twilio.messages.create(to=PHONE, from_=SENDER, body="hi").sid

    assert twilio.messages(sid).fetch().body == "hi"
    with pytest.raises(TwilioRestException) as raised:
        twilio.messages("SM" + "0" * 32).fetch()
    assert (raised.value.code, raised.value.status) == (20404, 404)


def test_delay_slows_every_answer(twilio: Client, fake_twilio: FakeTwilio) -> None:
    fake_twilio.delay = 0.3

    started = time.monotonic()
    twilio.messages.create(to=PHONE, from_=SENDER, body="hi")

    assert time.monotonic() - started >= 0.3


def test_delayed_send_is_created_before_the_answer(fake_twilio: FakeTwilio) -> None:
    # A client that gives up waiting has still sent the message, as with the real Twilio.
    fake_twilio.delay = 1.0
    impatient = Client(
        fake_twilio.account_sid, fake_twilio.auth_token, http_client=TwilioHttpClient(timeout=0.2)
    )
    impatient.api.base_url = fake_twilio.url

    with pytest.raises(requests.ReadTimeout):
        impatient.messages.create(to=PHONE, from_=SENDER, body="hi")
    assert [m["body"] for m in fake_twilio.sent(to=PHONE)] == ["hi"]


def test_context_manager_stops_serving() -> None:
    with FakeTwilio() as fake:
        client = Client(fake.account_sid, fake.auth_token)
        client.api.base_url = fake.url
        assert client.messages.create(to=PHONE, from_=SENDER, body="hi").status == "queued"

    with pytest.raises(requests.ConnectionError):
        client.messages.create(to=PHONE, from_=SENDER, body="hi")
