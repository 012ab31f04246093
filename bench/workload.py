"""A realistic mix of signed inbound webhooks, shared by the benchmarks and the fault drills.

Numbers move through a small conversation model (new → JOIN → YES → ZIP answer → HELP,
free text, STOP, START ...), so the mix exercises every rule the way traffic does; about
1% of messages repeat an earlier MessageSid, as Twilio's retries do.
"""

from __future__ import annotations

import random
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

BUSINESS = "+15555550199"
FREE_TEXT = ("hi", "what time do you open?", "love the new latte", "thanks!", "who is this")
PLEAS = ("please stop", "stop texting me", "STOP", "unsubscribe")

# state -> [(weight, text, next state)]; None keeps the state
_MODEL: dict[str, list[tuple[float, str, str | None]]] = {
    "new": [(0.5, "JOIN", "pending"), (0.1, "VIP", "pending"), (0.1, "HELP", None),
            (0.1, "ALERTS", "pending"), (0.2, "<free>", None)],
    "pending": [(0.7, "YES", "asked"), (0.1, "JOIN", None), (0.1, "STOP", "stopped"),
                (0.1, "<free>", None)],
    "asked": [(0.6, "<zip>", "subscribed"), (0.2, "SKIP", "subscribed"), (0.1, "HELP", None),
              (0.1, "<plea>", "stopped")],
    "subscribed": [(0.45, "<free>", None), (0.15, "HELP", None), (0.15, "JOIN", None),
                   (0.1, "<plea>", "stopped"), (0.15, "Y", None)],
    "stopped": [(0.4, "START", "subscribed"), (0.2, "JOIN", "pending"), (0.4, "<free>", None)],
}  # fmt: skip


def _text(template: str, rng: random.Random) -> str:
    if template == "<free>":
        return rng.choice(FREE_TEXT)
    if template == "<plea>":
        return rng.choice(PLEAS)
    if template == "<zip>":
        return f"{rng.randrange(10000, 99999)}"
    return template


def conversations(
    numbers: int, count: int, seed: int = 7, prefix: str = "SM", duplicates: float = 0.01
) -> list[dict[str, str]]:
    """`count` webhook forms from `numbers` distinct phones, in a plausible order."""
    rng = random.Random(seed)
    state: dict[str, str] = {}
    forms: list[dict[str, str]] = []
    for n in range(count):
        if forms and rng.random() < duplicates:
            forms.append(dict(rng.choice(forms[-500:])))  # Twilio retrying a webhook
            continue
        phone = f"+1202{rng.randrange(2_000_000, 2_000_000 + numbers):07d}"
        choices = _MODEL[state.get(phone, "new")]
        weight, template, following = rng.choices(choices, [c[0] for c in choices])[0]
        if following:
            state[phone] = following
        forms.append(
            {
                "MessageSid": f"{prefix}{n:0{34 - len(prefix)}d}",
                "AccountSid": "AC" + "0" * 32,
                "From": phone,
                "To": BUSINESS,
                "Body": _text(template, rng),
                "NumMedia": "0",
            }
        )
    return forms


def signed(forms: list[dict[str, str]], url: str, token: str) -> list[tuple[str, str]]:
    """Each form as (urlencoded body, X-Twilio-Signature) for `url`."""
    validator = RequestValidator(token)
    return [(urlencode(form), validator.compute_signature(url, form)) for form in forms]
