"""`flask ledger verify`: the hash chain proves nothing was changed, deleted, inserted or cut."""

from __future__ import annotations

import pytest

from storage.ledger import GENESIS, body_hash, canonical_json, chain_hash, header
from tests import database

OTHER = "+15555550111"


@pytest.fixture
def conversation(twilio):
    """Two numbers, seven consent events: JOIN YES STOP START and JOIN YES STOP."""
    for text in ("JOIN", "YES", "STOP", "START"):
        twilio.say(text)
    for text in ("JOIN", "YES", "STOP"):
        twilio.say(text, phone=OTHER)


def verify(runner, *args):
    return runner.invoke(args=["ledger", "verify", *args])


def test_intact_chain_verifies_with_its_head(conversation, runner, store) -> None:
    result = verify(runner)
    assert result.exit_code == 0, result.output
    rows = store.ledger()
    story = ["requested", "confirmed", "opted_out", "opted_in_again"]
    assert [r.event for r in rows] == story + story[:3]
    assert result.output.splitlines()[:2] == ["ok 7 events", f"head 7:{rows[-1].chain_hash}"]


def test_empty_ledger_verifies(runner) -> None:
    result = verify(runner)
    assert result.output.splitlines()[:2] == ["ok 0 events", f"head 0:{GENESIS}"]


def test_chain_hash_is_recomputable_by_hand(conversation, store) -> None:
    previous = GENESIS
    for row in store.ledger():
        assert row.chain_hash == chain_hash(
            previous, header(row.seq, row.at, row.event), row.body_hash
        )
        previous = row.chain_hash


def test_changed_row_is_named(conversation, runner, settings, store) -> None:
    body = store.ledger()[2].body
    body["source"] = "admin"
    database.execute(settings, "UPDATE ledger SET body = ? WHERE seq = 3", canonical_json(body))
    result = verify(runner)
    assert result.exit_code == 1
    assert "event 3: body does not match its hash" in result.output


def test_changed_header_is_named(conversation, runner, settings) -> None:
    database.execute(settings, "UPDATE ledger SET at = '2020-01-01T00:00:00+00:00' WHERE seq = 2")
    result = verify(runner)
    assert result.exit_code == 1
    assert "event 2: chain hash does not match" in result.output


def test_deleted_row_is_named(conversation, runner, settings) -> None:
    database.execute(settings, "DELETE FROM ledger WHERE seq = 4")
    result = verify(runner)
    assert result.exit_code == 1
    assert "event 4: out of sequence (found event 5)" in result.output


def test_inserted_row_is_named(conversation, runner, settings, store) -> None:
    # A forger who knows the format appends a well-formed event but can't rebuild the chain
    # after it: here a row slipped in as seq 8 chained from the wrong previous hash.
    last = store.ledger()[-1]
    body = {**last.body, "event": "confirmed"}
    digest = body_hash(body)
    forged = chain_hash(GENESIS, header(8, last.at, "confirmed"), digest)
    database.execute(
        settings,
        "INSERT INTO ledger (seq, at, event, subject_key, body, body_hash, chain_hash)"
        " VALUES (8, ?, 'confirmed', ?, ?, ?, ?)",
        last.at, body["subject"], canonical_json(body), digest, forged,
    )  # fmt: skip
    result = verify(runner)
    assert result.exit_code == 1
    assert "event 8: chain hash does not match" in result.output


def test_rows_cut_from_the_end_fail_against_a_recorded_head(conversation, runner, settings) -> None:
    head = verify(runner).output.splitlines()[1].removeprefix("head ")
    database.execute(settings, "DELETE FROM ledger WHERE seq >= 6")
    assert verify(runner).exit_code == 0  # the shorter chain is internally consistent...
    result = verify(runner, "--head", head)
    assert result.exit_code == 1  # ...but the recorded head is gone
    assert f"recorded head {head} is not in the chain" in result.output


def test_an_earlier_head_still_in_the_chain_passes(conversation, runner, store) -> None:
    third = store.ledger()[2]
    result = verify(runner, "--head", f"3:{third.chain_hash}")
    assert result.exit_code == 0, result.output


def test_malformed_head_is_refused(runner) -> None:
    result = verify(runner, "--head", "seven")
    assert result.exit_code == 2
    assert "SEQ:HASH" in result.output


def test_redacted_row_younger_than_retention_fails(conversation, runner, settings) -> None:
    database.execute(settings, "UPDATE ledger SET body = NULL, subject_key = NULL WHERE seq = 1")
    result = verify(runner)
    assert result.exit_code == 1
    assert "event 1: redacted before its retention ended" in result.output


def test_redacted_row_past_retention_is_accepted(conversation, runner, settings, app) -> None:
    app.config["EVIDENCE_RETENTION_DAYS"] = 0  # ages compare timestamps: 0 means at once
    database.execute(settings, "UPDATE ledger SET body = NULL, subject_key = NULL WHERE seq = 1")
    result = verify(runner)
    assert result.exit_code == 0, result.output
    assert "1 redacted" in result.output


def test_the_ledger_is_read_a_page_at_a_time_in_order(conversation, store) -> None:
    # `ledger verify` streams the chain; pages must join into exactly the whole ledger.
    assert list(store.iter_ledger(page=2)) == store.ledger()
    assert [row.seq for row in store.iter_ledger(page=3)] == list(range(1, 8))
