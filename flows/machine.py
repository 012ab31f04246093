"""The per-flow consent state machine, built once per flow with `transitions`."""

from __future__ import annotations

from functools import cache

from transitions import Machine

from flows.contact import EXPIRED, NEW, OPTED_OUT, PENDING, SUBSCRIBED
from flows.model import Flow

STATES = (NEW, PENDING, SUBSCRIBED, EXPIRED, OPTED_OUT)
_ENDED = [NEW, EXPIRED, OPTED_OUT]


@cache
def machine_for(flow: Flow) -> Machine:
    """The flow's machine, built on first use and kept for the life of the process."""
    if flow.double_opt_in:
        join = {"dest": PENDING, "after": ["send_prompt", "record_requested"]}
    else:
        # Single opt-in: the keyword itself is the consent.
        join = {"dest": SUBSCRIBED, "after": ["send_welcome", "record_confirmed", "ask_first"]}
    transitions = [
        {"trigger": "keyword", "source": _ENDED, **join},
        # The prompt again, recorded again: the window runs from the prompt just sent.
        {
            "trigger": "keyword",
            "source": PENDING,
            "dest": None,
            "after": ["send_prompt", "record_requested"],
        },
        {"trigger": "keyword", "source": SUBSCRIBED, "dest": None, "after": "send_already"},
        {
            "trigger": "confirm",
            "source": PENDING,
            "dest": SUBSCRIBED,
            "after": ["send_welcome", "record_confirmed", "ask_first"],
        },
        {"trigger": "expire", "source": PENDING, "dest": EXPIRED, "after": "record_expired"},
        {
            "trigger": "opt_out",
            "source": [PENDING, SUBSCRIBED],
            "dest": OPTED_OUT,
            "after": "record_opted_out",
        },
        {
            "trigger": "restore",
            "source": OPTED_OUT,
            "dest": SUBSCRIBED,
            "after": "record_opted_in_again",
        },
    ]
    return Machine(
        model=None,
        states=list(STATES),
        transitions=transitions,
        initial=None,
        auto_transitions=False,
    )


def fire(flow: Flow, model: object, trigger: str) -> None:
    """Run one trigger on `model` (which records effects, never does I/O) from its `state`.

    The model is driven through the machine's event, not added to the machine: adding one
    binds a method per trigger and state to it, which cost more than the transition itself
    on every message (README, decisions)."""
    machine_for(flow).events[trigger].trigger(model)
