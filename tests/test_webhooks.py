"""The Twilio adapter, courier-style: canned raw webhooks with their expected answers."""

from __future__ import annotations

import pytest

from tests import database
from tests.conftest import AUTH_TOKEN, BUSINESS_NUMBER, PHONE, PUBLIC_URL, replies, sign

BASE = {
    "MessageSid": "SM" + "a" * 32,
    "AccountSid": "AC" + "0" * 32,
    "From": PHONE,
    "To": BUSINESS_NUMBER,
    "Body": "JOIN",
    "NumMedia": "0",
}
PROMPT_START = "Acme VIP Deals: reply YES"


def without(name: str) -> dict[str, str]:
    return {k: v for k, v in BASE.items() if k != name}


def counts(settings) -> tuple[int, int]:
    """(messages, ledger rows) straight from the database."""
    return database.count(settings, "messages"), database.count(settings, "ledger")


# (id, form, signature, status, expected text in the body, (messages, ledger rows) after)
CASES = [
    ("valid-keyword", BASE, "sign", 200, PROMPT_START, (2, 1)),
    ("bad-signature", BASE, "bm90LXRoZS1zaWduYXR1cmU=", 403, "Signature", (0, 0)),
    ("missing-signature", BASE, None, 403, "Signature", (0, 0)),
    ("signed-with-other-token", BASE, "other-token", 403, "Signature", (0, 0)),
    ("missing-from", without("From"), "sign", 400, "missing field: From", (0, 0)),
    ("missing-to", without("To"), "sign", 400, "missing field: To", (0, 0)),
    ("missing-sid", without("MessageSid"), "sign", 400, "missing field: MessageSid", (0, 0)),
    (
        "media-only",
        {**BASE, "Body": "", "NumMedia": "1", "MediaUrl0": "https://api.twilio.example/m/1"},
        "sign",
        200,
        "<Response />",
        (1, 0),
    ),
    (
        "optouttype-stop",
        {**BASE, "Body": "Stop", "OptOutType": "STOP"},
        "sign",
        200,
        "unsubscribed",
        (2, 1),
    ),
    (
        "optouttype-help",
        {**BASE, "Body": "Help", "OptOutType": "HELP"},
        "sign",
        200,
        "Acme Coffee",
        (2, 0),
    ),
    ("short-code-sender", {**BASE, "From": "12345"}, "sign", 200, "<Response />", (1, 0)),
    ("alphanumeric-sender", {**BASE, "From": "ACMEBANK"}, "sign", 200, "<Response />", (1, 0)),
    ("no-body-field", without("Body"), "sign", 200, "<Response />", (1, 0)),
]


@pytest.mark.parametrize(
    "form,signature,status,expected,after", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_canned_webhook(client, settings, form, signature, status, expected, after) -> None:
    headers = {}
    if signature == "sign":
        headers["X-Twilio-Signature"] = sign(PUBLIC_URL + "/sms", form)
    elif signature == "other-token":
        headers["X-Twilio-Signature"] = sign(PUBLIC_URL + "/sms", form, token="another-token")
    elif signature:
        headers["X-Twilio-Signature"] = signature
    response = client.post("/sms", data=form, headers=headers)
    assert response.status_code == status
    assert expected in response.get_data(as_text=True)
    assert counts(settings) == after
    if status == 200:
        assert response.mimetype == "application/xml"


def test_body_over_64_kib_is_refused(client, settings) -> None:
    form = {**BASE, "Body": "x" * (64 * 1024)}
    response = client.post(
        "/sms", data=form, headers={"X-Twilio-Signature": sign(PUBLIC_URL + "/sms", form)}
    )
    assert response.status_code == 413
    assert counts(settings) == (0, 0)


def test_duplicate_sid_replays_the_first_reply_and_changes_nothing(twilio, settings) -> None:
    first = twilio.text("JOIN", sid="SM" + "d" * 32)
    after_first = counts(settings)
    again = twilio.text("JOIN", sid="SM" + "d" * 32)
    assert again.status_code == 200
    assert replies(again) == replies(first)
    assert counts(settings) == after_first


def test_duplicate_sid_with_other_text_still_replays(twilio, store) -> None:
    # Twilio retries carry the same body; a different body under a handled sid is a replay too.
    twilio.text("JOIN", sid="SM" + "e" * 32)
    assert replies(twilio.text("STOP", sid="SM" + "e" * 32))[0].startswith(PROMPT_START)
    assert not store.contact(PHONE).opted_out


def test_get_is_not_allowed(client) -> None:
    assert client.get("/sms").status_code == 405


def test_healthz(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


@pytest.fixture
def proxied_settings(settings):
    settings.pop("PUBLIC_URL")
    settings["BEHIND_PROXY"] = 1
    return settings


def test_signature_over_forwarded_url_behind_a_proxy(proxied_settings) -> None:
    from app import create_app

    client = create_app(proxied_settings).test_client()
    url = "https://gateway.example/sms"
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "gateway.example",
        "X-Twilio-Signature": sign(url, BASE),
    }
    assert client.post("/sms", data=BASE, headers=headers).status_code == 200
    # The same signature seen without the proxy headers is over another URL: refused.
    del headers["X-Forwarded-Host"]
    assert client.post("/sms", data=BASE, headers=headers).status_code == 403


def test_signature_validation_can_be_turned_off_for_development(settings) -> None:
    from app import create_app

    settings["VALIDATE_SIGNATURES"] = "false"
    client = create_app(settings).test_client()
    assert client.post("/sms", data=BASE).status_code == 200


def test_auth_token_is_never_echoed(client) -> None:
    response = client.post("/sms", data=BASE, headers={"X-Twilio-Signature": "x"})
    assert AUTH_TOKEN not in response.get_data(as_text=True)
