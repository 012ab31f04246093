"""The SQLite back end: sqlite-utils for the schema, prepared SQL on the per-message path."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlite_utils import Database

from flows.contact import Contact, Subscription
from flows.outcome import ConsentEvent, Inbound, Outcome
from storage import Processed, StoreBusy, StoredMessage
from storage.ledger import GENESIS, LedgerRow, canonical_json, seal, subject_key, timestamp
from storage.migrations import migrations
from storage.sqlite_outbox import SQLiteOutbox
from storage.sqlite_records import SQLiteRecords

_INSERT_MESSAGE = (
    "INSERT INTO messages (sid, direction, phone, body, flow, created_at, status, reply_to)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class SQLiteStore(SQLiteRecords, SQLiteOutbox):
    """A SQLite file in WAL mode; one connection per process and thread, opened on first use."""

    def __init__(self, path: str, secret_key: str, busy_timeout: float = 5.0):
        self.path = path
        self.secret_key = secret_key
        self.busy_timeout = busy_timeout
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        # Connections never cross a fork: gunicorn workers each open their own.
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            # GDPR art. 17: erased numbers must not linger in free pages of the file.
            conn.execute("PRAGMA secure_delete=ON")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the lock up front, so the
        reads inside see the state the writes will change (per-number serialisation)."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise StoreBusy(str(error)) from error
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def migrate(self) -> None:
        """Apply pending migrations, holding the write lock so two processes can't race."""
        with self._write() as conn:
            migrations.apply(Database(conn))

    def ping(self) -> bool:
        """True when the database answers a query."""
        try:
            return self._conn().execute("SELECT 1").fetchone() == (1,)
        except sqlite3.Error:
            return False

    def process(
        self, message: Inbound, decide: Callable[[Contact], Outcome], now: datetime
    ) -> Processed:
        """Dedupe, load, decide, save and commit one inbound message in one transaction."""
        with self._write() as conn:
            seen = conn.execute(
                "SELECT 1 FROM messages WHERE direction = 'in' AND sid = ?", (message.sid,)
            ).fetchone()
            if seen:
                rows = conn.execute(
                    "SELECT body FROM messages WHERE reply_to = ? AND direction = 'out'"
                    " ORDER BY id",
                    (message.sid,),
                ).fetchall()
                return Processed(tuple(body for (body,) in rows), duplicate=True)
            before, known = self._load(conn, message.phone)
            outcome = decide(before)
            self._save(conn, message, before, known, outcome, now)
            return Processed(tuple(r.text for r in outcome.replies))

    def log_unroutable(self, sid: str, sender: str, body: str, now: datetime) -> None:
        """Store a message from a short code or alphanumeric sender; a retry is ignored."""
        with self._write() as conn:
            conn.execute(
                _INSERT_MESSAGE.replace("INSERT", "INSERT OR IGNORE", 1),
                (sid, "in", sender, body, None, timestamp(now), "unroutable", None),
            )

    def _load(self, conn: sqlite3.Connection, phone: str) -> tuple[Contact, bool]:
        row = conn.execute(
            "SELECT opted_out, restorable FROM contacts WHERE phone = ?", (phone,)
        ).fetchone()
        if row is None:
            return Contact(phone), False
        subs = tuple(
            Subscription(flow, state, datetime.fromisoformat(since), question)
            for flow, state, since, question in conn.execute(
                "SELECT flow, state, since, question FROM subscriptions WHERE phone = ?"
                " ORDER BY since, rowid",
                (phone,),
            )
        )
        return Contact(phone, bool(row[0]), tuple(json.loads(row[1])), subs), True

    def _save(
        self,
        conn: sqlite3.Connection,
        message: Inbound,
        before: Contact,
        known: bool,
        outcome: Outcome,
        now: datetime,
    ) -> None:
        at = timestamp(now)
        phone = message.phone
        key = subject_key(self.secret_key, phone)
        self._write_state(conn, phone, key, before, known, outcome.contact, at)
        for field, value in outcome.profile:
            conn.execute(
                "INSERT INTO profile (phone, field, value, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (phone, field) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (phone, field, value, at),
            )
        conn.execute(
            _INSERT_MESSAGE,
            (message.sid, "in", phone, message.body, outcome.flow, at, "received", None),
        )
        for reply in outcome.replies:
            conn.execute(
                _INSERT_MESSAGE,
                (None, "out", phone, reply.text, reply.flow, at, "replied", message.sid),
            )
        if outcome.events:
            self._append(conn, key, outcome.events, at)

    def _write_state(
        self,
        conn: sqlite3.Connection,
        phone: str,
        key: str,
        before: Contact,
        known: bool,
        after: Contact,
        at: str,
    ) -> None:
        """Write what changed between two consent states of one number."""
        if not known or (after.opted_out, after.restorable) != (
            before.opted_out,
            before.restorable,
        ):
            conn.execute(
                "INSERT INTO contacts (phone, subject_key, opted_out, restorable, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (phone) DO UPDATE SET"
                " opted_out = excluded.opted_out, restorable = excluded.restorable,"
                " updated_at = excluded.updated_at",
                (phone, key, int(after.opted_out), json.dumps(list(after.restorable)), at, at),
            )
        for sub in after.subscriptions:
            if sub not in before.subscriptions:
                # REPLACE gives the row a new rowid: loading ORDER BY since, rowid then
                # returns subscriptions in the order they changed, as the engine keeps them.
                conn.execute(
                    "INSERT OR REPLACE INTO subscriptions"
                    " (phone, flow, state, since, question, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (phone, sub.flow, sub.state, timestamp(sub.since), sub.question, at),
                )

    def _append(
        self, conn: sqlite3.Connection, key: str, events: tuple[ConsentEvent, ...], at: str
    ) -> None:
        """Append events to the chain; the caller's write lock keeps the chain linear."""
        last = conn.execute(
            "SELECT seq, chain_hash FROM ledger ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, previous = last if last else (0, GENESIS)
        for event in events:
            seq += 1
            body = {
                "subject": key,
                "flow": event.flow,
                "event": event.event,
                "source": event.source,
                "sid": event.sid,
                "evidence": dict(event.evidence),
            }
            row = seal(previous, seq, at, event.event, body)
            conn.execute(
                "INSERT INTO ledger (seq, at, event, subject_key, body, body_hash, chain_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, at, event.event, key, canonical_json(body), row.body_hash, row.chain_hash),
            )
            previous = row.chain_hash

    def contact(self, phone: str) -> Contact:
        """The number's consent state (a fresh Contact if never seen)."""
        return self._load(self._conn(), phone)[0]

    def messages(self, phone: str) -> list[StoredMessage]:
        """The number's messages, oldest first."""
        rows = self._conn().execute(
            "SELECT id, sid, direction, phone, body, flow, created_at, status, error_code,"
            " reply_to FROM messages WHERE phone = ? ORDER BY id",
            (phone,),
        )
        return [
            StoredMessage(r[0], r[1], r[2], r[3], r[4], r[5], datetime.fromisoformat(r[6]), *r[7:])
            for r in rows
        ]

    def profile(self, phone: str) -> dict[str, str]:
        """The number's question answers."""
        rows = self._conn().execute("SELECT field, value FROM profile WHERE phone = ?", (phone,))
        return dict(rows.fetchall())

    def ledger(self) -> list[LedgerRow]:
        """Every ledger row, in sequence order."""
        rows = self._conn().execute(
            "SELECT seq, at, event, body, body_hash, chain_hash FROM ledger ORDER BY seq"
        )
        return [
            LedgerRow(seq, at, event, json.loads(body) if body else None, bh, ch)
            for seq, at, event, body, bh, ch in rows
        ]

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
