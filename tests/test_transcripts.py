"""Every transcript in tests/transcripts, through the engine, through storage (each back
end), and over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import receive
from flows.contact import NEW, Contact
from flows.engine import Inbound, handle
from flows.loader import load_flows
from storage import open_store
from tests.conftest import PHONE, SHIPPED_FLOWS, Backend
from tests.transcript import START, Transcript, parse, render

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.txt"))
FLOWS = load_flows(SHIPPED_FLOWS)


def check(transcript: Transcript, turn_no: int, checks: list[str], contact, profile) -> None:
    """Assert a turn's `= ...` lines against the number's state."""
    where = f"{transcript.path.name}, after text {turn_no + 1}"
    for line in checks:
        words = line.split()
        if line == "opted out":
            assert contact.opted_out, where
        elif line == "not opted out":
            assert not contact.opted_out, where
        elif words[0] == "profile":
            assert profile.get(words[1]) == " ".join(words[2:]), f"{where}: {line}"
        else:
            flow_id, state = words
            sub = contact.subscription(flow_id)
            assert (sub.state if sub else NEW) == state, f"{where}: {line}"


def inbound(number: int, body: str, opt_out_type: str) -> Inbound:
    return Inbound(f"SM{number:032d}", PHONE, body, opt_out_type)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_transcript_through_engine(path: Path, request: pytest.FixtureRequest) -> None:
    transcript = parse(path)
    contact, profile, now, actual = Contact(PHONE), {}, START, []
    for number, turn in enumerate(transcript.turns):
        now += turn.advance
        outcome = handle(inbound(number, turn.body, turn.opt_out_type), contact, FLOWS, now)
        contact = outcome.contact
        profile.update(outcome.profile)
        actual.append([reply.text for reply in outcome.replies])
        if not request.config.getoption("--update"):
            assert actual[-1] == turn.replies, f"{path.name}: reply to {turn.body!r}"
            check(transcript, number, turn.checks, contact, profile)
    if request.config.getoption("--update"):
        path.write_text(render(transcript, actual), encoding="utf-8")


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_transcript_through_storage(path: Path, backend: Backend) -> None:
    transcript = parse(path)
    store = open_store(backend.database, "test-secret-key", url=backend.url)
    store.migrate()
    now = START
    for number, turn in enumerate(transcript.turns):
        now += turn.advance
        processed = receive(store, FLOWS, inbound(number, turn.body, turn.opt_out_type), now)
        assert list(processed.replies) == turn.replies, f"{path.name}: reply to {turn.body!r}"
        check(transcript, number, turn.checks, store.contact(PHONE), store.profile(PHONE))
    store.close()


HTTP_TRANSCRIPTS = [p for p in TRANSCRIPTS if parse(p).via_http]


@pytest.mark.parametrize("path", HTTP_TRANSCRIPTS, ids=lambda p: p.stem)
def test_http_transcripts_have_no_clock_steps(path: Path) -> None:
    # Over HTTP the clock is the real one: a `# via: http` file can't move it.
    assert not any(turn.advance for turn in parse(path).turns)


@pytest.mark.parametrize("path", HTTP_TRANSCRIPTS, ids=lambda p: p.stem)
def test_transcript_over_http(path: Path, twilio, store) -> None:
    transcript = parse(path)
    for number, turn in enumerate(transcript.turns):
        extra = {"OptOutType": turn.opt_out_type} if turn.opt_out_type else {}
        assert twilio.say(turn.body, **extra) == turn.replies, f"{path.name}: {turn.body!r}"
        check(transcript, number, turn.checks, store.contact(PHONE), store.profile(PHONE))
