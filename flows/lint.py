"""The compliance lint of a flow's texts, and the length limits of every text sent."""

from __future__ import annotations

import re

from flows.model import Frequency, Problem
from flows.segments import LIMITS, describe, segments

# Twilio refuses a message body longer than 1,600 characters.
MAX_CHARS = 1600

# CTIA Messaging Principles and Best Practices: the opt-in confirmation names the
# program or brand, discloses message frequency, says "Msg & data rates may apply", and
# gives HELP and STOP instructions; every recurring program's first message tells how to stop.
_STOP = re.compile(r"\bstop\b", re.IGNORECASE)
_HELP = re.compile(r"\bhelp\b", re.IGNORECASE)
_RATES = re.compile(r"\b(?:msg|message)\s+(?:&|and)\s+data\s+rates\s+may\s+apply\b", re.IGNORECASE)
# "up to 4 msgs/month", "4 messages per week", "1 text a day"; or "Msg frequency varies".
_FREQUENCY = re.compile(
    r"\b(?P<count>\d+)\s*(?:msgs?|messages?|texts?)\s*(?:/\s*|\s+(?:per|a|each)\s+)"
    r"(?P<unit>day|week|month|wk|mo)\b"
    r"|\b(?:msg|message|text)\s+frequency\s+varies\b",
    re.IGNORECASE,
)
_UNITS = {"wk": "week", "mo": "month"}

_STOP_EXAMPLE = '(e.g. "Reply STOP to cancel")'


def lint_prompt(file: str, prompt: str, names: tuple[str, ...]) -> list[Problem]:
    """The compliance errors of a double opt-in prompt; `names` are the program and brand."""
    missing = []
    if names and not any(name.casefold() in prompt.casefold() for name in names):
        quoted = " or ".join(f'"{name}"' for name in names)
        missing.append(f"prompt must name the program or the brand ({quoted})")
    if not _STOP.search(prompt):
        missing.append(f"prompt must say how to opt out {_STOP_EXAMPLE}")
    if not _HELP.search(prompt):
        missing.append('prompt must say how to get help (e.g. "Reply HELP for help")')
    if not _RATES.search(prompt):
        missing.append('prompt must say "Msg & data rates may apply"')
    if not _FREQUENCY.search(prompt):
        missing.append(
            "prompt must disclose the message frequency "
            '(e.g. "up to 4 msgs/month" or "Msg frequency varies")'
        )
    return [Problem(file, "replies.prompt", message) for message in missing]


def lint_welcome(file: str, welcome: str) -> list[Problem]:
    """The compliance error of a welcome that doesn't say how to stop (CTIA)."""
    if _STOP.search(welcome):
        return []
    return [Problem(file, "replies.welcome", f"welcome must say how to opt out {_STOP_EXAMPLE}")]


def lint_frequency(
    file: str, frequency: Frequency, disclosure: str, reply: str = "prompt"
) -> list[Problem]:
    """A warning when the `reply` that discloses the terms doesn't state the frequency cap."""
    stated = {
        (int(m["count"]), _UNITS.get(m["unit"].lower(), m["unit"].lower()))
        for m in _FREQUENCY.finditer(disclosure)
        if m["count"]
    }
    if (frequency.count, frequency.unit) in stated:
        return []
    msgs = "msg" if frequency.count == 1 else "msgs"
    example = f'"up to {frequency.count} {msgs}/{frequency.unit}"'
    message = f"the {reply} doesn't state this cap (e.g. {example})"
    return [Problem(file, "frequency", message, "warning")]


def lint_length(file: str, path: str, text: str, *, default: bool = False) -> list[Problem]:
    """An error over Twilio's 1,600 characters; a warning over one SMS segment."""
    if len(text) > MAX_CHARS:
        message = f"reply is {len(text):,} characters; the limit is {MAX_CHARS:,}"
        return [Problem(file, path, message)]
    cost = segments(text)
    if cost.count <= 1:
        return []
    message = f"reply is {describe(text)}; a single segment holds {LIMITS[cost.encoding][0]}"
    if default:
        message += "; this is the default wording, write your own to shorten it"
    return [Problem(file, path, message, "warning")]
