"""The consent ledger's hash chain (SPEC §7): pure functions shared by both back ends."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

GENESIS = "0" * 64  # the "previous chain hash" of the first event


@dataclass(frozen=True)
class LedgerRow:
    """One stored ledger row; `body` is None once retention has redacted it."""

    seq: int
    at: str
    event: str
    body: dict | None
    body_hash: str
    chain_hash: str


def timestamp(moment: datetime) -> str:
    """The one spelling of a time everywhere: UTC, microseconds always present, so that
    stored times compare correctly as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: object) -> str:
    """The one JSON spelling hashed everywhere: sorted keys, no spaces, UTF-8."""
    return _CANONICAL.encode(value)


def subject_key(secret: str, phone: str) -> str:
    """The pseudonymous number key: HMAC-SHA256 of the E.164 number under the secret."""
    return hmac.digest(secret.encode(), phone.encode(), "sha256").hex()


def header(seq: int, at: str, event: str) -> dict:
    """A row's header: the part that survives redaction."""
    return {"seq": seq, "at": at, "event": event}


def body_hash(body: dict) -> str:
    """SHA-256 of the body's canonical JSON."""
    return _sha256(canonical_json(body))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def chain_hash(previous: str, row_header: dict, row_body_hash: str) -> str:
    """SHA-256 over the previous chain hash, the header's canonical JSON and the body hash."""
    return _sha256(f"{previous}\n{canonical_json(row_header)}\n{row_body_hash}")


def seal(previous: str, seq: int, at: str, event: str, body: dict) -> LedgerRow:
    """Build the next row of the chain from the previous chain hash."""
    return seal_json(previous, seq, at, event, body, canonical_json(body))


def seal_json(previous: str, seq: int, at: str, event: str, body: dict, text: str) -> LedgerRow:
    """`seal`, for a body whose canonical JSON `text` the caller has already made (and
    stores): the body is serialised once per event."""
    digest = _sha256(text)
    return LedgerRow(
        seq, at, event, body, digest, chain_hash(previous, header(seq, at, event), digest)
    )


@dataclass(frozen=True)
class Verification:
    """The result of recomputing the chain: ok, or the first bad event and why."""

    ok: bool
    events: int
    redacted: int
    head: str  # SEQ:HASH of the last event
    problem: str = ""


def verify(
    rows: Iterable[LedgerRow], redactable_before: str | None = None, head_seen: str | None = None
) -> Verification:
    """Recompute every header and body hash and the chain; check an earlier head is still in it.

    `redactable_before` is the ISO time before which redaction is allowed (the evidence
    retention): a redacted row younger than that is a failure.
    """
    previous, count, redacted, seen = GENESIS, 0, 0, head_seen is None
    for row in rows:
        count += 1
        if row.seq != count:
            return _failed(
                count, redacted, f"event {count}: out of sequence (found event {row.seq})"
            )
        if row.body is None:
            redacted += 1
            if redactable_before is not None and row.at > redactable_before:
                return _failed(
                    count, redacted, f"event {row.seq}: redacted before its retention ended"
                )
        elif body_hash(row.body) != row.body_hash or row.body.get("event") != row.event:
            return _failed(count, redacted, f"event {row.seq}: body does not match its hash")
        if (
            chain_hash(previous, header(row.seq, row.at, row.event), row.body_hash)
            != row.chain_hash
        ):
            return _failed(count, redacted, f"event {row.seq}: chain hash does not match")
        previous = row.chain_hash
        seen = seen or f"{row.seq}:{row.chain_hash}" == head_seen
    head = f"{count}:{previous}"
    if not seen:
        return _failed(
            count, redacted, f"recorded head {head_seen} is not in the chain (events cut?)"
        )
    return Verification(True, count, redacted, head)


def _failed(count: int, redacted: int, problem: str) -> Verification:
    return Verification(False, count, redacted, "", problem)
