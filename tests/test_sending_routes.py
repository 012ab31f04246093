"""The sending side's routes (SPEC §3): Twilio's status callback on `/status`, and a web
form's opt-in on `/api/optins`, whose prompt the worker then sends through the fake Twilio."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app import create_app
from storage.ledger import subject_key
from tests.conftest import PHONE
from tests.sending import API_TOKEN, SENDER, Clock, creates, optin, subscribe, worker
from tests.sending import fake_twilio as fake_twilio  # the fixtures, shared by the sending tests
from tests.sending import settings as settings


def ledger(store, settings, phone: str = PHONE) -> list:
    return store.ledger_for(subject_key(settings["SECRET_KEY"], phone))


def send_now(app, fake_twilio) -> None:
    """Run the worker once, on a clock a little ahead of what was just queued."""
    worker(app, fake_twilio, Clock(datetime.now(UTC) + timedelta(seconds=10))).run(once=True)


# -- /status ------------------------------------------------------------------------------------


@pytest.fixture
def sent(app, twilio, runner, store, fake_twilio) -> str:
    """PHONE, a vip subscriber, has been sent one broadcast; returns its sid."""
    subscribe(twilio, PHONE)
    result = runner.invoke(args=["broadcast", "--flow", "vip", "--text", "Deal of the week."])
    assert result.exit_code == 0, result.output
    send_now(app, fake_twilio)
    [message] = fake_twilio.sent(PHONE)
    return message["sid"]


def callback(sid: str, status: str | None, error_code: str | None = None) -> dict[str, str]:
    """A status callback as Twilio posts it."""
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": SENDER,
        "To": PHONE,
        "ApiVersion": "2010-04-01",
    }
    if status is not None:
        form.update(MessageStatus=status, SmsStatus=status)
    if error_code is not None:
        form["ErrorCode"] = error_code
    return form


def stored_status(store, sid: str) -> tuple[str, str | None]:
    [message] = [m for m in store.messages(PHONE) if m.sid == sid]
    return message.status, message.error_code


# (id, MessageStatus, ErrorCode, signature, answer, stored (status, error) or None = unchanged)
STATUS_CASES = [
    ("sent", "sent", None, "sign", 204, ("sent", None)),
    ("delivered", "delivered", None, "sign", 204, ("delivered", None)),
    ("undelivered-30003", "undelivered", "30003", "sign", 204, ("undelivered", "30003")),
    ("bad-signature", "delivered", None, "bm90LXRoZS1zaWduYXR1cmU=", 403, None),
    ("missing-signature", "delivered", None, None, 403, None),
    ("missing-status", None, None, "sign", 400, None),
]


@pytest.mark.parametrize(
    "status,error_code,signature,answer,stored",
    [case[1:] for case in STATUS_CASES],
    ids=[case[0] for case in STATUS_CASES],
)
def test_status_callback(
    twilio, store, settings, sent, status, error_code, signature, answer, stored
) -> None:
    before, events = stored_status(store, sent), len(store.ledger())

    response = twilio.post("/status", callback(sent, status, error_code), signature=signature)

    assert response.status_code == answer, response.data
    assert stored_status(store, sent) == (stored or before)
    assert len(store.ledger()) == events
    assert not store.contact(PHONE).opted_out


def test_status_callback_without_message_sid_is_400(twilio, store, sent) -> None:
    form = {k: v for k, v in callback(sent, "delivered").items() if k != "MessageSid"}

    response = twilio.post("/status", form)

    assert response.status_code == 400
    assert b"missing field: MessageSid" in response.data


def test_status_callback_for_an_unknown_sid_changes_nothing(twilio, store, sent) -> None:
    before = stored_status(store, sent)

    response = twilio.post("/status", callback("SM" + "f" * 32, "delivered"))

    assert response.status_code == 204
    assert stored_status(store, sent) == before


def test_status_21610_opts_the_number_out_once_with_source_carrier(
    twilio, store, settings, fake_twilio, sent
) -> None:
    form = callback(sent, "failed", "21610")

    response = twilio.post("/status", form)

    assert response.status_code == 204
    assert stored_status(store, sent) == ("failed", "21610")
    contact = store.contact(PHONE)
    assert contact.opted_out
    assert contact.subscription("vip").state == "opted_out"
    last = ledger(store, settings)[-1]
    assert (last.event, last.body["source"], last.body["sid"]) == ("opted_out", "carrier", sent)
    # Twilio blocks the number now: no confirmation is sent or queued.
    assert len(creates(fake_twilio)) == 1 and len(store.outbox()) == 1

    events = len(store.ledger())
    replay = twilio.post("/status", form)
    assert replay.status_code == 204
    assert len(store.ledger()) == events


# -- /api/optins --------------------------------------------------------------------------------


def test_api_is_404_when_no_token_is_configured(settings) -> None:
    app = create_app({**settings, "API_TOKEN": None})
    try:
        response = optin(app.test_client(), PHONE, token="anything")
        assert response.status_code == 404
        assert app.extensions["smsbot.store"].outbox() == []
    finally:
        app.extensions["smsbot.store"].close()


BAD_AUTH = [
    pytest.param({}, id="no-authorization"),
    pytest.param({"Authorization": "Bearer not-the-token"}, id="wrong-token"),
    pytest.param({"Authorization": "Bearer "}, id="empty-token"),
    pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-auth"),
]


@pytest.mark.parametrize("headers", BAD_AUTH)
def test_api_without_the_bearer_token_is_401(client, store, headers) -> None:
    body = {"phone": PHONE, "flow": "vip", "consent_text": "Yes, text me."}

    response = client.post("/api/optins", json=body, headers=headers)

    assert response.status_code == 401
    assert store.outbox() == [] and store.ledger() == []


def test_api_rejects_a_body_that_is_not_json(client, store) -> None:
    response = client.post(
        "/api/optins",
        data={"phone": PHONE, "flow": "vip", "consent_text": "Yes"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )

    assert response.status_code == 400
    assert response.json == {"error": "expected a JSON object"}


# (id, fields replacing the valid ones (None removes one), the field the error names)
BAD_FIELDS = [
    ("missing-phone", {"phone": None}, "phone"),
    ("missing-flow", {"flow": None}, "flow"),
    ("missing-consent-text", {"consent_text": None}, "consent_text"),
    ("empty-consent-text", {"consent_text": ""}, "consent_text"),
    ("bad-phone", {"phone": "12"}, "phone"),
    ("letters-phone", {"phone": "call me"}, "phone"),
    ("unknown-flow", {"flow": "nope"}, "flow"),
    ("number-phone", {"phone": 15555550100}, "phone"),
    ("list-consent-text", {"consent_text": ["Yes"]}, "consent_text"),
    ("number-ip", {"ip": 203}, "ip"),
    ("object-user-agent", {"user_agent": {"name": "x"}}, "user_agent"),
]


@pytest.mark.parametrize(
    "fields,named", [c[1:] for c in BAD_FIELDS], ids=[c[0] for c in BAD_FIELDS]
)
def test_api_bad_field_is_400_naming_it(client, store, fields, named) -> None:
    body = {
        "phone": PHONE,
        "flow": "vip",
        "consent_text": "Yes, text me.",
        "page_url": "https://acme.example/vip",
        "ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (test)",
    }
    for name, value in fields.items():
        if value is None:
            body.pop(name)
        else:
            body[name] = value

    response = client.post(
        "/api/optins",
        json=body,
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )

    assert response.status_code == 400
    assert response.json["error"].startswith(f"{named}:")
    assert store.outbox() == [] and store.ledger() == []


@pytest.mark.parametrize("phone", [PHONE, "(555) 555-0100"], ids=["e164", "national"])
def test_api_optin_records_the_request_and_the_worker_sends_the_prompt(
    app, client, twilio, store, settings, fake_twilio, phone
) -> None:
    vip = app.extensions["smsbot.flows"].flow("vip")
    consent = "Yes, text me Acme VIP Deals. Up to 4 msgs/month. Reply STOP to cancel."

    response = optin(client, phone, consent_text=consent)

    assert response.status_code == 202
    assert response.json == {"status": "pending"}
    [event] = ledger(store, settings)
    assert (event.event, event.body["source"], event.body["flow"]) == ("requested", "web", "vip")
    evidence = event.body["evidence"]
    assert {k: evidence.get(k) for k in ("web_ip", "user_agent", "page_url", "consent_text")} == {
        "web_ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (test)",
        "page_url": "https://acme.example/vip",
        "consent_text": consent,
    }
    [row] = store.outbox()
    assert (row.phone, row.flow, row.kind, row.body, row.state) == (
        PHONE,
        "vip",
        "prompt",
        vip.replies.prompt,
        "queued",
    )
    assert store.contact(PHONE).subscription("vip").state == "pending"

    send_now(app, fake_twilio)
    assert [m["body"] for m in fake_twilio.sent(PHONE)] == [vip.replies.prompt]
    assert twilio.say("YES", phone=PHONE)[0] == vip.replies.welcome
    assert store.contact(PHONE).subscription("vip").state == "subscribed"
    assert [e.event for e in ledger(store, settings)] == ["requested", "confirmed"]


def test_api_second_request_within_24_hours_is_429(app, client, store, fake_twilio) -> None:
    assert optin(client, PHONE).status_code == 202
    send_now(app, fake_twilio)

    response = optin(client, PHONE)

    assert response.status_code == 429
    assert len(store.outbox()) == 1
    assert len(creates(fake_twilio)) == 1


def test_api_optin_for_an_opted_out_number_is_409_and_sends_nothing(
    client, twilio, store, settings
) -> None:
    subscribe(twilio, PHONE)
    twilio.say("STOP", phone=PHONE)
    events = len(ledger(store, settings))

    response = optin(client, PHONE)

    assert response.status_code == 409
    assert store.outbox() == []
    assert len(ledger(store, settings)) == events
    assert store.contact(PHONE).opted_out


def test_api_optin_for_an_erased_number_is_409_and_sends_nothing(
    client, twilio, runner, store, settings
) -> None:
    subscribe(twilio, PHONE)
    assert runner.invoke(args=["subject", "erase", PHONE, "--yes"]).exit_code == 0
    events = len(ledger(store, settings))

    response = optin(client, PHONE)

    assert response.status_code == 409
    assert store.outbox() == []
    assert len(ledger(store, settings)) == events


def test_api_optin_for_a_subscriber_is_200_subscribed_and_sends_nothing(
    client, twilio, store, settings
) -> None:
    subscribe(twilio, PHONE)
    events = len(ledger(store, settings))

    response = optin(client, PHONE)

    assert response.status_code == 200
    assert response.json == {"status": "subscribed"}
    assert store.outbox() == []
    assert len(ledger(store, settings)) == events
