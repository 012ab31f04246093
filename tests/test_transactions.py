"""One message, one transaction: crashes roll back, duplicates and numbers are serialised,
the ledger stays a linear chain without personal data, and a locked database answers 503.
Each test runs on both back ends; a trigger or a lock is made the way each one makes it."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import sqlite3
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from flows.engine import Inbound, handle
from flows.keywords import normalise
from flows.loader import load_flows
from storage import Store, StoreBusy, open_store
from storage.ledger import GENESIS, chain_hash, header
from tests import database
from tests.conftest import AUTH_TOKEN, PHONE, SHIPPED_FLOWS, Backend, Twilio, replies
from tests.live import SECRET_KEY as LIVE_SECRET_KEY
from tests.live import Gunicorn

FLOWS = load_flows(SHIPPED_FLOWS)
VIP = FLOWS.flow("vip")
TABLES = ("contacts", "subscriptions", "profile", "messages", "ledger")


def count(settings, table: str, where: str = "TRUE", *args: object) -> int:
    return database.count(settings, table, where, *args)


def inbound_rows(settings, sid: str) -> int:
    return count(settings, "messages", "direction = 'in' AND sid = ?", sid)


def ledger_rows(settings) -> list[tuple]:
    return database.rows(
        settings,
        "SELECT seq, at, event, subject_key, body, body_hash, chain_hash FROM ledger ORDER BY seq",
    )


def assert_linear_chain(store: Store) -> list[dict]:
    """seq runs 1..N; each body hashes to its body_hash (SHA-256 of canonical JSON, computed
    here) and each chain_hash recomputes from its predecessor's."""
    rows = store.ledger()
    assert [row.seq for row in rows] == list(range(1, len(rows) + 1))
    previous = GENESIS
    for row in rows:
        canonical = json.dumps(row.body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(canonical.encode()).hexdigest() == row.body_hash, row.seq
        expected = chain_hash(previous, header(row.seq, row.at, row.event), row.body_hash)
        assert row.chain_hash == expected, row.seq
        previous = row.chain_hash
    return [row.body for row in rows]


def subject(secret: str, phone: str) -> str:
    """SPEC §7's number key, computed here rather than by storage: HMAC-SHA256 under the key."""
    return hmac.new(secret.encode(), phone.encode(), hashlib.sha256).hexdigest()


# -- a crash mid-message rolls back everything -----------------------------------------------

CRASHES = [
    pytest.param("ledger", None, id="ledger-append-is-the-last-write"),
    pytest.param("messages", "NEW.direction = 'out'", id="reply-log"),
    pytest.param("subscriptions", None, id="subscription-write"),
]


def create_crash(settings, table: str, condition: str | None) -> None:
    """A trigger that makes every matching insert into `table` fail with 'boom'."""
    if settings["DATABASE_URL"]:
        database.execute(
            settings,
            "CREATE FUNCTION crash() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$",
        )
        when = f" WHEN ({condition})" if condition else ""
        database.execute(
            settings,
            f"CREATE TRIGGER crash BEFORE INSERT ON {table} FOR EACH ROW{when}"
            " EXECUTE FUNCTION crash()",
        )
    else:
        when = f" WHEN {condition}" if condition else ""
        database.execute(
            settings,
            f"CREATE TRIGGER crash BEFORE INSERT ON {table}{when}"
            " BEGIN SELECT RAISE(ABORT, 'boom'); END",
        )


def drop_crash(settings, table: str) -> None:
    on = f" ON {table}" if settings["DATABASE_URL"] else ""
    database.execute(settings, f"DROP TRIGGER crash{on}")


@pytest.mark.parametrize("table,condition", CRASHES)
def test_crash_mid_message_rolls_back_everything(twilio, settings, table, condition) -> None:
    create_crash(settings, table, condition)  # the real database fails partway through
    sid = "SM" + "c" * 32
    crashed = twilio.text("JOIN", sid=sid)
    assert crashed.status_code == 500
    text = crashed.get_data(as_text=True)
    for leak in (
        "Traceback", "boom", "sqlite", "psycopg", "IntegrityError", "RaiseException",
        AUTH_TOKEN, "test-secret-key",
    ):  # fmt: skip
        assert leak not in text
    assert {table: count(settings, table) for table in TABLES} == dict.fromkeys(TABLES, 0)

    drop_crash(settings, table)
    retried = twilio.text("JOIN", sid=sid)  # Twilio's retry of the same message
    assert retried.status_code == 200
    assert replies(retried) == [VIP.replies.prompt]
    assert inbound_rows(settings, sid) == 1
    assert count(settings, "ledger") == 1


# -- duplicates and one number at a time --------------------------------------------------------


def test_duplicate_sid_posted_concurrently_is_handled_once(app, settings) -> None:
    sid, senders = "SM" + "d" * 32, 20
    start = threading.Barrier(senders)

    def send(_: int) -> tuple[int, bytes]:
        twilio = Twilio(app.test_client())  # each thread its own client and connection
        start.wait()
        response = twilio.text("JOIN", sid=sid)
        return response.status_code, response.data

    with ThreadPoolExecutor(senders) as pool:
        answers = list(pool.map(send, range(senders)))
    assert {status for status, _ in answers} == {200}
    assert len({body for _, body in answers}) == 1
    assert [m.text for m in ET.fromstring(answers[0][1]).iter("Message")] == [VIP.replies.prompt]
    assert inbound_rows(settings, sid) == 1
    assert count(settings, "messages", "direction = 'out'") == 1
    assert count(settings, "ledger") == 1


NUMBERS = ("+15555550111", "+15555550112", "+15555550113")
SENDERS_PER_NUMBER = 3


def test_concurrent_messages_across_processes_keep_the_ledger_linear(
    tmp_path: Path, backend: Backend
) -> None:
    # Four gunicorn workers; three senders per number each text JOIN then YES, all at once.
    jobs = [(phone, n) for phone in NUMBERS for n in range(SENDERS_PER_NUMBER)]
    start = threading.Barrier(len(jobs))
    with Gunicorn(tmp_path, workers=4, **backend.env) as server:

        def converse(job: tuple[str, int]) -> list[int]:
            phone, n = job
            sid = f"SM{phone[1:]}{n:02d}"
            start.wait()
            joined = server.text("JOIN", phone, sid + "JOIN")
            confirmed = server.text("YES", phone, sid + "YES")
            return [joined.status, confirmed.status]

        with ThreadPoolExecutor(len(jobs)) as pool:
            statuses = [s for pair in pool.map(converse, jobs) for s in pair]
    assert statuses == [200] * 2 * len(jobs)

    store = open_store(backend.database, LIVE_SECRET_KEY, url=backend.url)
    accounted = 0
    try:
        bodies = assert_linear_chain(store)
        for phone in NUMBERS:
            mine = [b for b in bodies if b["subject"] == subject(LIVE_SECRET_KEY, phone)]
            events = [b["event"] for b in mine]
            log = store.messages(phone)
            # However the senders interleave: each prompt sent is a `requested` event (a JOIN
            # while pending prompts again), then one confirmation; after it, a JOIN gets
            # already_subscribed and a YES answers the ZIP question, neither an event.
            prompts = sum(m.body == VIP.replies.prompt for m in log)
            assert events == ["requested"] * prompts + ["confirmed"], phone
            assert sum(m.direction == "in" for m in log) == 2 * SENDERS_PER_NUMBER, phone
            assert sum(m.body == VIP.replies.welcome for m in log) == 1, phone
            assert store.contact(phone).subscription("vip").state == "subscribed", phone
            accounted += len(mine)
    finally:
        store.close()
    assert accounted == len(bodies)  # every event belongs to one of the numbers


# -- the ledger never holds a phone number or a message body -----------------------------------

CONVERSATION = [
    "ALERTS quokka-downtown please",  # first_word keyword: alerts pending
    "JOIN",  # vip pending
    "Y",  # confirms the most recent pending: vip
    "94107",  # vip's ZIP question
    "YES",  # confirms alerts
    "Please stop texting me, zebra 42",  # opt-out phrase
    "START",
    "wrong number, this is quokka-77 here",  # opt-out phrase at any length
    "JOIN quokka-again",  # not a keyword (vip matches only_word): no reply while opted out
    "VIP",  # a keyword alias: a new explicit opt-in
]


def test_ledger_never_holds_a_phone_number_or_a_message_body(twilio, settings, store) -> None:
    phone = "+15555550123"
    sids = {body: "SM" + f"{n:x}".rjust(32, "f") for n, body in enumerate(CONVERSATION)}
    for body, sid in sids.items():
        assert twilio.text(body, phone, sid=sid).status_code == 200, body
    rows = ledger_rows(settings)
    events = [row[2] for row in rows]
    assert events.count("opted_out") == 4 and "opted_in_again" in events  # a full story
    assert_linear_chain(store)  # with several events from one message (STOP ends two flows)
    stored = "\n".join(str(value) for row in rows for value in row)
    forbidden = {phone, phone[1:], phone[2:]}  # E.164, with and without the country code
    forbidden |= {text for text in CONVERSATION if len(text) >= 8}
    forbidden |= {normalise(text) for text in CONVERSATION if len(text) >= 8}
    forbidden |= {"quokka", "zebra"}
    for value in forbidden:
        assert value not in stored, value

    key = subject(settings["SECRET_KEY"], phone)
    by_sid = {sid: hashlib.sha256(body.encode()).hexdigest() for body, sid in sids.items()}
    for seq, _, _, subject_key, body, _, _ in rows:
        data = json.loads(body)
        assert subject_key == key == data["subject"], seq
        assert data["evidence"]["inbound_sha256"] == by_sid[data["sid"]], seq


# -- a locked database answers 503, and the retry succeeds once ---------------------------------


class Lock:
    """Another connection holding what a message for PHONE must wait for; release() ends it."""

    def __init__(self, settings):
        if settings["DATABASE_URL"]:
            # PostgreSQL serialises one number's messages with an advisory lock on the
            # number (storage/postgres.py): hold PHONE's, as a second worker would.
            self.holder = psycopg.connect(settings["DATABASE_URL"], autocommit=True)
            self.holder.execute("BEGIN")
            self.holder.execute("SELECT pg_advisory_xact_lock(1, hashtext(%s))", (PHONE,))
        else:
            # SQLite has one write lock for the file: hold it (BEGIN IMMEDIATE).
            self.holder = sqlite3.connect(settings["DATABASE"], isolation_level=None)
            self.holder.execute("BEGIN IMMEDIATE")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.holder.execute("ROLLBACK")
            self.held = False


@pytest.fixture
def lock(app, settings) -> Iterator[Lock]:
    """The lock held on the migrated database until the test releases it."""
    held = Lock(settings)
    yield held
    held.release()
    held.holder.close()


def test_store_raises_busy_when_locked_past_the_busy_timeout(app, settings, lock) -> None:
    store = open_store(
        settings["DATABASE"], settings["SECRET_KEY"], 0.05, url=settings["DATABASE_URL"]
    )
    message = Inbound("SM" + "b" * 32, PHONE, "JOIN")
    now = datetime.now(UTC)

    def decide(contact):
        return handle(message, contact, FLOWS, now)

    try:
        with pytest.raises(StoreBusy):
            store.process(message, decide, now)
        lock.release()
        assert store.process(message, decide, now).replies == (VIP.replies.prompt,)
        again = store.process(message, decide, now)
        assert again.duplicate and again.replies == (VIP.replies.prompt,)
    finally:
        store.close()
    assert inbound_rows(settings, message.sid) == 1
    assert count(settings, "ledger") == 1


@pytest.fixture
def short_busy_timeout(settings):
    settings["BUSY_TIMEOUT"] = "0.05"  # as the environment would give it
    return settings


def test_sms_answers_503_while_the_database_is_locked(
    short_busy_timeout, twilio, settings, lock
) -> None:
    # The lock is held until the answer arrives: longer than the busy timeout by construction.
    sid = "SM" + "5" * 32
    locked = twilio.text("JOIN", sid=sid)
    assert locked.status_code == 503
    assert locked.headers["Retry-After"] == "1"
    assert "Traceback" not in locked.get_data(as_text=True)
    lock.release()
    assert {table: count(settings, table) for table in TABLES} == dict.fromkeys(TABLES, 0)

    assert replies(twilio.text("JOIN", sid=sid)) == [VIP.replies.prompt]
    assert replies(twilio.text("JOIN", sid=sid)) == [VIP.replies.prompt]  # replayed, not redone
    assert inbound_rows(settings, sid) == 1
    assert count(settings, "ledger") == 1


def test_a_message_decided_on_state_that_changed_before_the_lock_is_decided_again(store) -> None:
    # The engine runs before the write lock is taken. Here another message for the same
    # number (JOIN) commits in between: the YES must be decided again on the new state.
    now = datetime.now(UTC)
    join = Inbound("SM" + "1" * 32, PHONE, "JOIN")
    yes = Inbound("SM" + "2" * 32, PHONE, "YES")
    calls = []

    def decide_yes(contact):
        if not calls:
            store.process(join, lambda c: handle(join, c, FLOWS, now), now)
        calls.append(contact)
        return handle(yes, contact, FLOWS, now)

    processed = store.process(yes, decide_yes, now)
    vip = FLOWS.flow("vip")
    assert processed.replies == (vip.replies.welcome, vip.questions[0].ask)
    assert [c.subscription("vip").state if c.subscription("vip") else "new" for c in calls] == [
        "new",
        "pending",
    ]
    assert [row.event for row in store.ledger()] == ["requested", "confirmed"]


def _join(store: Store, sid: str) -> tuple[str, ...]:
    now = datetime.now(UTC)
    message = Inbound(sid, PHONE, "JOIN")
    return store.process(message, lambda contact: handle(message, contact, FLOWS, now), now).replies


@pytest.mark.sqlite_only("the queue of SQLite writers on a lock file")
def test_a_writer_waiting_its_turn_past_the_busy_timeout_gets_busy(settings, store) -> None:
    # Another smsbot writer (a long import, a stuck process) has the turn: this one waits
    # only the busy timeout, then answers busy (503), and writes nothing.
    waiting = open_store(settings["DATABASE"], settings["SECRET_KEY"], 0.05)
    try:
        with store._write(), pytest.raises(StoreBusy, match="another writer"):
            _join(waiting, "SM" + "q" * 32)
        assert _join(waiting, "SM" + "r" * 32) == (VIP.replies.prompt,)
    finally:
        waiting.close()
    assert count(settings, "messages", "direction = 'in'") == 1


@pytest.mark.sqlite_only("the queue of SQLite writers on a lock file")
def test_a_writer_killed_while_holding_its_turn_does_not_block_the_others(settings, store) -> None:
    _join(store, "SM" + "s" * 32)  # migrated, and the lock file made
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_TURN, settings["DATABASE"] + "-writer"],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline() == b"holding\n"
        blocked = open_store(settings["DATABASE"], settings["SECRET_KEY"], 0.05)
        with pytest.raises(StoreBusy):
            _join(blocked, "SM" + "t" * 32)
        blocked.close()
    finally:
        holder.kill()  # SIGKILL: no chance to unlock
        holder.wait()
    assert _join(store, "SM" + "t" * 32) == (VIP.replies.prompt,)


HOLD_TURN = """
import fcntl, os, sys, time
lock = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(lock, fcntl.LOCK_EX)
print("holding", flush=True)
time.sleep(60)
"""


@pytest.mark.sqlite_only("SQLite's write-ahead log")
def test_the_wal_is_copied_back_once_it_passes_its_limit(settings, store, monkeypatch) -> None:
    # Checkpoints run after a writer's turn (not inside COMMIT, where the next writer
    # would wait for them): the log must still be copied back and start over.
    monkeypatch.setattr("storage.sqlite.CHECKPOINT_BYTES", 64 * 1024)
    wal = Path(settings["DATABASE"] + "-wal")
    sizes, now = [], datetime.now(UTC)
    for n in range(60):
        message = Inbound(f"SM{n:032d}", f"+1202555{n:04d}", "JOIN")
        store.process(message, lambda contact, m=message: handle(m, contact, FLOWS, now), now)
        sizes.append(wal.stat().st_size)
    assert max(sizes) < 64 * 1024 + 32 * 4096  # the limit, plus one message's pages
    assert min(sizes[10:]) < 16 * 4096  # restarted from the beginning, more than once
    assert sum(1 for a, b in itertools.pairwise(sizes) if b < a) >= 2
    assert count(settings, "messages", "direction = 'in'") == 60
