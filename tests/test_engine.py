"""The engine's ledger events and evidence: what each consent change records (SPEC §7)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from flows.contact import Contact
from flows.engine import handle
from flows.loader import load_flows
from flows.outcome import Inbound
from tests.conftest import PHONE, SHIPPED_FLOWS
from tests.transcript import START

FLOWS = load_flows(SHIPPED_FLOWS)


def converse(*texts: str, step: timedelta = timedelta(minutes=1)):
    """Run texts through the engine one minute apart; return every outcome."""
    contact, now, outcomes = Contact(PHONE), START, []
    for number, text in enumerate(texts):
        outcome = handle(Inbound(f"SM{number}", PHONE, text), contact, FLOWS, now)
        contact, now = outcome.contact, now + step
        outcomes.append(outcome)
    return outcomes


def events(outcome) -> list[tuple[str, str | None]]:
    return [(e.event, e.flow) for e in outcome.events]


def test_requested_event_carries_the_exact_disclosure_and_file_hash() -> None:
    (join,) = converse("JOIN")
    (event,) = join.events
    vip = FLOWS.flow("vip")
    assert (event.event, event.flow, event.source, event.sid) == ("requested", "vip", "sms", "SM0")
    assert event.evidence["disclosure"] == vip.replies.prompt
    assert event.evidence["flow_hash"] == vip.content_hash
    assert event.evidence["inbound_sha256"] == hashlib.sha256(b"JOIN").hexdigest()
    assert event.evidence["signature_verified"] is True


def test_confirmed_event_carries_the_welcome() -> None:
    _, yes = converse("JOIN", "YES")
    assert events(yes) == [("confirmed", "vip")]
    assert yes.events[0].evidence["disclosure"] == FLOWS.flow("vip").replies.welcome


def test_a_resent_prompt_is_recorded_again() -> None:
    _, again = converse("JOIN", "JOIN")
    assert events(again) == [("requested", "vip")]


def test_a_stale_request_is_closed_before_a_fresh_one() -> None:
    _, again = converse("JOIN", "JOIN", step=timedelta(hours=25))
    assert events(again) == [("expired", "vip"), ("requested", "vip")]


def test_opt_out_records_one_event_per_ended_flow() -> None:
    *_, stop = converse("JOIN", "YES", "ALERTS", "STOP")
    assert sorted(events(stop)) == [("opted_out", "alerts"), ("opted_out", "vip")]
    assert all(e.evidence["disclosure"] == FLOWS.gateway.stop for e in stop.events)


def test_opt_out_with_nothing_active_is_still_evidence() -> None:
    (stop,) = converse("STOP")
    assert events(stop) == [("opted_out", None)]


def test_a_repeated_stop_records_nothing() -> None:
    _, again = converse("STOP", "STOP")
    assert (again.events, again.replies) == ((), ())


def test_start_records_each_restored_flow() -> None:
    *_, start = converse("JOIN", "YES", "STOP", "START")
    assert events(start) == [("opted_in_again", "vip")]


def test_help_and_free_text_record_nothing() -> None:
    _, _, help_, text = converse("JOIN", "YES", "HELP", "love the latte")
    assert help_.events == () and text.events == ()
