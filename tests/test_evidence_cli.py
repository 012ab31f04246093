"""`flask evidence PHONE [--format json|html]`: the packet as a lawyer receives it."""

from __future__ import annotations

import hashlib
import json

import pytest
from markupsafe import escape

from storage.ledger import canonical_json
from tests import database
from tests.conftest import PHONE, SHIPPED_FLOWS

PROMPT = (
    "Acme VIP Deals: reply YES to get up to 4 msgs/month. Msg & data rates may apply."
    " Reply HELP for help, STOP to cancel."
)
STOP = "Acme Coffee: you're unsubscribed and will get no more messages. Reply START to rejoin."
HOSTILE = "<script>alert('x')</script> & hi"


def evidence(runner, *args):
    return runner.invoke(args=["evidence", *args])


def untimed(output: str) -> dict:
    """A JSON packet without its generation time, to compare two runs."""
    return {**json.loads(output), "generated_at": None}


@pytest.fixture
def join_yes_stop(twilio) -> None:
    for text in ("JOIN", "YES", "STOP"):
        twilio.say(text)


@pytest.mark.parametrize(
    "spelling",
    ["+15555550100", "5555550100", "(555) 555-0100", "1-555-555-0100"],
    ids=["e164", "national", "formatted", "with-country-code"],
)
def test_json_packet_for_any_spelling_of_the_number(runner, join_yes_stop, spelling) -> None:
    result = evidence(runner, spelling)
    assert result.exit_code == 0, result.output
    packet = json.loads(result.stdout)
    assert packet["number"] == PHONE
    assert [e["event"] for e in packet["story"]] == ["requested", "confirmed", "opted_out"]
    assert packet["story"][0]["replies"][0]["text"] == PROMPT
    assert packet["story"][2]["replies"][0]["text"] == STOP
    vip = hashlib.sha256((SHIPPED_FLOWS / "vip.yaml").read_bytes()).hexdigest()
    assert {e["evidence"]["flow_hash"] for e in packet["story"]} == {vip}
    assert packet["state"]["vip"]["state"] == "opted_out"
    assert packet["chain"]["ok"] is True


def test_json_is_the_default_and_indented(runner, join_yes_stop) -> None:
    default, explicit = evidence(runner, PHONE), evidence(runner, PHONE, "--format", "json")
    assert default.stdout.startswith('{\n  "number": "+15555550100",')
    assert untimed(default.stdout) == untimed(explicit.stdout)


def test_texts_keep_their_characters(runner, twilio) -> None:
    twilio.say("JOIN")
    twilio.say("café ☕ à bientôt")
    result = evidence(runner, PHONE)
    assert "café ☕ à bientôt" in result.stdout  # ensure_ascii=False: readable as sent


def test_html_report(runner, twilio) -> None:
    twilio.say("JOIN")
    twilio.say(HOSTILE)
    twilio.say("STOP")
    result = evidence(runner, PHONE, "--format", "html")
    assert result.exit_code == 0, result.output
    html = result.stdout
    assert html.startswith("<!doctype html>")
    assert "<script" not in html.lower()
    assert str(escape(HOSTILE)) in html
    assert str(escape(PROMPT)) in html and str(escape(STOP)) in html
    assert "Ledger chain verified: OK" in html


def test_unknown_number_has_an_empty_story(runner) -> None:
    result = evidence(runner, PHONE)
    assert result.exit_code == 0, result.output
    packet = json.loads(result.stdout)
    assert packet["story"] == [] and packet["messages"] == [] and packet["state"] == {}


def test_tampered_ledger_is_reported(runner, settings, store, join_yes_stop) -> None:
    body = store.ledger()[0].body
    body["source"] = "web"
    database.execute(settings, "UPDATE ledger SET body = ? WHERE seq = 1", canonical_json(body))
    result = evidence(runner, PHONE)
    # The packet is still produced (it is the evidence of the tampering), with a warning.
    assert result.exit_code == 0, result.output
    chain = json.loads(result.stdout)["chain"]
    assert chain["ok"] is False
    assert chain["problem"] == "event 1: body does not match its hash"
    assert "FAILED: event 1: body does not match its hash" in result.stderr
    html = evidence(runner, PHONE, "--format", "html").stdout
    assert "Ledger chain verification FAILED" in html


@pytest.mark.parametrize(
    "args,message",
    [
        (["not-a-number"], "not a phone number: 'not-a-number'"),
        (["12"], "not a phone number: '12'"),
        ([PHONE, "--format", "pdf"], "'pdf' is not one of 'json', 'html'"),
        ([], "Missing argument 'PHONE'"),
    ],
    ids=["words", "too-short", "unknown-format", "no-phone"],
)
def test_bad_arguments_are_refused(runner, args, message) -> None:
    result = evidence(runner, *args)
    assert result.exit_code == 2
    assert message in result.output


@pytest.fixture
def british(settings) -> None:
    settings["DEFAULT_REGION"] = "GB"


def test_default_region_reads_national_numbers(british, runner) -> None:
    result = evidence(runner, "020 7946 0018")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["number"] == "+442079460018"
