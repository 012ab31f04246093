"""The engine's values: the message it reads, and the outcome it returns to be saved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flows.contact import Contact


@dataclass(frozen=True)
class Inbound:
    """What asks the engine to act: an inbound SMS (the usual case), a web form's opt-in
    request or a carrier's opt-out report; `source` says which (SPEC §7's sources)."""

    sid: str | None
    phone: str  # E.164
    body: str
    opt_out_type: str = ""  # Twilio Advanced Opt-Out's OptOutType: STOP, START or HELP
    signature_verified: bool = True
    source: str = "sms"  # sms | web | carrier
    context: Mapping[str, object] = field(default_factory=dict)  # web: ip, user agent, ...


@dataclass(frozen=True)
class Reply:
    """One text to send back, and the flow it speaks for (None: the brand-wide texts)."""

    text: str
    flow: str | None = None


@dataclass(frozen=True)
class ConsentEvent:
    """One ledger event to append (SPEC §7): never a phone number or a message body."""

    event: str
    flow: str | None
    source: str
    sid: str | None
    evidence: Mapping[str, object]


@dataclass(frozen=True)
class Outcome:
    """Everything handling a message decided; the caller saves it in one transaction."""

    rule: str  # which rule of SPEC §5 answered
    contact: Contact
    replies: tuple[Reply, ...] = ()
    events: tuple[ConsentEvent, ...] = ()
    profile: tuple[tuple[str, str], ...] = ()  # (field, value) answers to store
    flow: str | None = None  # the flow the inbound message belongs to, for the message log
