"""The evidence packet (SPEC §7): ledger events joined with the messages that caused them."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from flask import render_template
from markupsafe import escape

from flows.outcome import ConsentEvent
from storage.evidence import build_packet
from storage.ledger import canonical_json, subject_key, verify
from tests import database
from tests.conftest import PHONE, SHIPPED_FLOWS

OTHER = "+15555550111"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
PROMPT = (
    "Acme VIP Deals: reply YES to get up to 4 msgs/month. Msg & data rates may apply."
    " Reply HELP for help, STOP to cancel."
)
WELCOME = "Welcome to Acme VIP Deals! Up to 4 msgs/month. Reply HELP for help, STOP to cancel."
ZIP_QUESTION = "What's your ZIP code? (optional, reply SKIP)"
STOP = "Acme Coffee: you're unsubscribed and will get no more messages. Reply START to rejoin."
HOSTILE = "<script>alert('x')</script> & hi"


def sha256_file(name: str) -> str:
    return hashlib.sha256((SHIPPED_FLOWS / name).read_bytes()).hexdigest()


def packet_for(app, store, phone: str = PHONE) -> dict:
    """The packet as `flask evidence` builds it, from what the real store holds."""
    key = subject_key(app.config["SECRET_KEY"], phone)
    rows, messages = store.ledger_for(key), store.messages(phone)
    chain = verify(store.ledger())
    return build_packet(phone, store.contact(phone), rows, messages, chain, NOW, key=key)


def html_for(app, packet: dict) -> str:
    with app.app_context():
        return render_template("evidence.html", packet=packet)


@pytest.fixture
def join_yes_stop(twilio) -> list[str]:
    """JOIN, YES, STOP from PHONE; returns the three inbound sids."""
    sids = []
    for text in ("JOIN", "YES", "STOP"):
        sids.append(twilio.next_sid())
        assert twilio.text(text, sid=sids[-1]).status_code == 200
    return sids


def test_join_yes_stop_tells_the_whole_story(app, store, join_yes_stop) -> None:
    packet = packet_for(app, store)
    assert packet["number"] == PHONE
    assert packet["generated_at"] == "2026-05-01T12:00:00.000000+00:00"
    assert packet["subject_key"] == subject_key("test-secret-key", PHONE)
    assert packet["state"] == {"vip": {"state": "opted_out", "since": packet["story"][2]["time"]}}
    assert packet["opted_out"] is True
    assert packet["chain"]["ok"] is True and packet["chain"]["events"] == 3
    story = packet["story"]
    assert [(e["seq"], e["event"], e["flow"], e["source"]) for e in story] == [
        (1, "requested", "vip", "sms"),
        (2, "confirmed", "vip", "sms"),
        (3, "opted_out", "vip", "sms"),
    ]
    assert [e["sid"] for e in story] == join_yes_stop
    assert [e["inbound"]["sid"] for e in story] == join_yes_stop
    assert [e["inbound"]["body"] for e in story] == ["JOIN", "YES", "STOP"]
    assert all(e["inbound"]["matches_ledger"] for e in story)
    assert [[r["text"] for r in e["replies"]] for e in story] == [
        [PROMPT],
        [WELCOME, ZIP_QUESTION],
        [STOP],
    ]
    assert [e["evidence"]["disclosure"] for e in story] == [PROMPT, WELCOME, STOP]
    assert {e["evidence"]["flow_hash"] for e in story} == {sha256_file("vip.yaml")}
    assert {e["evidence"]["gateway_hash"] for e in story} == {sha256_file("gateway.yaml")}
    assert all(e["evidence"]["signature_verified"] is True for e in story)
    # Times are spelled as the ledger stores them (UTC, microseconds), so they can be
    # matched against the raw rows; the message log was written in the same transaction.
    assert [e["time"] for e in story] == [row.at for row in store.ledger()]
    assert all(e["time"].endswith("+00:00") and e["inbound"]["time"] == e["time"] for e in story)
    assert packet["files"] == [
        {"kind": "flow", "flow": "vip", "sha256": sha256_file("vip.yaml"), "events": [1, 2, 3]},
        {
            "kind": "gateway",
            "flow": None,
            "sha256": sha256_file("gateway.yaml"),
            "events": [1, 2, 3],
        },
    ]
    assert json.loads(json.dumps(packet)) == packet  # JSON-serialisable as it stands


def test_messages_that_changed_no_consent_are_listed_too(app, store, twilio) -> None:
    for text in ("JOIN", "HELP", "who is this?", "YES"):
        twilio.say(text)
    packet = packet_for(app, store)
    assert [e["event"] for e in packet["story"]] == ["requested", "confirmed"]
    log = [(m["direction"], m["body"], m["events"]) for m in packet["messages"]]
    assert log == [
        ("in", "JOIN", [1]),
        ("out", PROMPT, []),
        ("in", "HELP", []),
        (
            "out",
            "Acme VIP Deals: up to 4 msgs/month. Msg & data rates may apply. Reply STOP to cancel.",
            [],
        ),
        ("in", "who is this?", []),  # the gateway's default reply is empty: nothing sent
        ("in", "YES", [2]),
        ("out", WELCOME, []),
        ("out", ZIP_QUESTION, []),
    ]
    replies = [m for m in packet["messages"] if m["direction"] == "out"]
    assert all(m["sid"] is None and m["reply_to"] for m in replies)


def test_number_with_no_history_has_an_empty_story(app, store, twilio) -> None:
    twilio.say("JOIN", phone=OTHER)  # someone else's events are in the chain, not the story
    packet = packet_for(app, store)
    assert packet["story"] == packet["messages"] == packet["files"] == []
    assert packet["state"] == {} and packet["opted_out"] is False
    assert packet["chain"] == {
        "ok": True,
        "events": 1,
        "redacted": 0,
        "head": packet["chain"]["head"],
        "problem": "",
    }


def test_other_numbers_rows_are_left_out_even_when_given(app, store, twilio) -> None:
    twilio.say("JOIN", phone=OTHER)
    twilio.say("JOIN")
    key = subject_key(app.config["SECRET_KEY"], PHONE)
    packet = build_packet(
        PHONE, store.contact(PHONE), store.ledger(), [], verify(store.ledger()), NOW, key=key
    )
    assert [e["seq"] for e in packet["story"]] == [2]


def test_tampered_ledger_row_fails_the_chain(app, settings, store, join_yes_stop) -> None:
    body = store.ledger()[1].body
    body["source"] = "web"
    database.execute(settings, "UPDATE ledger SET body = ? WHERE seq = 2", canonical_json(body))
    packet = packet_for(app, store)
    assert packet["chain"]["ok"] is False
    assert packet["chain"]["problem"] == "event 2: body does not match its hash"
    html = html_for(app, packet)
    assert "Ledger chain verification FAILED" in html
    assert "event 2: body does not match its hash" in html
    assert "verified: OK" not in html


def test_purged_text_is_still_tied_to_its_event(app, store, join_yes_stop) -> None:
    assert store.purge_bodies(datetime.now(UTC) + timedelta(days=1), datetime.now(UTC)) == 7
    packet = packet_for(app, store)
    inbound = packet["story"][0]["inbound"]
    assert inbound == {
        "sid": join_yes_stop[0],
        "time": packet["story"][0]["time"],
        "body": None,
        "body_state": "purged",
        "matches_ledger": True,
    }
    # The ledger kept the exact texts sent, even though the message log no longer has them.
    assert [e["evidence"]["disclosure"] for e in packet["story"]] == [PROMPT, WELCOME, STOP]


def test_altered_text_is_flagged(app, settings, store, join_yes_stop) -> None:
    database.execute(settings, "UPDATE messages SET body = 'VIP' WHERE sid = ?", join_yes_stop[0])
    inbound = packet_for(app, store)["story"][0]["inbound"]
    assert (inbound["body"], inbound["body_state"], inbound["matches_ledger"]) == (
        "VIP",
        "held",
        False,
    )
    assert "differs from the text whose SHA-256 the ledger recorded" in html_for(
        app, packet_for(app, store)
    )


def test_erased_number_keeps_its_consent_story(app, store, join_yes_stop) -> None:
    erased = ConsentEvent("erased", None, "admin", None, {"reason": "data subject request"})
    store.erase(PHONE, erased, datetime.now(UTC))
    packet = packet_for(app, store)
    assert [(e["event"], e["source"]) for e in packet["story"]] == [
        ("requested", "sms"),
        ("confirmed", "sms"),
        ("opted_out", "sms"),
        ("erased", "admin"),
    ]
    assert [e["inbound"]["body_state"] for e in packet["story"][:3]] == ["absent"] * 3
    assert packet["story"][3]["inbound"] is None
    assert packet["messages"] == [] and packet["state"] == {}
    html = html_for(app, packet)
    assert "message no longer held (erased)" in html and "data subject request" in html


def test_redacted_events_leave_the_story_but_not_the_chain(app, store, twilio) -> None:
    twilio.say("JOIN")
    twilio.say("STOP")
    assert store.redact(datetime.now(UTC) + timedelta(days=1)) == 2
    packet = packet_for(app, store)
    assert packet["story"] == [] and packet["files"] == []
    assert packet["chain"]["ok"] is True and packet["chain"]["redacted"] == 2
    assert [m["events"] for m in packet["messages"]] == [[], [], [], []]


def test_html_report_escapes_every_text(app, store, twilio) -> None:
    twilio.say("JOIN")
    assert twilio.say(HOSTILE) == []
    twilio.say("YES")
    twilio.say("STOP")
    html = html_for(app, packet_for(app, store))
    assert html.startswith("<!doctype html>")
    assert "<script" not in html.lower()
    assert str(escape(HOSTILE)) in html
    for text in (PROMPT, WELCOME, STOP):
        assert str(escape(text)) in html
    assert "Ledger chain verified: OK" in html
    assert PHONE in html and sha256_file("vip.yaml") in html


def test_html_report_of_an_unknown_number(app, store) -> None:
    html = html_for(app, packet_for(app, store))
    assert "The ledger holds no consent event for this number." in html
    assert "<script" not in html.lower()
