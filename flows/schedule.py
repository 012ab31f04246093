"""When a broadcast may go: quiet hours, frequency caps and retry backoff (SPEC §8)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_zones
from phonenumbers.tzdata import TIMEZONE_DATA

from flows.model import Frequency

_UNKNOWN_ZONE = "Etc/Unknown"  # what phonenumbers answers when it cannot place a number
_NANP_ZONES = TIMEZONE_DATA["1"]  # phonenumbers' answer for a +1 number it places nowhere
# A +1 number with no known area code (toll-free 8XX, 5XX, 900, or a code newer than the
# metadata) is most likely in the US, whose law this is; hold it to every state's zone.
# Only Hawaii's morning and Eastern's evening bind: open 08:00 HST to 21:00 ET, 7-8 h a day.
# (All 42 NANP zones, Guam to American Samoa, would leave 1.5 h, or none for 20:00-09:00.)
US_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
)
FALLBACK_ZONES = ("UTC",)  # only for numbers whose country phonenumbers does not know

# Quiet windows repeat daily, so with unchanged UTC offsets an open instant, if there is one,
# comes within a day; two days also cover a DST change on the way.
_HORIZON = timedelta(days=2)
_HOUR = 3600  # seconds; no zone changes its offset twice within an hour

# Transient send failures are retried after 30 s, 2 min, then 8 min (x4 each time); SPEC §8
# allows at most 3 retries, after which the send has failed for good.
RETRY_DELAYS = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=8))
MAX_RETRIES = len(RETRY_DELAYS)

_WINDOW = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


@dataclass(frozen=True)
class QuietHours:
    """A recipient-local window [start, end) in which broadcasts are held; None = off."""

    start: time | None
    end: time | None  # earlier than start when the window wraps midnight


NO_QUIET_HOURS = QuietHours(None, None)


def parse_quiet_hours(text: str) -> QuietHours:
    """Read a setting such as 21:00-08:00 (wraps midnight), 13:00-14:00, or off / empty."""
    cleaned = text.strip()
    if cleaned.lower() in ("", "off"):
        return NO_QUIET_HOURS
    found = _WINDOW.fullmatch(cleaned)
    if found is None:
        raise ValueError(f"{text!r} is not a window like 21:00-08:00 (or off)")
    hours_a, minutes_a, hours_b, minutes_b = (int(part) for part in found.groups())
    if max(hours_a, hours_b) > 23 or max(minutes_a, minutes_b) > 59:
        raise ValueError(f"{text!r}: times of day run from 00:00 to 23:59")
    start, end = time(hours_a, minutes_a), time(hours_b, minutes_b)
    if start == end:
        raise ValueError(f"{text!r}: start and end are the same; write off for no quiet hours")
    return QuietHours(start, end)


def time_zones(phone_e164: str) -> tuple[str, ...]:
    """The IANA zones a number may be in, per phonenumbers, or a fallback where it has none.

    A +1 number's area code is a place even when phonenumbers types the number as not
    geographic (a Caribbean mobile), so it is looked up; where the code is no place, US_ZONES.
    Elsewhere a number phonenumbers cannot place gets all its country's zones (the most
    restrictive guess; a national mobile's prefix says nothing of where its owner is), and a
    number of no known country FALLBACK_ZONES.
    """
    try:
        number = phonenumbers.parse(phone_e164)
    except phonenumbers.NumberParseException:
        return FALLBACK_ZONES
    if number.country_code == 1 and not phonenumbers.is_number_geographical(number):
        zones = phone_zones.time_zones_for_geographical_number(number)
        if zones == _NANP_ZONES or _UNKNOWN_ZONE in zones:
            return US_ZONES
    else:
        zones = phone_zones.time_zones_for_number(number)
        if _UNKNOWN_ZONE in zones:
            zones = TIMEZONE_DATA.get(str(number.country_code), ())
    return tuple(zones) or FALLBACK_ZONES


def quiet_until(phone_e164: str, now: datetime, quiet: QuietHours) -> datetime | None:
    """None if a broadcast may go now, else the first UTC instant open in all the number's zones.

    TCPA, 47 CFR 64.1200(c)(1), forbids texts before 8 am or after 9 pm at the recipient's
    location, and several states are stricter: hence 21:00-08:00 by default. Where a number
    may be in several zones the most restrictive wins (SPEC §8): held until open in every one.
    """
    if quiet.start is None or quiet.end is None:
        return None
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    now = now.astimezone(UTC)
    horizon = now + _HORIZON
    zones = time_zones(phone_e164)
    spans = sorted(
        span
        for name in zones
        for span in _quiet_spans(ZoneInfo(name), quiet.start, quiet.end, now, horizon)
    )
    open_at = now
    for start, end in spans:
        if start > open_at:
            break
        open_at = max(open_at, end)
    if open_at >= horizon:
        # Only a window too long for the zones' spread gets here; sending anyway would break
        # the rule, so refuse loudly instead.
        raise ValueError(f"quiet hours never open in all of {phone_e164}'s zones: {zones}")
    return None if open_at == now else open_at


def _quiet_spans(
    zone: ZoneInfo, quiet_start: time, quiet_end: time, since: datetime, until: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """The UTC spans within [since, until) when the zone's wall clock is in [start, end)."""
    wraps = quiet_end < quiet_start
    for first, last, offset in _offset_spans(zone, since, until):
        # Within one span the wall clock is UTC + offset, so each local quiet window maps to
        # one UTC span; a DST jump ends the span, so skipped or repeated hours fall out right.
        day = (first + offset).date() - timedelta(days=1)  # a wrapping window began yesterday
        while day <= (last + offset).date():
            start = datetime.combine(day, quiet_start, UTC) - offset
            end = datetime.combine(day + timedelta(days=wraps), quiet_end, UTC) - offset
            if start < last and end > first:
                yield max(start, first), min(end, last)
            day += timedelta(days=1)


def _offset_spans(
    zone: ZoneInfo, since: datetime, until: datetime
) -> Iterator[tuple[datetime, datetime, timedelta]]:
    """Split [since, until) where the zone's UTC offset changes; each piece with its offset."""
    stop = int(until.timestamp()) + 1
    first, tick = since, int(since.timestamp())
    offset = _offset(zone, tick)
    while tick < stop:
        low, high = tick, min(tick + _HOUR, stop)
        if _offset(zone, high) != offset:
            while high - low > 1:  # tzdata changes fall on whole seconds: bisect to one
                middle = (low + high) // 2
                low, high = (middle, high) if _offset(zone, middle) == offset else (low, middle)
            change = datetime.fromtimestamp(high, UTC)
            if change > first:
                yield first, min(change, until), offset
                first = change
            offset = _offset(zone, high)
        tick = high
    if first < until:
        yield first, until, offset


def _offset(zone: ZoneInfo, timestamp: int) -> timedelta | None:
    """The zone's UTC offset at a POSIX timestamp."""
    return datetime.fromtimestamp(timestamp, zone).utcoffset()


def cap_until(
    sent_times: Sequence[datetime], frequency: Frequency | None, now: datetime
) -> datetime | None:
    """None if one more broadcast fits the flow's rolling cap, else when the count drops below it.

    `sent_times` are this number's broadcast sends for the flow; only broadcasts count (SPEC §8).
    A send at s counts while now < s + window.
    """
    if frequency is None:
        return None
    if frequency.count < 1:
        raise ValueError(f"a cap of {frequency.count}/{frequency.unit} never lets a message go")
    counted = sorted(sent for sent in sent_times if sent + frequency.window > now)
    if len(counted) < frequency.count:
        return None
    # Once the oldest len - count + 1 sends have left the window, one more fits.
    return counted[len(counted) - frequency.count] + frequency.window


def next_attempt(attempts: int, now: datetime) -> datetime:
    """When to retry a send that has failed `attempts` times (1 to MAX_RETRIES): RETRY_DELAYS."""
    if not 1 <= attempts <= MAX_RETRIES:
        raise ValueError(f"no retry after {attempts} failures; SPEC §8 allows {MAX_RETRIES}")
    return now + RETRY_DELAYS[attempts - 1]
