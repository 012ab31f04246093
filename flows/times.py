"""The time formats smsbot reads: durations like 24h, and ISO-8601 instants."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

# A whole number then m, h or d: `confirm_within: 24h` in flows, `@25h` in simulate.
DURATION = re.compile(r"(\d+)([mhd])")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_duration(text: str) -> timedelta | None:
    """The duration `text` spells (24h, 30m, 2d), or None when it isn't one."""
    found = DURATION.fullmatch(text.strip())
    return int(found[1]) * _UNITS[found[2]] if found else None


def parse_instant(text: str) -> datetime:
    """An ISO-8601 time, aware; no offset means UTC (SPEC §4). Raises ValueError."""
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
