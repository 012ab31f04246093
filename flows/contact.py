"""One phone number's consent state: the value the engine reads and returns."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

# A subscription's states. `new` is never stored: it is the absence of a row.
NEW, PENDING, SUBSCRIBED, EXPIRED, OPTED_OUT = (
    "new",
    "pending",
    "subscribed",
    "expired",
    "opted_out",
)
ACTIVE = (PENDING, SUBSCRIBED)


@dataclass(frozen=True)
class Subscription:
    """A number's standing in one flow."""

    flow: str
    state: str
    since: datetime  # when it entered this state
    question: int | None = None  # index of the question awaiting an answer


@dataclass(frozen=True)
class Contact:
    """A number's consent state across every flow."""

    phone: str
    opted_out: bool = False
    # The flows the last opt-out ended while subscribed: START restores exactly these.
    restorable: tuple[str, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()

    def subscription(self, flow_id: str) -> Subscription | None:
        """This number's subscription to one flow, or None if it never had one."""
        return next((s for s in self.subscriptions if s.flow == flow_id), None)

    def active(self) -> tuple[Subscription, ...]:
        """The pending and subscribed flows."""
        return tuple(s for s in self.subscriptions if s.state in ACTIVE)

    def with_subscription(self, sub: Subscription) -> Contact:
        """A copy with `sub` replacing that flow's subscription (or added)."""
        others = tuple(s for s in self.subscriptions if s.flow != sub.flow)
        return replace(self, subscriptions=(*others, sub))
