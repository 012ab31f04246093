"""The consent ledger's hash chain (SPEC §7): pure functions shared by both back ends."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

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


def canonical_json(value: object) -> str:
    """The one JSON spelling hashed everywhere: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def subject_key(secret: str, phone: str) -> str:
    """The pseudonymous number key: HMAC-SHA256 of the E.164 number under the secret."""
    return hmac.new(secret.encode(), phone.encode(), hashlib.sha256).hexdigest()


def header(seq: int, at: str, event: str) -> dict:
    """A row's header: the part that survives redaction."""
    return {"seq": seq, "at": at, "event": event}


def body_hash(body: dict) -> str:
    """SHA-256 of the body's canonical JSON."""
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def chain_hash(previous: str, row_header: dict, row_body_hash: str) -> str:
    """SHA-256 over the previous chain hash, the header's canonical JSON and the body hash."""
    material = f"{previous}\n{canonical_json(row_header)}\n{row_body_hash}"
    return hashlib.sha256(material.encode()).hexdigest()


def seal(previous: str, seq: int, at: str, event: str, body: dict) -> LedgerRow:
    """Build the next row of the chain from the previous chain hash."""
    digest = body_hash(body)
    return LedgerRow(
        seq, at, event, body, digest, chain_hash(previous, header(seq, at, event), digest)
    )
