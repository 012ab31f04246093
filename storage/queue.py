"""The outbox, shared by both back ends (SPEC §8): queue, claim before sending, settle after."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from flows.contact import SUBSCRIBED, Contact
from flows.outcome import Outcome
from storage import OutboxRow
from storage.ledger import subject_key, timestamp

_COLUMNS = "id, phone, flow, kind, body, not_before, state, attempts, claimed_at, sid"
_LONGEST_CAP_WINDOW = timedelta(days=31)  # the widest `frequency` window (N/month = 30 days)
_MAX_EXAMINED = 500  # due rows one claim looks at, at most

# decide(row, contact, suppressed, recent broadcast send times) -> (action, until, reason)
Decide = Callable[[OutboxRow, Contact, bool, list[datetime]], tuple[str, datetime | None, str]]


def _row(values: tuple) -> OutboxRow:
    id_, phone, flow, kind, body, not_before, state, attempts, claimed_at, sid = values
    return OutboxRow(
        id_,
        phone,
        flow,
        kind,
        body,
        datetime.fromisoformat(not_before),
        state,
        attempts,
        datetime.fromisoformat(claimed_at) if claimed_at else None,
        sid,
    )


def _enqueue(conn, phone: str, flow: str | None, kind: str, body: str, not_before: str, at: str):
    conn.execute(
        "INSERT INTO outbox (phone, flow, kind, body, not_before, created_at, state, attempts)"
        " VALUES (?, ?, ?, ?, ?, ?, 'queued', 0)",
        (phone, flow, kind, body, not_before, at),
    )


class SQLOutbox:
    """Mixed into SQLStore: everything smsbot sends outside a TwiML reply."""

    def queue_broadcast(
        self, flow: str, body: str, not_before: datetime, now: datetime
    ) -> tuple[int, Counter]:
        """One row per current subscriber of `flow`; returns (queued, left out by reason)."""
        left_out: Counter = Counter()
        with self._write() as conn:
            rows = conn.execute(
                "SELECT s.phone, c.opted_out, p.subject_key IS NOT NULL FROM subscriptions s"
                " JOIN contacts c ON c.phone = s.phone"
                " LEFT JOIN suppressions p ON p.subject_key = c.subject_key"
                " WHERE s.flow = ? AND s.state = ?",
                (flow, SUBSCRIBED),
            ).fetchall()
            queued = []
            for phone, opted_out, suppressed in rows:
                if opted_out:
                    left_out["opted out"] += 1
                elif suppressed:
                    left_out["suppressed"] += 1
                else:
                    queued.append(phone)
            at, start = timestamp(now), timestamp(not_before)
            conn.cursor().executemany(
                "INSERT INTO outbox (phone, flow, kind, body, not_before, created_at, state,"
                " attempts) VALUES (?, ?, 'broadcast', ?, ?, ?, 'queued', 0)",
                [(phone, flow, body, start, at) for phone in queued],
            )
        return len(queued), left_out

    def claim(
        self, now: datetime, worker: str, limit: int, decide: Decide
    ) -> tuple[list[OutboxRow], int]:
        """Re-check due rows and claim up to `limit` to send; hold or cancel the others.
        A claimed row is `sending` before any API call, so a crash can't send it twice.
        Returns the claimed rows and how many rows were examined (held ones included)."""
        at, claimed, examined = timestamp(now), [], 0
        with self._write() as conn:
            # Held and cancelled rows leave the due set, so each pass sees new rows; the
            # bound keeps one transaction (and SQLite's write lock) short.
            while len(claimed) < limit and examined < _MAX_EXAMINED:
                due = conn.execute(
                    f"SELECT {_COLUMNS} FROM outbox WHERE state = 'queued' AND not_before <= ?"
                    " ORDER BY not_before, id LIMIT ?" + self.SKIP_LOCKED,
                    (at, limit - len(claimed)),
                ).fetchall()
                if not due:
                    break
                for row in map(_row, due):
                    examined += 1
                    if self._settle_due(conn, row, worker, at, now, decide):
                        claimed.append(row)
        return claimed, examined

    def _settle_due(self, conn, row: OutboxRow, worker: str, at: str, now, decide) -> bool:
        """Claim, hold or cancel one due row; True when it was claimed to send."""
        contact = self._load(conn, row.phone)[0]
        suppressed = self.suppressed(subject_key(self.secret_key, row.phone), conn)
        # Broadcasts in flight count toward the cap too: several due rows of one number
        # must not all pass the check before any of them is sent.
        recent = [
            datetime.fromisoformat(t)
            for (t,) in conn.execute(
                "SELECT coalesce(finished_at, claimed_at) FROM outbox WHERE phone = ?"
                " AND flow = ? AND kind = 'broadcast' AND (state = 'sending'"
                " OR (state = 'sent' AND finished_at > ?))",
                (row.phone, row.flow, timestamp(now - _LONGEST_CAP_WINDOW)),
            )
        ]
        action, until, reason = decide(row, contact, suppressed, recent)
        if action == "send":
            conn.execute(
                "UPDATE outbox SET state = 'sending', claimed_by = ?, claimed_at = ?,"
                " attempts = attempts + 1 WHERE id = ?",
                (worker, at, row.id),
            )
            return True
        if action == "hold":
            conn.execute(
                "UPDATE outbox SET not_before = ?, reason = ? WHERE id = ?",
                (timestamp(until), reason, row.id),
            )
        else:
            conn.execute(
                "UPDATE outbox SET state = 'cancelled', reason = ?, finished_at = ? WHERE id = ?",
                (reason, at, row.id),
            )
        return False

    def mark_sent(self, row: OutboxRow, sid: str, status: str, now: datetime) -> None:
        """Record a send Twilio accepted, in the outbox and the message log."""
        at = timestamp(now)
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET state = 'sent', sid = ?, finished_at = ? WHERE id = ?",
                (sid, at, row.id),
            )
            conn.execute(
                "INSERT INTO messages (sid, direction, phone, body, flow, created_at, status)"
                " VALUES (?, 'out', ?, ?, ?, ?, ?)",
                (sid, row.phone, row.body, row.flow, at, status),
            )

    def finish(
        self, row: OutboxRow, state: str, code: str | None, reason: str, now: datetime
    ) -> None:
        """Settle a row that will never be sent: `failed` (an error) or `cancelled`."""
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET state = ?, error_code = ?, reason = ?, finished_at = ?"
                " WHERE id = ?",
                (state, code, reason, timestamp(now), row.id),
            )

    def retry(self, row: OutboxRow, at: datetime, code: str, reason: str) -> None:
        """A transient failure: queue the row again for `at`."""
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET state = 'queued', not_before = ?, error_code = ?, reason = ?,"
                " claimed_by = NULL WHERE id = ?",
                (timestamp(at), code, reason, row.id),
            )

    def stale_claims(self, claimed_before: datetime) -> list[OutboxRow]:
        """Rows claimed before `claimed_before` and never settled (a crashed worker, or a
        send whose outcome Twilio couldn't tell yet): to reconcile."""
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE state = 'sending' AND claimed_at <= ?"
            " ORDER BY id",
            (timestamp(claimed_before),),
        )
        return [_row(r) for r in rows]

    def release(self, row: OutboxRow) -> None:
        """Put a claimed row back in the queue: Twilio has no record of sending it."""
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET state = 'queued', claimed_by = NULL WHERE id = ?"
                " AND state = 'sending'",
                (row.id,),
            )

    def outbox(self) -> list[OutboxRow]:
        """Every outbox row, oldest first."""
        rows = self._conn().execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY id")
        return [_row(r) for r in rows]

    def record_status(self, sid: str, status: str, error_code: str | None, now: datetime) -> bool:
        """Twilio's status callback for a sent message; False when the sid is unknown."""
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE messages SET status = ?, error_code = ?"
                " WHERE sid = ? AND direction = 'out'",
                (status, error_code or None, sid),
            ).rowcount
        return bool(changed)

    def change(self, phone: str, decide: Callable[[Contact], Outcome], now: datetime) -> Outcome:
        """Apply a consent change that no inbound message carried (a carrier opt-out)."""
        at, key = timestamp(now), subject_key(self.secret_key, phone)
        with self._write(phone) as conn:
            before, known = self._load(conn, phone)
            outcome = decide(before)
            self._write_state(conn, phone, key, before, known, outcome.contact, at)
            if outcome.events:
                self._append(conn, key, outcome.events, at)
        return outcome

    def request_web(
        self, phone: str, flow: str, decide: Callable[[Contact], Outcome], now: datetime
    ) -> str:
        """A web form's opt-in (SPEC §3): refuse, or record it and queue the prompt.
        Returns pending, subscribed, suppressed, opted_out or too_soon."""
        at, key = timestamp(now), subject_key(self.secret_key, phone)
        with self._write(phone) as conn:
            if self.suppressed(key, conn):
                return "suppressed"
            before, known = self._load(conn, phone)
            if before.opted_out:
                return "opted_out"
            current = before.subscription(flow)
            if current is not None and current.state == SUBSCRIBED:
                return "subscribed"
            # At most one prompt per number and flow a day: a form can't be used to spam.
            recent = conn.execute(
                "SELECT 1 FROM outbox WHERE phone = ? AND flow = ? AND kind = 'prompt'"
                " AND created_at > ?",
                (phone, flow, timestamp(now - timedelta(hours=24))),
            ).fetchone()
            if recent:
                return "too_soon"
            outcome = decide(before)
            self._write_state(conn, phone, key, before, known, outcome.contact, at)
            self._append(conn, key, outcome.events, at)
            for reply in outcome.replies:
                _enqueue(conn, phone, reply.flow, "prompt", reply.text, at, at)
        return "pending"
