"""Whether an outbox message may go now (SPEC §8): re-checked just before each send."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from flows.contact import PENDING, SUBSCRIBED, Contact
from flows.model import Flow
from flows.schedule import QuietHours, cap_until, quiet_until

SEND, HOLD, CANCEL = "send", "hold", "cancel"


@dataclass(frozen=True)
class Verdict:
    """send now; hold until a time; or cancel for a reason."""

    action: str
    until: datetime | None = None
    reason: str = ""


def verdict(
    kind: str,
    flow: Flow | None,
    contact: Contact,
    suppressed: bool,
    recent_sends: Sequence[datetime],
    now: datetime,
    quiet: QuietHours,
) -> Verdict:
    """Decide one outbox row: `recent_sends` are this number's sent broadcasts of the flow."""
    # FCC 24-18: after an opt-out nothing more goes out, whatever was queued before it.
    if contact.opted_out:
        return Verdict(CANCEL, reason="opted out")
    sub = contact.subscription(flow.id) if flow else None
    if kind == "prompt":
        # A web opt-in prompt is transactional: never held, but only sent while the
        # request it answers is still pending.
        if sub is None or sub.state != PENDING:
            return Verdict(CANCEL, reason="no longer pending")
        return Verdict(SEND)
    if suppressed:
        return Verdict(CANCEL, reason="suppressed")
    if sub is None or sub.state != SUBSCRIBED:
        return Verdict(CANCEL, reason="not subscribed")
    if until := cap_until(recent_sends, flow.frequency, now):
        return Verdict(HOLD, until, "frequency cap")
    try:
        until = quiet_until(contact.phone, now, quiet)
    except ValueError:  # the number's zones are never all outside quiet hours at once
        return Verdict(CANCEL, reason="quiet hours never open in the number's time zones")
    if until:
        return Verdict(HOLD, until, "quiet hours")
    return Verdict(SEND)
