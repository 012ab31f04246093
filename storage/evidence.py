"""The consent evidence packet for one number (SPEC §7): the ledger joined with the message log."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from datetime import datetime

from flows.contact import Contact
from storage import StoredMessage
from storage.ledger import LedgerRow, Verification, timestamp


def build_packet(
    phone: str,
    contact: Contact,
    rows: list[LedgerRow],
    messages: list[StoredMessage],
    verification: Verification,
    generated_at: datetime,
    *,
    key: str,
) -> dict:
    """The packet for `phone` (whose ledger key is `key`) as plain, JSON-ready values."""
    # Only this number's readable rows, so passing the whole ledger is safe too: a redacted
    # row no longer says whose it was, and its header alone proves nothing about consent.
    rows = [row for row in rows if row.body and row.body["subject"] == key]
    inbound = {m.sid: m for m in messages if m.direction == "in"}
    replies: dict[str, list[StoredMessage]] = {}
    for message in messages:
        if message.reply_to:
            replies.setdefault(message.reply_to, []).append(message)
    hashed: dict[str, str | None] = {}
    caused: dict[str, list[int]] = {}
    for row in rows:
        if row.body["sid"]:
            hashed[row.body["sid"]] = row.body["evidence"].get("inbound_sha256")
            caused.setdefault(row.body["sid"], []).append(row.seq)
    return {
        "number": phone,
        "generated_at": _utc(generated_at),
        "subject_key": key,
        "state": {
            s.flow: {"state": s.state, "since": _utc(s.since)} for s in contact.subscriptions
        },
        "opted_out": contact.opted_out,
        "chain": asdict(verification),
        # The consent events are the spine of the story...
        "story": [
            _entry(row, inbound.get(row.body["sid"]), replies.get(row.body["sid"], []))
            for row in rows
        ],
        # ...and every message of the number follows, HELP and free text included, so the
        # packet shows that nothing between the events was left out.
        "messages": [
            _message(m, hashed.get(m.sid) if m.direction == "in" else None, caused)
            for m in messages
        ],
        "files": _files(rows),
    }


def _entry(row: LedgerRow, message: StoredMessage | None, replies: list[StoredMessage]) -> dict:
    """One consent event with the message that caused it and the texts sent back."""
    body = row.body
    evidence = dict(body["evidence"])
    return {
        "seq": row.seq,
        "time": _utc(row.at),
        "event": row.event,
        "flow": body["flow"],
        "source": body["source"],
        "sid": body["sid"],
        "evidence": evidence,  # all of it, web fields included: nothing is picked out
        "inbound": _inbound(body["sid"], message, evidence.get("inbound_sha256")),
        "replies": [
            {"time": _utc(m.created_at), "text": m.body, "flow": m.flow, "status": m.status}
            for m in replies
        ],
    }


def _inbound(sid: str | None, message: StoredMessage | None, expected: str | None) -> dict | None:
    """The triggering message, or why its text is missing; None for events with no message."""
    if sid is None:
        return None  # web, import and admin events are not caused by an inbound text
    if message is None:
        # Erasure (GDPR art. 17) deletes the messages; the ledger row still proves the event.
        return {
            "sid": sid,
            "time": None,
            "body": None,
            "body_state": "absent",
            "matches_ledger": None,
        }
    return {"sid": sid, "time": _utc(message.created_at), **_body(message, expected)}


def _message(message: StoredMessage, expected: str | None, caused: dict[str, list[int]]) -> dict:
    """One row of the message log, with the ledger events it caused (none for HELP, chat)."""
    return {
        "time": _utc(message.created_at),
        "direction": message.direction,
        "sid": message.sid,
        **_body(message, expected),
        "flow": message.flow,
        "status": message.status,
        "error_code": message.error_code,
        "reply_to": message.reply_to,
        "events": caused.get(message.sid, []) if message.sid else [],
    }


def _body(message: StoredMessage, expected: str | None) -> dict:
    """The stored text, and whether it is the text whose SHA-256 the ledger recorded."""
    if expected and message.body == "sha256:" + expected:
        # Retention keeps only the SHA-256 of an old body (SPEC §7): the text is gone, but
        # the kept hash still ties this message to the ledger event.
        return {"body": None, "body_state": "purged", "matches_ledger": True}
    digest = hashlib.sha256(message.body.encode("utf-8", "replace")).hexdigest()
    matches = None if expected is None else digest == expected
    return {"body": message.body, "body_state": "held", "matches_ledger": matches}


def _files(rows: list[LedgerRow]) -> list[dict]:
    """Each flow and gateway file version in force at the events, with the events it decided."""
    files: dict[tuple[str, str | None, str], list[int]] = {}
    for row in rows:
        evidence = row.body["evidence"]
        for kind, flow, digest in (
            ("flow", row.body["flow"], evidence.get("flow_hash")),
            ("gateway", None, evidence.get("gateway_hash")),
        ):
            if digest:
                files.setdefault((kind, flow, digest), []).append(row.seq)
    return [
        {"kind": kind, "flow": flow, "sha256": digest, "events": seqs}
        for (kind, flow, digest), seqs in files.items()
    ]


def _utc(moment: datetime | str) -> str:
    """A stored time in the one spelling used everywhere (UTC, microseconds)."""
    return timestamp(datetime.fromisoformat(moment) if isinstance(moment, str) else moment)
