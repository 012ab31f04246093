"""The SQL both back ends share: the per-message path in prepared statements, written once
with `?` placeholders. Each back end supplies connections, transactions and locks."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from flows.contact import Contact, Subscription
from flows.outcome import ConsentEvent, Inbound, Outcome
from storage import Processed, StoredMessage
from storage.ledger import GENESIS, LedgerRow, canonical_json, seal_json, subject_key, timestamp
from storage.queue import SQLOutbox
from storage.records import SQLRecords

Connection = Any  # sqlite3.Connection, or storage.postgres's placeholder-translating wrapper

_INSERT_MESSAGE = (
    "INSERT INTO messages (sid, direction, phone, body, flow, created_at, status, reply_to)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class SQLStore(SQLRecords, SQLOutbox):
    """The storage interface in SQL; subclasses open connections and own the locking."""

    SKIP_LOCKED = ""  # PostgreSQL: " FOR UPDATE SKIP LOCKED", so workers never share a row

    def __init__(self, secret_key: str):
        self.secret_key = secret_key
        self._local = threading.local()

    def _connect(self) -> Connection:
        raise NotImplementedError

    def _write(self, phone: str | None = None) -> AbstractContextManager[Connection]:
        """One write transaction, holding `phone`'s lock (one number at a time, SPEC §5)."""
        raise NotImplementedError

    def _lock_ledger(self, conn: Connection) -> None:
        """Serialise ledger appends for the rest of the transaction (a linear chain)."""

    def _after_erase(self) -> None:
        """Make sure erased data is gone from the back end's files, not just unlinked."""

    def _conn(self) -> Connection:
        # One connection per process and thread, opened on first use: never across a
        # fork, so each gunicorn worker opens its own.
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = self._connect()
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def process(
        self, message: Inbound, decide: Callable[[Contact], Outcome], now: datetime
    ) -> Processed:
        """Dedupe, load, decide, save and commit one inbound message, one number at a time.

        The engine runs before the write lock is taken, on the state read then; inside the
        lock that state is read again and, in the rare case another message for the number
        got in first, decided again. The lock is held for reads and writes only."""
        # Duplicates are rare (Twilio retries): they are caught inside the lock only.
        before, known = self._load(self._conn(), message.phone)
        outcome = decide(before)
        with self._write(message.phone) as conn:
            if (replay := self._replay(conn, message.sid)) is not None:
                return replay
            current, known_now = self._load(conn, message.phone)
            if (current, known_now) != (before, known):
                before, known, outcome = current, known_now, decide(current)
            self._save(conn, message, before, known, outcome, now)
            return Processed(tuple(r.text for r in outcome.replies))

    def _replay(self, conn: Connection, sid: str) -> Processed | None:
        """The replies first sent to `sid` (SPEC §5 rule 1), or None if it is new."""
        # fetchall: a half-read statement would keep SQLite's read snapshot open.
        found = conn.execute(
            "SELECT id, phone FROM messages WHERE direction = 'in' AND sid = ?", (sid,)
        ).fetchall()
        if not found:
            return None
        # Its replies are the number's messages after it: no index on reply_to to keep up.
        rows = conn.execute(
            "SELECT body FROM messages WHERE phone = ? AND id > ? AND reply_to = ?"
            " AND direction = 'out' ORDER BY id",
            (found[0][1], found[0][0], sid),
        ).fetchall()
        return Processed(tuple(body for (body,) in rows), duplicate=True)

    def log_unroutable(self, sid: str, sender: str, body: str, now: datetime) -> None:
        """Store a message from a short code or alphanumeric sender; a retry is ignored."""
        with self._write() as conn:
            conn.execute(
                _INSERT_MESSAGE + " ON CONFLICT DO NOTHING",
                (sid, "in", sender, body, None, timestamp(now), "unroutable", None),
            )

    def _load(self, conn: Connection, phone: str) -> tuple[Contact, bool]:
        # One query for the contact and its subscriptions: this runs on every message.
        rows = conn.execute(
            "SELECT c.opted_out, c.restorable, s.flow, s.state, s.since, s.question"
            " FROM contacts c LEFT JOIN subscriptions s ON s.phone = c.phone"
            " WHERE c.phone = ? ORDER BY s.since, s.changed",
            (phone,),
        ).fetchall()
        if not rows:
            return Contact(phone), False
        subs = tuple(
            Subscription(flow, state, datetime.fromisoformat(since), question)
            for _, _, flow, state, since, question in rows
            if flow is not None
        )
        return Contact(phone, bool(rows[0][0]), tuple(json.loads(rows[0][1])), subs), True

    def _save(
        self,
        conn: Connection,
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
        conn.cursor().executemany(
            _INSERT_MESSAGE,
            [
                (message.sid, "in", phone, message.body, outcome.flow, at, "received", None),
                *(
                    (None, "out", phone, r.text, r.flow, at, "replied", message.sid)
                    for r in outcome.replies
                ),
            ],
        )
        if outcome.events:
            self._append(conn, key, outcome.events, at)
        if any(e.event == "confirmed" for e in outcome.events):
            # An erased number that opted in again by its own text and YES is a subscriber
            # again: the erasure's suppression (which refuses imports and web opt-ins made
            # by others) gives way to the person's new, explicit consent.
            conn.execute("DELETE FROM suppressions WHERE subject_key = ?", (key,))

    def _write_state(
        self,
        conn: Connection,
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
                # `changed` counts this number's changes: loading ORDER BY since, changed
                # returns subscriptions in the order they changed, as the engine keeps them.
                conn.execute(
                    "INSERT INTO subscriptions (phone, flow, state, since, question, updated_at,"
                    " changed) VALUES (?, ?, ?, ?, ?, ?, (SELECT coalesce(max(changed), 0) + 1"
                    " FROM subscriptions WHERE phone = ?)) ON CONFLICT (phone, flow) DO UPDATE"
                    " SET state = excluded.state, since = excluded.since,"
                    " question = excluded.question, updated_at = excluded.updated_at,"
                    " changed = excluded.changed",
                    (phone, sub.flow, sub.state, timestamp(sub.since), sub.question, at, phone),
                )

    def _append(
        self, conn: Connection, key: str, events: tuple[ConsentEvent, ...], at: str
    ) -> None:
        """Append events to the chain; the ledger lock keeps the chain linear."""
        self._lock_ledger(conn)
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
            text = canonical_json(body)
            row = seal_json(previous, seq, at, event.event, body, text)
            conn.execute(
                "INSERT INTO ledger (seq, at, event, subject_key, body, body_hash, chain_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, at, event.event, key, text, row.body_hash, row.chain_hash),
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
        return list(self.iter_ledger())

    def iter_ledger(self, page: int = 10_000) -> Iterator[LedgerRow]:
        """Every ledger row in sequence order, read a page at a time: `ledger verify` on
        millions of events holds one page in memory, not the whole chain."""
        after = 0
        while (
            rows := self._conn()
            .execute(
                "SELECT seq, at, event, body, body_hash, chain_hash FROM ledger WHERE seq > ?"
                " ORDER BY seq LIMIT ?",
                (after, page),
            )
            .fetchall()
        ):
            for seq, at, event, body, bh, ch in rows:
                yield LedgerRow(seq, at, event, json.loads(body) if body else None, bh, ch)
            after = rows[-1][0]

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
