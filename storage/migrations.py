"""The SQLite schema, as sqlite-utils migrations: small named steps, applied once each."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("smsbot")


@migrations()
def create_contacts(db: Database) -> None:
    """One row per phone number that has texted or been opted in."""
    db["contacts"].create(
        {
            "phone": str,
            "subject_key": str,
            "opted_out": int,
            "restorable": str,  # JSON list of flow ids the last opt-out ended
            "created_at": str,
            "updated_at": str,
        },
        pk="phone",
        not_null={"subject_key", "opted_out", "restorable", "created_at", "updated_at"},
    )
    db["contacts"].create_index(["subject_key"], unique=True)


@migrations()
def create_subscriptions(db: Database) -> None:
    """A number's state in each flow."""
    db["subscriptions"].create(
        {
            "phone": str,
            "flow": str,
            "state": str,
            "since": str,
            "question": int,
            "updated_at": str,
        },
        pk=("phone", "flow"),
        not_null={"state", "since", "updated_at"},
        foreign_keys=[("phone", "contacts", "phone")],
    )
    db["subscriptions"].create_index(["flow", "state"])


@migrations()
def create_profile(db: Database) -> None:
    """Answers to question steps, one row per number and field."""
    db["profile"].create(
        {"phone": str, "field": str, "value": str, "updated_at": str},
        pk=("phone", "field"),
        not_null={"value", "updated_at"},
        foreign_keys=[("phone", "contacts", "phone")],
    )


@migrations()
def create_messages(db: Database) -> None:
    """Every inbound and outbound message; replies point at the inbound sid they answer."""
    db["messages"].create(
        {
            "id": int,
            "sid": str,
            "direction": str,  # in | out
            "phone": str,
            "body": str,
            "flow": str,
            "created_at": str,
            "status": str,
            "error_code": str,
            "reply_to": str,
        },
        pk="id",
        not_null={"direction", "phone", "body", "created_at", "status"},
    )
    # Dedupe (SPEC §5 rule 1): one inbound row per MessageSid, enforced by the database too.
    db.execute("CREATE UNIQUE INDEX messages_inbound_sid ON messages(sid) WHERE direction = 'in'")
    db["messages"].create_index(["reply_to"])
    db["messages"].create_index(["phone", "id"])


@migrations()
def create_ledger(db: Database) -> None:
    """The append-only consent ledger (SPEC §7)."""
    db["ledger"].create(
        {
            "seq": int,
            "at": str,
            "event": str,
            "subject_key": str,  # cleared with the body on redaction
            "body": str,  # canonical JSON; NULL once redacted
            "body_hash": str,
            "chain_hash": str,
        },
        pk="seq",
        not_null={"at", "event", "body_hash", "chain_hash"},
    )
    db["ledger"].create_index(["subject_key"])


@migrations()
def create_suppressions(db: Database) -> None:
    """Number keys that imports and the web API must refuse: erased numbers (GDPR art. 17)."""
    db["suppressions"].create(
        {"subject_key": str, "reason": str, "created_at": str},
        pk="subject_key",
        not_null={"reason", "created_at"},
    )


@migrations()
def add_messages_purged_at(db: Database) -> None:
    """When retention replaced a message body by its SHA-256."""
    db["messages"].add_column("purged_at", str)
    db["messages"].create_index(["created_at"])


@migrations()
def create_outbox(db: Database) -> None:
    """Messages to send outside a TwiML reply (SPEC §8): broadcasts and web opt-in prompts."""
    db["outbox"].create(
        {
            "id": int,
            "phone": str,
            "flow": str,
            "kind": str,  # broadcast | prompt
            "body": str,
            "not_before": str,
            "created_at": str,
            "state": str,  # queued | sending | sent | failed | cancelled
            "attempts": int,
            "claimed_by": str,
            "claimed_at": str,
            "sid": str,
            "error_code": str,
            "reason": str,
            "finished_at": str,
        },
        pk="id",
        not_null={"phone", "kind", "body", "not_before", "created_at", "state", "attempts"},
    )
    db["outbox"].create_index(["state", "not_before"])
    db["outbox"].create_index(["phone", "flow", "kind", "finished_at"])
    db["outbox"].create_index(["sid"])


@migrations()
def add_subscriptions_changed(db: Database) -> None:
    """A per-number change counter: the order subscriptions changed, on any back end."""
    db["subscriptions"].add_column("changed", int, not_null_default=0)


@migrations()
def drop_unread_indexes(db: Database) -> None:
    """Indexes no query reads, which every inbound message paid to write: a replay finds
    its replies through the number's messages, and contacts are never looked up by key."""
    db.execute("DROP INDEX idx_messages_reply_to")
    db.execute("DROP INDEX idx_contacts_subject_key")


@migrations()
def cluster_by_number(db: Database) -> None:
    """contacts, subscriptions and profile kept in primary-key order (WITHOUT ROWID): a
    number's rows are one b-tree lookup, not an index and then the table, on every message.

    Rebuilt the way SQLite documents for schema changes: new tables whose foreign keys
    point at the new contacts, data copied, old tables dropped children first, renames
    (which carry the foreign keys over to the final names)."""
    for statement in (
        "CREATE TABLE contacts_new (phone TEXT NOT NULL PRIMARY KEY,"
        " subject_key TEXT NOT NULL, opted_out INTEGER NOT NULL, restorable TEXT NOT NULL,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL) WITHOUT ROWID",
        "CREATE TABLE subscriptions_new (phone TEXT NOT NULL REFERENCES contacts_new (phone),"
        " flow TEXT NOT NULL, state TEXT NOT NULL, since TEXT NOT NULL, question INTEGER,"
        " updated_at TEXT NOT NULL, changed INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY (phone, flow)) WITHOUT ROWID",
        "CREATE TABLE profile_new (phone TEXT NOT NULL REFERENCES contacts_new (phone),"
        " field TEXT NOT NULL, value TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " PRIMARY KEY (phone, field)) WITHOUT ROWID",
        "INSERT INTO contacts_new SELECT phone, subject_key, opted_out, restorable,"
        " created_at, updated_at FROM contacts",
        "INSERT INTO subscriptions_new SELECT phone, flow, state, since, question, updated_at,"
        " changed FROM subscriptions",
        "INSERT INTO profile_new SELECT phone, field, value, updated_at FROM profile",
        "DROP TABLE profile",
        "DROP TABLE subscriptions",
        "DROP TABLE contacts",
        "ALTER TABLE contacts_new RENAME TO contacts",
        "ALTER TABLE subscriptions_new RENAME TO subscriptions",
        "ALTER TABLE profile_new RENAME TO profile",
        "CREATE INDEX idx_subscriptions_flow_state ON subscriptions (flow, state)",
    ):
        db.execute(statement)
