"""bench/prefill.py at tiny size, so the scale benchmark's bulk load cannot rot: its rows
are what smsbot itself stores, and its chain verifies."""

from __future__ import annotations

from pathlib import Path

from bench.prefill import fill, phone
from storage import open_store
from storage.ledger import verify


def test_prefilled_contacts_are_subscribers_with_a_verifiable_chain(tmp_path: Path) -> None:
    # Regression: the recorder read every table ORDER BY rowid, which WITHOUT ROWID
    # tables (contacts, subscriptions, profile) don't have.
    filled = fill(tmp_path / "prefilled.db", 30, "secret")
    assert filled.contacts == 30
    store = open_store(str(tmp_path / "prefilled.db"), "secret")
    try:
        for n in (0, 29):
            contact = store.contact(phone(n))
            assert contact.subscription("vip").state == "subscribed", n
            assert [m.direction for m in store.messages(phone(n))] == ["in", "out"] * 2 + ["out"]
        result = verify(store.iter_ledger())
        assert result.ok, result.problem
        assert result.events == 60
    finally:
        store.close()
