"""`flask retention run` (SPEC §7; GDPR art. 5(1)(e)): old message bodies become their
SHA-256, stale pending opt-ins expire, ended consent evidence is redacted once its retention
is over, and the chain still verifies. Old data is made by moving stored times back."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest

from storage.ledger import GENESIS, chain_hash, header, subject_key, timestamp
from tests import database
from tests.conftest import PHONE

OTHER = "+15555550111"
THIRD = "+15555550122"
SECRET = "test-secret-key"
BODIES, EXPIRED, REDACTED = (
    "message bodies replaced by their SHA-256",
    "pending opt-ins expired",
    "ledger rows redacted",
)


def key(phone: str) -> str:
    return subject_key(SECRET, phone)


def ago(**delta: float) -> str:
    return timestamp(datetime.now(UTC) - timedelta(**delta))


def age_messages(settings, phone: str, days: float) -> None:
    database.execute(
        settings, "UPDATE messages SET created_at = ? WHERE phone = ?", ago(days=days), phone
    )


def age_pending(settings, phone: str, **delta: float) -> None:
    database.execute(
        settings, "UPDATE subscriptions SET since = ? WHERE phone = ?", ago(**delta), phone
    )


def age_ledger(settings, phone: str, days: float) -> None:
    """Move one number's ledger events `days` back and re-seal the chain, as if they had
    been appended then (a changed time must be re-chained or `ledger verify` would fail)."""
    at, previous = ago(days=days), GENESIS
    rows = database.rows(
        settings, "SELECT seq, at, event, subject_key, body_hash FROM ledger ORDER BY seq"
    )
    for seq, old_at, event, row_key, digest in rows:
        when = at if row_key == key(phone) else old_at
        previous = chain_hash(previous, header(seq, when, event), digest)
        database.execute(
            settings, "UPDATE ledger SET at = ?, chain_hash = ? WHERE seq = ?", when, previous, seq
        )


def retention(runner, *flags: str) -> dict[str, int]:
    """Run `flask retention run` and return its counts by what they count."""
    result = runner.invoke(args=["retention", "run", *flags])
    assert result.exit_code == 0, result.output
    counts = dict(
        (what, int(count))
        for count, what in re.findall(r"^(\d+) (.+)$", result.output, flags=re.MULTILINE)
    )
    assert set(counts) == {BODIES, EXPIRED, REDACTED}, result.output
    assert ("dry run: nothing was changed" in result.output) == ("--dry-run" in flags)
    return counts


def verify(runner) -> list[str]:
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def converse(twilio, phone: str, *texts: str) -> None:
    for text in texts:
        twilio.say(text, phone=phone)


@pytest.mark.parametrize(
    "age_days, purged",
    [
        pytest.param(91, True, id="older-than-90-days"),
        pytest.param(90.01, True, id="just-past-90-days"),
        pytest.param(89, False, id="younger-than-90-days"),
        pytest.param(0, False, id="today"),
    ],
)
def test_old_message_bodies_are_replaced_by_their_sha256(
    twilio, runner, settings, store, age_days: float, purged: bool
) -> None:
    converse(twilio, PHONE, "JOIN", "YES", "Zanzibar-7731 is my cat")
    originals = [m.body for m in store.messages(PHONE)]
    age_messages(settings, PHONE, age_days)
    counts = retention(runner)
    bodies = [m.body for m in store.messages(PHONE)]
    if purged:
        assert bodies == ["sha256:" + hashlib.sha256(b.encode()).hexdigest() for b in originals]
    else:
        assert bodies == originals
    assert counts[BODIES] == (len(originals) if purged else 0)


def test_zero_message_retention_purges_every_body(twilio, runner, app, store) -> None:
    converse(twilio, PHONE, "JOIN", "YES", "café ☕ 94107")
    originals = [m.body for m in store.messages(PHONE)]
    app.config["MESSAGE_RETENTION_DAYS"] = 0  # ages compare timestamps: 0 means at once
    assert retention(runner)[BODIES] == len(originals)
    assert [m.body for m in store.messages(PHONE)] == [
        "sha256:" + hashlib.sha256(body.encode("utf-8")).hexdigest() for body in originals
    ]
    assert [m.sid for m in store.messages(PHONE) if m.direction == "in"] != []  # rows stay


@pytest.mark.parametrize(
    "keyword, flow, age_hours, expired",
    [
        pytest.param("JOIN", "vip", 23, False, id="vip-within-24h"),
        pytest.param("JOIN", "vip", 25, True, id="vip-past-24h"),
        pytest.param("ALERTS", "alerts", 25, False, id="alerts-within-2d"),
        pytest.param("ALERTS", "alerts", 49, True, id="alerts-past-2d"),
    ],
)
def test_stale_pending_opt_ins_expire(
    twilio, runner, settings, store, keyword: str, flow: str, age_hours: int, expired: bool
) -> None:
    converse(twilio, PHONE, keyword)
    age_pending(settings, PHONE, hours=age_hours)
    before = store.ledger()
    assert retention(runner)[EXPIRED] == int(expired)
    assert store.contact(PHONE).subscription(flow).state == ("expired" if expired else "pending")
    appended = store.ledger()[len(before) :]
    if expired:
        story = [(r.event, r.body["flow"], r.body["source"], r.body["subject"]) for r in appended]
        assert story == [("expired", flow, "admin", key(PHONE))]
    else:
        assert appended == []
    assert verify(runner)[0] == f"ok {len(before) + int(expired)} events"


def test_expired_opt_in_is_not_confirmed_by_a_late_yes(twilio, runner, settings, store) -> None:
    converse(twilio, PHONE, "JOIN")
    age_pending(settings, PHONE, hours=25)
    retention(runner)
    twilio.say("YES")
    assert store.contact(PHONE).subscription("vip").state == "expired"


@pytest.mark.parametrize(
    "texts, erased, age_days, redacted",
    [
        pytest.param(("JOIN", "YES", "STOP"), False, 1900, True, id="opted-out-past-retention"),
        pytest.param(("JOIN", "YES", "STOP"), False, 1800, False, id="opted-out-within-retention"),
        pytest.param(("JOIN", "YES", "STOP"), True, 1900, True, id="erased-past-retention"),
        pytest.param(("JOIN", "YES"), False, 1900, False, id="subscribed-past-retention"),
        pytest.param(("JOIN", "YES", "STOP", "START"), False, 1900, False, id="restarted"),
        pytest.param(("JOIN",), False, 1900, False, id="pending-within-confirm-window"),
    ],
)
def test_ended_consent_evidence_is_redacted_after_its_retention(
    twilio, runner, settings, store, texts, erased: bool, age_days: int, redacted: bool
) -> None:
    converse(twilio, PHONE, *texts)
    converse(twilio, OTHER, "JOIN", "YES", "STOP")  # ended too, but recently: kept
    if erased:
        assert runner.invoke(args=["subject", "erase", PHONE, "--yes"]).exit_code == 0
    rows = len(store.ledger_for(key(PHONE)))
    age_ledger(settings, PHONE, age_days)
    assert retention(runner)[REDACTED] == (rows if redacted else 0)
    ledger = store.ledger()
    assert sum(row.body is None for row in ledger) == (rows if redacted else 0)
    assert len(store.ledger_for(key(PHONE))) == (0 if redacted else rows)
    assert len(store.ledger_for(key(OTHER))) == 3
    lines = verify(runner)
    assert lines[0] == f"ok {len(ledger)} events"
    assert lines[2] == f"{rows if redacted else 0} redacted"


def test_redacted_row_keeps_its_header_and_hashes(twilio, runner, settings, store) -> None:
    converse(twilio, PHONE, "JOIN", "YES", "STOP")
    age_ledger(settings, PHONE, 1900)
    before = store.ledger()
    retention(runner)
    after = store.ledger()
    assert [(r.seq, r.at, r.event, r.body_hash, r.chain_hash) for r in after] == [
        (r.seq, r.at, r.event, r.body_hash, r.chain_hash) for r in before
    ]
    assert [r.body for r in after] == [None, None, None]


def test_zero_evidence_retention_redacts_ended_consent_at_once(twilio, runner, app, store) -> None:
    converse(twilio, PHONE, "JOIN", "YES", "STOP")
    converse(twilio, OTHER, "JOIN", "YES")
    app.config["EVIDENCE_RETENTION_DAYS"] = 0  # ages compare timestamps: 0 means at once
    assert retention(runner)[REDACTED] == 3
    assert [r.body is None for r in store.ledger()] == [True] * 3 + [False] * 2
    assert verify(runner)[2] == "3 redacted"


@pytest.fixture
def backlog(twilio, settings, store) -> dict[str, int]:
    """Something for each rule: PHONE's old messages and old ended evidence, OTHER's stale
    pending opt-in, THIRD's recent subscription. Returns the counts a run should print."""
    converse(twilio, PHONE, "JOIN", "YES", "STOP")
    converse(twilio, OTHER, "JOIN")
    converse(twilio, THIRD, "JOIN", "YES")
    age_messages(settings, PHONE, 100)
    age_ledger(settings, PHONE, 1900)
    age_pending(settings, OTHER, days=2)
    return {BODIES: len(store.messages(PHONE)), EXPIRED: 1, REDACTED: 3}


def test_dry_run_changes_nothing_but_prints_the_same_counts(backlog, runner, settings) -> None:
    before = database.dump(settings)
    assert retention(runner, "--dry-run") == backlog
    assert database.dump(settings) == before
    assert retention(runner) == backlog
    assert database.dump(settings) != before


def test_second_run_finds_nothing_to_do(backlog, runner, settings) -> None:
    assert retention(runner) == backlog
    after_first = database.dump(settings)
    assert retention(runner) == {BODIES: 0, EXPIRED: 0, REDACTED: 0}
    assert database.dump(settings) == after_first
    assert verify(runner)[2] == "3 redacted"
