"""Conversation transcripts: `> text` in, `< reply` out, `@25h` clock steps, `= ...` checks.

Format of tests/transcripts/*.txt (one conversation from one number):

    # comment lines; a `# via: http` line also runs it through signed HTTP webhooks
    > JOIN                      an inbound text
    >[OptOutType=STOP] stop     an inbound text with Twilio's OptOutType
    < Acme VIP Deals: ...       an expected reply, in order
    - no reply                  the previous text gets no reply at all
    @25h                        advance the clock (m, h, d)
    = vip pending               the number's state in flow `vip` (pending, subscribed, ...)
    = opted out / = not opted out
    = profile zip 10001         a stored question answer
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flows.times import parse_duration

START = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
NO_REPLY = "- no reply"
_INBOUND = re.compile(r">(?:\[OptOutType=(\w+)\])? ?(.*)")


@dataclass
class Turn:
    """One inbound text, the replies expected to it, and the checks after it."""

    body: str
    opt_out_type: str = ""
    replies: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    advance: timedelta = timedelta()  # clock step taken before this text


@dataclass
class Transcript:
    path: Path
    turns: list[Turn]
    via_http: bool


def parse(path: Path) -> Transcript:
    """Read a transcript file into turns."""
    turns: list[Turn] = []
    pending_step = timedelta()
    via_http = False
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        if line.startswith("#"):
            via_http = via_http or line.strip() == "# via: http"
            continue
        step = parse_duration(line.strip()[1:]) if line.strip().startswith("@") else None
        if step is not None:
            pending_step += step
        elif inbound := _INBOUND.fullmatch(line):
            turns.append(Turn(inbound[2], inbound[1] or "", advance=pending_step))
            pending_step = timedelta()
        elif line.startswith("< ") and turns:
            turns[-1].replies.append(line[2:])
        elif line == NO_REPLY and turns:
            continue
        elif line.startswith("= ") and turns:
            turns[-1].checks.append(line[2:].strip())
        else:
            raise ValueError(f"{path.name}:{number}: can't read line {line!r}")
    return Transcript(path, turns, via_http)


def render(transcript: Transcript, actual: list[list[str]]) -> str:
    """The transcript's text with each turn's replies replaced by `actual` (for --update)."""
    out: list[str] = []
    turn = -1
    for line in transcript.path.read_text(encoding="utf-8").splitlines():
        if line.startswith("< ") or line == NO_REPLY:
            continue
        out.append(line)
        if _INBOUND.fullmatch(line):
            turn += 1
            out.extend([f"< {text}" for text in actual[turn]] or [NO_REPLY])
    return "\n".join(out) + "\n"
