"""`flask subject export` and `flask subject erase` (SPEC §7; GDPR art. 15, 17, 20): a data
subject gets everything held about their number, and after erasure the number is nowhere
in the database (nor, on SQLite, in the file's bytes), while the pseudonymous ledger still
proves consent and opt-out."""

from __future__ import annotations

import json
import sqlite3

import pytest

from storage.ledger import subject_key
from tests import database
from tests.conftest import PHONE

OTHER = "+15555550111"
ZIP = "94107"
# A distinctive inbound text that also carries the number itself, in two spellings.
SECRET = "Zanzibar-7731 is my cat; text me at 555-555-0100 or +1 (555) 555-0100"
CONVERSATION = ("JOIN", "YES", ZIP, "HELP", SECRET, "call 15555550100 or 5555550100", "STOP")
# Every spelling of PHONE that was stored or sent, and the distinctive text (SPEC §7).
NEEDLES = [
    pytest.param("+15555550100", id="e164"),
    pytest.param("15555550100", id="national-with-country-code"),
    pytest.param("5555550100", id="national"),
    pytest.param("555-555-0100", id="national-dashed"),
    pytest.param("Zanzibar-7731", id="distinctive-inbound-text"),
]


@pytest.fixture
def conversation(twilio, settings) -> list[list[str]]:
    """PHONE's whole story (keyword, confirm, ZIP answer, HELP, free text, STOP), plus
    another number that must be left alone; returns PHONE's replies."""
    story = [twilio.say(text) for text in CONVERSATION]
    for text in ("JOIN", "YES", "10001"):
        twilio.say(text, phone=OTHER)
    return story


def export(runner, phone: str):
    return runner.invoke(args=["subject", "export", phone])


def erase(runner, phone: str, *flags: str):
    return runner.invoke(args=["subject", "erase", phone, *flags])


def test_conversation_keeps_a_profile_field_and_ends_opted_out(conversation, store) -> None:
    assert conversation[2] == ["Thanks, you're all set!"]  # the ZIP answer was accepted
    assert store.profile(PHONE) == {"zip": ZIP}
    assert store.contact(PHONE).opted_out


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(PHONE, id="e164"),
        pytest.param("(555) 555-0100", id="national-parenthesised"),
        pytest.param("555.555.0100", id="national-dotted"),
        pytest.param("1-555-555-0100", id="with-country-code"),
        pytest.param("+1 555 555 0100", id="international-spaced"),
    ],
)
def test_export_holds_everything_about_the_number(
    conversation, runner, store, spelling: str
) -> None:
    result = export(runner, spelling)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    key = subject_key("test-secret-key", PHONE)
    assert data["number"] == PHONE
    assert data["subject_key"] == key
    assert data["opted_out"] is True
    assert data["profile"] == {"zip": ZIP}
    assert [(s["flow"], s["state"]) for s in data["subscriptions"]] == [("vip", "opted_out")]
    inbound = [m["body"] for m in data["messages"] if m["direction"] == "in"]
    assert inbound == list(CONVERSATION)
    outbound = [m["body"] for m in data["messages"] if m["direction"] == "out"]
    assert outbound == [text for replies in conversation for text in replies]
    assert [e["event"] for e in data["ledger"]] == ["requested", "confirmed", "opted_out"]
    assert {e["body"]["subject"] for e in data["ledger"]} == {key}  # not OTHER's events


def test_export_of_an_unknown_number_is_empty(runner) -> None:
    result = export(runner, "+15555550142")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["subscriptions"], data["profile"], data["messages"], data["ledger"]) == (
        [],
        {},
        [],
        [],
    )


@pytest.mark.parametrize("command", [["export"], ["erase", "--yes"]], ids=["export", "erase"])
@pytest.mark.parametrize(
    "text",
    [
        pytest.param("hello", id="word"),
        pytest.param("12", id="too-short"),
        pytest.param("555555010012345", id="too-long"),
    ],
)
def test_non_number_is_a_usage_error(runner, text: str, command: list[str]) -> None:
    result = runner.invoke(args=["subject", command[0], text, *command[1:]])
    assert result.exit_code == 2
    assert "not a phone number" in result.output


def test_erase_without_yes_refuses_and_removes_nothing(conversation, runner, settings) -> None:
    before = database.dump(settings)
    result = erase(runner, "(555) 555-0100")
    assert result.exit_code != 0
    assert "--yes" in result.output
    assert database.dump(settings) == before


def test_erase_prints_what_it_removed(conversation, runner, store) -> None:
    messages = len(store.messages(PHONE))
    result = erase(runner, "(555) 555-0100", "--yes")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"erased {PHONE}"
    assert f"  {messages} messages" in lines
    assert "  1 profile fields" in lines
    assert "  1 subscriptions" in lines
    assert "  1 contact" in lines


def test_erase_removes_the_number_and_leaves_others(conversation, runner, store) -> None:
    others = store.messages(OTHER)
    erase(runner, PHONE, "--yes")
    assert store.messages(PHONE) == []
    assert store.profile(PHONE) == {}
    assert store.contact(PHONE).subscriptions == ()
    data = json.loads(export(runner, PHONE).output)
    assert (data["subscriptions"], data["profile"], data["messages"]) == ([], {}, [])
    assert data["suppressed"] is True
    assert store.profile(OTHER) == {"zip": "10001"}
    assert store.messages(OTHER) == others


def test_erase_keeps_the_ledger_and_appends_an_erased_event(conversation, runner, store) -> None:
    before = store.ledger()
    erase(runner, PHONE, "--yes")
    after = store.ledger()
    assert after[: len(before)] == before  # nothing rewritten: the chain is only appended to
    erased = after[len(before) :]
    assert [(r.event, r.body["source"], r.body["subject"]) for r in erased] == [
        ("erased", "admin", subject_key("test-secret-key", PHONE))
    ]
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"ok {len(before) + 1} events")


@pytest.mark.parametrize("needle", NEEDLES)
def test_erased_number_is_in_no_row_of_any_table(
    conversation, runner, settings, needle: str
) -> None:
    assert database.tables_holding(settings, needle), "the scan must see it before erasure"
    result = erase(runner, PHONE, "--yes")
    assert result.exit_code == 0, result.output
    assert database.tables_holding(settings, needle) == []
    assert database.tables_holding(settings, OTHER)  # the scan still reads live data


@pytest.mark.sqlite_only("a byte-level scan of the SQLite file and its -wal")
@pytest.mark.parametrize("needle", NEEDLES)
def test_erased_number_is_nowhere_in_the_database_files(
    conversation, runner, settings, needle: str
) -> None:
    # Scanned with the app's connection still open: the -wal file, where old copies of
    # pages linger until a checkpoint, is read too whenever it exists.
    assert database.files_holding(settings, needle), "the scan must see it before erasure"
    result = erase(runner, PHONE, "--yes")
    assert result.exit_code == 0, result.output
    assert database.files_holding(settings, needle) == []
    assert database.files_holding(settings, OTHER)  # the scan still reads live data


@pytest.fixture
def impatient(settings) -> None:
    """Give up on a locked database after 0.2 s instead of 5 s (asked for before `app`)."""
    settings["BUSY_TIMEOUT"] = 0.2


@pytest.mark.sqlite_only("a reader's snapshot pins old pages in SQLite's -wal file")
def test_erase_never_claims_success_while_the_wal_still_holds_the_number(
    impatient, conversation, runner, settings
) -> None:
    # Another process (a second gunicorn worker, an operator's sqlite3 shell) holds a read
    # snapshot, so the checkpoint can't rewrite the file: the old pages stay in the -wal.
    # Erasure must then finish the job or say it did not (SPEC §7), never report success.
    reader = sqlite3.connect(settings["DATABASE"], isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM messages").fetchone()
        result = erase(runner, PHONE, "--yes")
    finally:
        reader.close()
    lingering = database.places_holding(settings, "+15555550100")
    assert result.exit_code != 0 or lingering == [], result.output


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_erase_vacuums_the_tables_it_deleted_from_on_postgres(
    conversation, runner, settings
) -> None:
    # PostgreSQL keeps deleted rows in the table files as dead tuples until a VACUUM:
    # erasure runs one on each table it deleted from, so the space is reclaimed now.
    tables = ("contacts", "subscriptions", "profile", "messages")
    vacuumed = (
        "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = current_schema()"
        " AND relname IN (?, ?, ?, ?) AND last_vacuum IS NOT NULL"
    )
    assert database.scalar(settings, vacuumed, *tables) == 0
    assert erase(runner, PHONE, "--yes").exit_code == 0
    assert database.scalar(settings, vacuumed, *tables) == len(tables)


def test_erased_number_can_not_be_imported(conversation, runner, store, tmp_path) -> None:
    erase(runner, PHONE, "--yes")
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(
        "phone,consented_at,consent_text\n(555) 555-0100,2024-01-02T10:00:00,Yes, text me\n"
    )
    result = runner.invoke(args=["import", str(csv_file), "--flow", "vip", "--source", "form"])
    assert result.exit_code == 0, result.output
    assert f"line 2: {PHONE}: skipped, suppressed" in result.output
    assert "imported 0; skipped 0 opted out, 1 suppressed" in result.output
    assert store.contact(PHONE).subscriptions == ()


def test_erased_number_texting_a_keyword_starts_a_fresh_opt_in(
    conversation, runner, twilio, store
) -> None:
    erase(runner, PHONE, "--yes")
    assert twilio.say("JOIN")[0].startswith("Acme VIP Deals: reply YES")
    contact = store.contact(PHONE)
    assert not contact.opted_out
    assert [(s.flow, s.state) for s in contact.subscriptions] == [("vip", "pending")]
    assert [r.event for r in store.ledger_for(subject_key("test-secret-key", PHONE))][-2:] == [
        "erased",
        "requested",
    ]


def test_an_erased_number_that_confirms_again_is_no_longer_suppressed(
    twilio, runner, store, settings
) -> None:
    # Its own YES is a newer, explicit choice than the erasure request it made before.
    twilio.say("JOIN")
    assert runner.invoke(args=["subject", "erase", PHONE, "--yes"]).exit_code == 0
    key = subject_key(settings["SECRET_KEY"], PHONE)
    assert store.suppressed(key)
    twilio.say("JOIN")
    assert store.suppressed(key)  # a request alone doesn't lift it
    twilio.say("YES")
    assert not store.suppressed(key)
