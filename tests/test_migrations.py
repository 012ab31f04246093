"""Upgrading a database made by an earlier release: the data survives each new migration.

The tests build the schema as it stood before a migration, fill it through the store (its
per-message SQL reads and writes the same columns on both schemas), migrate, and read back.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlite_utils import Database

from flows.engine import handle
from flows.loader import load_flows
from flows.outcome import Inbound
from storage import open_store
from storage.migrations import migrations
from tests.conftest import PHONE, SHIPPED_FLOWS

FLOWS = load_flows(SHIPPED_FLOWS)
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
CONVERSATION = ("VIP", "YES", "90210", "HELP")


def text(store, sid: str, body: str):
    message = Inbound(sid, PHONE, body)
    return store.process(message, lambda contact: handle(message, contact, FLOWS, NOW), NOW)


@pytest.fixture
def old_database(tmp_path: Path) -> Path:
    """A SQLite file at the schema before `drop_unread_indexes`, holding one conversation."""
    path = tmp_path / "old.db"
    migrations.apply(Database(path), stop_before="drop_unread_indexes")
    store = open_store(str(path), "secret")
    for n, body in enumerate(CONVERSATION):
        text(store, f"SM{n:032d}", body)
    store.close()
    return path


def schema(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"))


def test_upgrading_keeps_every_number_subscription_answer_and_reply(old_database) -> None:
    store = open_store(str(old_database), "secret")
    before = (store.contact(PHONE), store.profile(PHONE), store.messages(PHONE), store.ledger())
    store.migrate()
    assert (store.contact(PHONE), store.profile(PHONE), store.messages(PHONE)) == before[:3]
    assert store.ledger() == before[3]
    assert store.contact(PHONE).subscription("vip").state == "subscribed"
    assert store.profile(PHONE) == {"zip": "90210"}
    # A Twilio retry of an old message is still answered with its original replies.
    again = text(store, f"SM{1:032d}", "YES")
    assert again.duplicate and again.replies == tuple(
        m.body for m in before[2] if m.reply_to == f"SM{1:032d}"
    )
    # And the upgraded tables take new messages.
    assert text(store, "SM" + "9" * 32, "STOP").replies == (FLOWS.gateway.stop,)
    store.close()


def test_upgraded_tables_are_clustered_by_number_and_keep_their_foreign_keys(
    old_database,
) -> None:
    store = open_store(str(old_database), "secret")
    store.migrate()
    store.close()
    tables = schema(old_database)
    for table in ("contacts", "subscriptions", "profile"):
        assert tables[table].endswith("WITHOUT ROWID"), table
    assert "idx_subscriptions_flow_state" in tables
    assert "idx_messages_reply_to" not in tables
    assert "idx_contacts_subject_key" not in tables
    assert not any(name.endswith("_new") for name in tables)
    with sqlite3.connect(old_database) as conn:
        conn.execute("PRAGMA foreign_keys=ON")
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            conn.execute(
                "INSERT INTO subscriptions (phone, flow, state, since, updated_at)"
                " VALUES ('+15555550999', 'vip', 'pending', 'x', 'x')"
            )
