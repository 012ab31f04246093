"""Record keeping, shared by both back ends: erasure, export, retention, import (SPEC §7)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from flows.contact import ACTIVE, OPTED_OUT, PENDING, SUBSCRIBED, Subscription
from flows.outcome import ConsentEvent
from storage.ledger import LedgerRow, subject_key, timestamp

IMPORTED, ALREADY, OPTED_OUT_SKIP, SUPPRESSED = "imported", "already", "opted_out", "suppressed"


class SQLRecords:
    """Mixed into SQLStore: the admin operations, each in one write transaction."""

    def ledger_for(self, key: str) -> list[LedgerRow]:
        """The ledger rows of one number key, in sequence order (redacted rows have none)."""
        rows = self._conn().execute(
            "SELECT seq, at, event, body, body_hash, chain_hash FROM ledger"
            " WHERE subject_key = ? ORDER BY seq",
            (key,),
        )
        return [LedgerRow(q, at, e, json.loads(b), bh, ch) for q, at, e, b, bh, ch in rows]

    def suppressed(self, key: str, conn=None) -> bool:
        """True when the number key is on the suppression list (read on `conn`, inside a
        caller's transaction, when given)."""
        found = (
            (conn or self._conn())
            .execute("SELECT 1 FROM suppressions WHERE subject_key = ?", (key,))
            .fetchall()
        )
        return bool(found)

    def export(self, phone: str) -> dict:
        """Everything held about one number (GDPR art. 15 and 20), as plain data."""
        key = subject_key(self.secret_key, phone)
        contact = self.contact(phone)
        return {
            "number": phone,
            "subject_key": key,
            "suppressed": self.suppressed(key),
            "opted_out": contact.opted_out,
            "subscriptions": [
                {"flow": s.flow, "state": s.state, "since": timestamp(s.since)}
                for s in contact.subscriptions
            ],
            "profile": self.profile(phone),
            "messages": [
                {
                    "sid": m.sid,
                    "direction": m.direction,
                    "body": m.body,
                    "flow": m.flow,
                    "time": timestamp(m.created_at),
                    "status": m.status,
                    "reply_to": m.reply_to,
                }
                for m in self.messages(phone)
            ],
            "ledger": [
                {"seq": r.seq, "time": r.at, "event": r.event, "body": r.body}
                for r in self.ledger_for(key)
            ],
        }

    def erase(self, phone: str, event: ConsentEvent, now: datetime) -> dict[str, int]:
        """Delete the number, its messages and profile (GDPR art. 17); keep the pseudonymous
        ledger (art. 17(3)(e)) and put the key on the suppression list. Returns counts."""
        key = subject_key(self.secret_key, phone)
        with self._write(phone) as conn:
            removed = {
                "messages": conn.execute("DELETE FROM messages WHERE phone = ?", (phone,)).rowcount,
                "profile fields": conn.execute(
                    "DELETE FROM profile WHERE phone = ?", (phone,)
                ).rowcount,
                "subscriptions": conn.execute(
                    "DELETE FROM subscriptions WHERE phone = ?", (phone,)
                ).rowcount,
                "outbox messages": conn.execute(
                    "DELETE FROM outbox WHERE phone = ?", (phone,)
                ).rowcount,
                "contact": conn.execute("DELETE FROM contacts WHERE phone = ?", (phone,)).rowcount,
            }
            newly = conn.execute(
                "INSERT INTO suppressions (subject_key, reason, created_at)"
                " VALUES (?, 'erased', ?) ON CONFLICT DO NOTHING",
                (key, timestamp(now)),
            ).rowcount
            if newly or any(removed.values()):  # a rerun to finish the checkpoint adds nothing
                self._append(conn, key, (event,), timestamp(now))
        self._after_erase()
        return removed

    def purge_bodies(self, before: datetime, now: datetime, dry_run: bool = False) -> int:
        """Replace message bodies older than `before` by their SHA-256 (data minimisation)."""
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id, body FROM messages WHERE created_at < ? AND purged_at IS NULL",
                (timestamp(before),),
            ).fetchall()
            if not dry_run:
                conn.cursor().executemany(
                    "UPDATE messages SET body = ?, purged_at = ? WHERE id = ?",
                    [
                        ("sha256:" + hashlib.sha256(body.encode()).hexdigest(), timestamp(now), id_)
                        for id_, body in rows
                    ],
                )
        return len(rows)

    def expire_pending(
        self, windows: Mapping[str, timedelta], now: datetime, dry_run: bool = False
    ) -> int:
        """Close pending opt-ins past their flow's confirm_within as `expired` (source admin)."""
        with self._write() as conn:
            stale = [
                (phone, key, flow, since)
                for phone, key, flow, since in conn.execute(
                    "SELECT s.phone, c.subject_key, s.flow, s.since FROM subscriptions s"
                    " JOIN contacts c ON c.phone = s.phone WHERE s.state = ?",
                    (PENDING,),
                )
                if now - datetime.fromisoformat(since) > windows.get(flow, timedelta(hours=24))
            ]
            for phone, key, flow, since in stale if not dry_run else ():
                conn.execute(
                    "UPDATE subscriptions SET state = 'expired', since = ?, updated_at = ?"
                    " WHERE phone = ? AND flow = ?",
                    (timestamp(now), timestamp(now), phone, flow),
                )
                evidence = {"reason": "confirm_within passed", "pending_since": since}
                self._append(
                    conn,
                    key,
                    (ConsentEvent("expired", flow, "admin", None, evidence),),
                    timestamp(now),
                )
        return len(stale)

    def redact(self, before: datetime, dry_run: bool = False) -> int:
        """Redact the ledger rows of numbers with no active consent and no event since
        `before` (GDPR art. 5(1)(e)): the body goes, header and hashes stay."""
        active = ", ".join("?" * len(ACTIVE))
        with self._write() as conn:
            keys = [
                key
                for (key,) in conn.execute(
                    "SELECT subject_key FROM ledger WHERE subject_key IS NOT NULL"
                    " GROUP BY subject_key HAVING max(at) < ? AND subject_key NOT IN ("
                    "  SELECT c.subject_key FROM contacts c JOIN subscriptions s"
                    f"  ON s.phone = c.phone WHERE s.state IN ({active}))",
                    (timestamp(before), *ACTIVE),
                )
            ]
            count = 0
            for key in keys:
                if dry_run:
                    count += conn.execute(
                        "SELECT count(*) FROM ledger WHERE subject_key = ?", (key,)
                    ).fetchone()[0]
                else:
                    count += conn.execute(
                        "UPDATE ledger SET body = NULL, subject_key = NULL WHERE subject_key = ?",
                        (key,),
                    ).rowcount
        return count

    def import_subscriber(
        self, phone: str, flow: str, consented_at: datetime, event: ConsentEvent, now: datetime
    ) -> str:
        """Subscribe one number with its prior consent, unless it is suppressed, opted out
        (of the number or this flow) or already in the flow. Returns what happened."""
        key = subject_key(self.secret_key, phone)
        with self._write(phone) as conn:
            if self.suppressed(key, conn):
                return SUPPRESSED
            before, known = self._load(conn, phone)
            current = before.subscription(flow)
            if before.opted_out or (current is not None and current.state == OPTED_OUT):
                return OPTED_OUT_SKIP
            if current is not None and current.state in ACTIVE:
                return ALREADY
            after = before.with_subscription(Subscription(flow, SUBSCRIBED, consented_at))
            self._write_state(conn, phone, key, before, known, after, timestamp(now))
            self._append(conn, key, (replace(event, flow=flow),), timestamp(now))
        return IMPORTED
