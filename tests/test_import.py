"""`flask import CSV --flow FLOW --source TEXT` (SPEC §4, §7): existing subscribers come in
with their consent evidence as `imported` ledger events, all or nothing; opted-out and
suppressed numbers are skipped and reported; no number is imported twice."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from flows.subscribers import Subscriber, read_subscribers
from storage.ledger import subject_key
from tests.conftest import PHONE

OTHER = "+15555550111"
THIRD = "+15555550122"
HEADER = "phone,consented_at,consent_text"
CONSENT = "I agree to get Acme VIP Deals texts (up to 4 msgs/month)"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
GOOD = f"(555) 555-0100,2024-03-01T09:30:00-05:00,{CONSENT}"


def csv_file(tmp_path, *rows: str, header: str = HEADER):
    path = tmp_path / "subscribers.csv"
    path.write_text("\n".join((header, *rows)) + "\n", encoding="utf-8")
    return path


def run_import(runner, path, flow: str = "vip", source: str = "spring web form"):
    return runner.invoke(args=["import", str(path), "--flow", flow, "--source", source])


def summary(imported=0, opted_out=0, suppressed=0, already=0, flow="vip") -> str:
    return (
        f"imported {imported}; skipped {opted_out} opted out, {suppressed} suppressed,"
        f" {already} already in {flow}"
    )


def state(store, phone: str, flow: str = "vip") -> str | None:
    sub = store.contact(phone).subscription(flow)
    return sub.state if sub else None


def test_import_subscribes_with_consent_evidence(runner, store, tmp_path) -> None:
    path = csv_file(
        tmp_path,
        GOOD,
        f"+1 555 555 0111,2024-04-02 10:00:00,{CONSENT}",
        '555.555.0122,2024-05-03T11:00:00+00:00,"Yes, deals please"',
    )
    result = run_import(runner, path, source="spring web form")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == summary(imported=3)
    assert [state(store, p) for p in (PHONE, OTHER, THIRD)] == ["subscribed"] * 3
    since = store.contact(PHONE).subscription("vip").since
    assert since == datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    events = [row.body for row in store.ledger()]
    assert [(e["event"], e["flow"], e["source"], e["sid"]) for e in events] == [
        ("imported", "vip", "import", None)
    ] * 3
    assert [e["subject"] for e in events] == [
        subject_key("test-secret-key", p) for p in (PHONE, OTHER, THIRD)
    ]
    first = events[0]["evidence"]
    assert first["consent_text"] == CONSENT
    assert first["consented_at"] == "2024-03-01T14:30:00.000000+00:00"
    assert first["import_source"] == "spring web form"
    assert first["file_sha256"] == digest
    assert [e["evidence"]["line"] for e in events] == [2, 3, 4]
    assert events[2]["evidence"]["consent_text"] == "Yes, deals please"
    assert "5555550100" not in str(events)  # the ledger never holds the number
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


BAD_PHONE = "line 3: phone: not a phone number"
BAD_TIME = "line 3: consented_at: not an ISO-8601 time"
FUTURE = "line 3: consented_at: in the future"
EMPTY_TEXT = "line 3: consent_text: empty"
NO_COLUMN = "line 1: header: missing column(s) consent_text"


# (header, the row after a good one, the problem named; id)
@pytest.mark.parametrize(
    "header, row, problem",
    [
        pytest.param(HEADER, "hello,2024-01-01T00:00:00,ok", BAD_PHONE, id="bad-phone"),
        pytest.param(HEADER, "555-0100,2024-01-01T00:00:00,ok", BAD_PHONE, id="no-area-code"),
        pytest.param(HEADER, f"{OTHER},01/02/2024,ok", BAD_TIME, id="bad-time"),
        pytest.param(HEADER, f"{OTHER},2999-01-01T00:00:00,ok", FUTURE, id="future-time"),
        pytest.param(HEADER, f"{OTHER},2024-01-01T00:00:00,  ", EMPTY_TEXT, id="empty-consent"),
        pytest.param(HEADER, f"{OTHER},2024-01-01T00:00:00", EMPTY_TEXT, id="short-row"),
        pytest.param("phone,consented_at", f"{OTHER},2024-01-01", NO_COLUMN, id="missing-column"),
    ],
)
def test_a_bad_row_is_named_and_nothing_is_imported(
    runner, store, tmp_path, header: str, row: str, problem: str
) -> None:
    good = GOOD if header == HEADER else "+15555550100,2024-01-01T00:00:00"
    result = run_import(runner, csv_file(tmp_path, good, row, header=header))
    assert result.exit_code == 1
    assert f"subscribers.csv: {problem}" in result.output
    assert "nothing imported" in result.output
    assert state(store, PHONE) is None
    assert store.ledger() == []


def test_every_bad_row_is_reported_at_once(runner, tmp_path) -> None:
    path = csv_file(tmp_path, "nope,2024-01-01T00:00:00,ok", GOOD, "+15555550111,yesterday,")
    result = run_import(runner, path)
    assert result.exit_code == 1
    named = [line.split(": ")[1] for line in result.output.splitlines() if ": line " in line]
    assert named == ["line 2", "line 4", "line 4"]


def test_opted_out_and_suppressed_numbers_are_skipped_and_reported(
    twilio, runner, store, tmp_path
) -> None:
    for text in ("JOIN", "YES", "STOP"):
        twilio.say(text, phone=OTHER)  # opted out by SMS
    twilio.say("JOIN", phone=THIRD)
    assert runner.invoke(args=["subject", "erase", THIRD, "--yes"]).exit_code == 0  # suppressed
    path = csv_file(
        tmp_path,
        GOOD,
        f"{OTHER},2024-01-01T00:00:00,{CONSENT}",
        f"{THIRD},2024-01-01T00:00:00,{CONSENT}",
    )
    result = run_import(runner, path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"line 3: {OTHER}: skipped, opted out" in lines
    assert f"line 4: {THIRD}: skipped, suppressed" in lines
    assert lines[-1] == summary(imported=1, opted_out=1, suppressed=1)
    assert [state(store, p) for p in (PHONE, OTHER, THIRD)] == ["subscribed", "opted_out", None]
    assert store.contact(OTHER).opted_out


def test_a_number_twice_in_one_file_is_imported_once(runner, store, tmp_path) -> None:
    path = csv_file(tmp_path, GOOD, f"+15555550100,2024-02-01T00:00:00,{CONSENT}")
    result = run_import(runner, path)
    assert result.exit_code == 0, result.output
    assert f"line 3: {PHONE}: skipped, already" in result.output
    assert result.output.splitlines()[-1] == summary(imported=1, already=1)
    assert [r.event for r in store.ledger()] == ["imported"]


def test_the_same_file_twice_imports_nothing_new(runner, store, tmp_path) -> None:
    path = csv_file(tmp_path, GOOD, f"{OTHER},2024-01-01T00:00:00,{CONSENT}")
    assert run_import(runner, path).output.splitlines()[-1] == summary(imported=2)
    ledger = store.ledger()
    result = run_import(runner, path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == summary(already=2)
    assert store.ledger() == ledger


def test_a_number_subscribed_by_sms_is_not_imported_again(twilio, runner, store, tmp_path) -> None:
    for text in ("JOIN", "YES"):
        twilio.say(text)
    result = run_import(runner, csv_file(tmp_path, GOOD))
    assert result.output.splitlines()[-1] == summary(already=1)
    assert [r.event for r in store.ledger()] == ["requested", "confirmed"]


@pytest.mark.parametrize("flow", ["nope", "VIP", ""], ids=["unknown", "keyword-not-id", "empty"])
def test_unknown_flow_is_a_usage_error(runner, store, tmp_path, flow: str) -> None:
    result = run_import(runner, csv_file(tmp_path, GOOD), flow=flow)
    assert result.exit_code == 2
    assert "--flow" in result.output
    assert state(store, PHONE) is None


def test_imported_subscriber_is_opted_out_by_a_later_stop(twilio, runner, store, tmp_path) -> None:
    run_import(runner, csv_file(tmp_path, GOOD))
    assert twilio.say("STOP") == [
        "Acme Coffee: you're unsubscribed and will get no more messages. Reply START to rejoin."
    ]
    assert store.contact(PHONE).opted_out
    assert state(store, PHONE) == "opted_out"
    assert [(r.event, r.body["source"]) for r in store.ledger()] == [
        ("imported", "import"),
        ("opted_out", "sms"),
    ]


@pytest.mark.parametrize(
    "lines, rows, problems",
    [
        pytest.param(
            [HEADER, GOOD],
            [Subscriber(2, PHONE, datetime(2024, 3, 1, 14, 30, tzinfo=UTC), CONSENT)],
            [],
            id="one-good-row",
        ),
        pytest.param(
            [HEADER, "+15555550100,2024-03-01T09:30:00, agreed "],
            [Subscriber(2, PHONE, datetime(2024, 3, 1, 9, 30, tzinfo=UTC), "agreed")],
            [],
            id="no-offset-means-utc-text-stripped",
        ),
        pytest.param(
            ["consent_text,phone,consented_at", "ok,5555550100,2024-01-01"],
            [Subscriber(2, PHONE, datetime(2024, 1, 1, tzinfo=UTC), "ok")],
            [],
            id="columns-in-any-order",
        ),
        pytest.param(
            [HEADER, "", GOOD],
            [Subscriber(3, PHONE, datetime(2024, 3, 1, 14, 30, tzinfo=UTC), CONSENT)],
            [],
            id="blank-line-skipped-line-numbers-kept",
        ),
        pytest.param(
            [HEADER, "x,y,"],
            [],
            [
                "line 2: phone: not a phone number: 'x'",
                "line 2: consented_at: not an ISO-8601 time: 'y'",
                "line 2: consent_text: empty",
            ],
            id="every-problem-of-a-row",
        ),
        pytest.param(
            [HEADER, "+15555550100,2025-06-01T12:00:01+00:00,ok"],
            [],
            ["line 2: consented_at: in the future"],
            id="one-second-in-the-future",
        ),
        pytest.param(
            [HEADER, "+15555550100,2025-06-01T12:00:00+00:00,ok"],
            [Subscriber(2, PHONE, NOW, "ok")],
            [],
            id="exactly-now",
        ),
        pytest.param(
            ["phone,when,consent_text"],
            [],
            [f"line 1: header: missing column(s) consented_at (need {HEADER})"],
            id="missing-column",
        ),
        pytest.param(
            [],
            [],
            [f"line 1: header: missing column(s) {HEADER.replace(',', ', ')} (need {HEADER})"],
            id="empty-file",
        ),
    ],
)
def test_read_subscribers(lines: list[str], rows: list[Subscriber], problems: list[str]) -> None:
    assert read_subscribers(lines, "US", NOW) == (rows, problems)
