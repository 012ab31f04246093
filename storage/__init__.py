"""Storage: one small interface, speaking in values, with a SQLite and a PostgreSQL back end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from flows.contact import Contact
from flows.outcome import ConsentEvent, Inbound, Outcome
from storage.ledger import LedgerRow


class StoreBusy(Exception):
    """The database stayed locked past the busy timeout; the caller may retry."""


class StoreUnavailable(Exception):
    """The database can't be reached (a bad URL, a server down); the message says which."""


@dataclass(frozen=True)
class Processed:
    """What handling an inbound message produced: the reply texts, and whether it was a replay."""

    replies: tuple[str, ...]
    duplicate: bool = False


@dataclass(frozen=True)
class StoredMessage:
    """One row of the message log."""

    id: int
    sid: str | None
    direction: str
    phone: str
    body: str
    flow: str | None
    created_at: datetime
    status: str
    error_code: str | None
    reply_to: str | None


@dataclass(frozen=True)
class OutboxRow:
    """One message waiting in (or gone from) the outbox."""

    id: int
    phone: str
    flow: str | None
    kind: str  # broadcast | prompt
    body: str
    not_before: datetime
    state: str
    attempts: int
    claimed_at: datetime | None = None
    sid: str | None = None


class Store(Protocol):
    """What the app needs from a database."""

    def migrate(self) -> None:
        """Create or upgrade the schema."""

    def ping(self) -> bool:
        """True when the database answers."""

    def process(
        self, message: Inbound, decide: Callable[[Contact], Outcome], now: datetime
    ) -> Processed:
        """Dedupe, load, decide, save and commit one inbound message, one number at a time."""

    def log_unroutable(self, sid: str, sender: str, body: str, now: datetime) -> None:
        """Store a message from a sender that is not a phone number."""

    def contact(self, phone: str) -> Contact:
        """The number's consent state (a fresh Contact if never seen)."""

    def messages(self, phone: str) -> list[StoredMessage]:
        """The number's messages, oldest first."""

    def profile(self, phone: str) -> dict[str, str]:
        """The number's question answers."""

    def ledger(self) -> list[LedgerRow]:
        """Every ledger row, in sequence order."""

    def iter_ledger(self, page: int = 10_000) -> Iterator[LedgerRow]:
        """Every ledger row in sequence order, a page at a time."""

    def ledger_for(self, key: str) -> list[LedgerRow]:
        """The ledger rows of one number key, in sequence order."""

    def suppressed(self, key: str) -> bool:
        """True when the number key is on the suppression list."""

    def export(self, phone: str) -> dict:
        """Everything held about one number, as plain data."""

    def erase(self, phone: str, event: ConsentEvent, now: datetime) -> dict[str, int]:
        """Delete the number's personal data, keep its ledger, suppress its key."""

    def purge_bodies(self, before: datetime, now: datetime, dry_run: bool = False) -> int:
        """Replace message bodies older than `before` by their SHA-256."""

    def expire_pending(
        self, windows: Mapping[str, timedelta], now: datetime, dry_run: bool = False
    ) -> int:
        """Close pending opt-ins past their flow's window as `expired`."""

    def redact(self, before: datetime, dry_run: bool = False) -> int:
        """Redact the ledger rows of ended consents with no event since `before`."""

    def import_subscriber(
        self, phone: str, flow: str, consented_at: datetime, event: ConsentEvent, now: datetime
    ) -> str:
        """Subscribe one number with prior consent unless suppressed, opted out or already in."""

    def queue_broadcast(
        self, flow: str, body: str, not_before: datetime, now: datetime
    ) -> tuple[int, Counter]:
        """One outbox row per current subscriber; (queued, left out by reason)."""

    def claim(
        self, now: datetime, worker: str, limit: int, decide: Callable
    ) -> tuple[list[OutboxRow], int]:
        """Claim up to `limit` due rows to send, holding or cancelling others."""

    def mark_sent(self, row: OutboxRow, sid: str, status: str, now: datetime) -> None:
        """Record a send Twilio accepted."""

    def finish(
        self, row: OutboxRow, state: str, code: str | None, reason: str, now: datetime
    ) -> None:
        """Settle a row that will never be sent."""

    def retry(self, row: OutboxRow, at: datetime, code: str, reason: str) -> None:
        """Queue a row again after a transient failure."""

    def stale_claims(self, claimed_before: datetime) -> list[OutboxRow]:
        """Claimed rows never settled, to reconcile."""

    def release(self, row: OutboxRow) -> None:
        """Put a claimed row back in the queue."""

    def record_status(self, sid: str, status: str, error_code: str | None, now: datetime) -> bool:
        """Record Twilio's status callback on a sent message."""

    def change(self, phone: str, decide: Callable[[Contact], Outcome], now: datetime) -> Outcome:
        """Apply a consent change no inbound message carried."""

    def request_web(
        self, phone: str, flow: str, decide: Callable[[Contact], Outcome], now: datetime
    ) -> str:
        """Record a web opt-in and queue its prompt, or say why not."""

    def close(self) -> None:
        """Release this process's connections."""


def open_store(
    database: str, secret_key: str, busy_timeout: float = 5.0, url: str | None = None
) -> Store:
    """The back end for the settings: PostgreSQL for a postgres:// URL, else a SQLite file."""
    if url and url.startswith(("postgres://", "postgresql://")):
        from storage.postgres import PostgresStore

        return PostgresStore(url, secret_key, busy_timeout)
    from storage.sqlite import SQLiteStore

    return SQLiteStore(database, secret_key, busy_timeout)
