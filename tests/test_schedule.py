"""When a broadcast may go: quiet hours per recipient zone, frequency caps, retries (SPEC §8)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as phone_zones
from phonenumbers.tzdata import TIMEZONE_DATA

from flows.model import Frequency
from flows.schedule import (
    FALLBACK_ZONES,
    MAX_RETRIES,
    NO_QUIET_HOURS,
    US_ZONES,
    QuietHours,
    cap_until,
    next_attempt,
    parse_quiet_hours,
    quiet_until,
    time_zones,
)

NEW_YORK = "+12125550123"
LOS_ANGELES = "+13105550123"
IDAHO = "+12085550123"  # area code 208: Boise (Mountain) and the panhandle (Pacific)
ALASKA = "+19075550123"  # 907: Anchorage and the Aleutians (Adak, an hour behind)
TOLL_FREE = "+18005550123"  # not geographic: phonenumbers gives all 42 NANP zones
GUAM = "+16713001234"  # UTC+10, west of the date line
PAGO_PAGO = "+16846331234"  # UTC-11, east of it: the same wall clock, a day apart
KIRIBATI = "+68631234"  # Tarawa +12, Kanton +13, Kiritimati +14
NEW_ZEALAND_MOBILE = "+64211234567"  # Auckland and the Chatham Islands (+45 min)
SYDNEY = "+61291234567"
UNPLACED_US = "+15555550123"  # area code 555 is not assigned: phonenumbers cannot place it
JAMAICA_MOBILE = "+18762345678"  # phonenumbers: a mobile, so "not geographic"
AUSTRALIA_MOBILE = "+61412345678"  # a national mobile: anywhere in Australia

DEFAULT = parse_quiet_hours("21:00-08:00")


def at(wall: str, zone: str = "America/New_York", fold: int = 0) -> datetime:
    """A wall-clock time in a zone, as the UTC instant the worker would pass in."""
    local = datetime.fromisoformat(wall).replace(tzinfo=ZoneInfo(zone), fold=fold)
    return local.astimezone(UTC)


def utc(wall: str) -> datetime:
    """A UTC instant."""
    return datetime.fromisoformat(wall).replace(tzinfo=UTC)


# --- parsing SMSBOT_QUIET_HOURS --------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("21:00-08:00", QuietHours(time(21), time(8)), id="default-wraps-midnight"),
        pytest.param("13:00-14:00", QuietHours(time(13), time(14)), id="same-day"),
        pytest.param(" 22:30 - 7:15 ", QuietHours(time(22, 30), time(7, 15)), id="spaces-1-digit"),
        pytest.param("00:00-23:59", QuietHours(time(0), time(23, 59)), id="almost-all-day"),
        pytest.param("", NO_QUIET_HOURS, id="empty-is-off"),
        pytest.param("off", NO_QUIET_HOURS, id="off"),
        pytest.param(" OFF ", NO_QUIET_HOURS, id="off-any-case"),
    ],
)
def test_parse_quiet_hours(text: str, expected: QuietHours) -> None:
    assert parse_quiet_hours(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        pytest.param("21-08", "'21-08' is not a window like 21:00-08:00 (or off)", id="no-minutes"),
        pytest.param("21:00", "'21:00' is not a window like 21:00-08:00 (or off)", id="one-time"),
        pytest.param("9pm-8am", "'9pm-8am' is not a window like 21:00-08:00 (or off)", id="am-pm"),
        pytest.param(
            "21:00-08:00,13:00-14:00",
            "'21:00-08:00,13:00-14:00' is not a window like 21:00-08:00 (or off)",
            id="two-windows",
        ),
        pytest.param(
            "none", "'none' is not a window like 21:00-08:00 (or off)", id="none-is-not-off"
        ),
        pytest.param(
            "24:00-08:00", "'24:00-08:00': times of day run from 00:00 to 23:59", id="hour-24"
        ),
        pytest.param(
            "21:60-08:00", "'21:60-08:00': times of day run from 00:00 to 23:59", id="minute-60"
        ),
        pytest.param(
            "08:00-08:00",
            "'08:00-08:00': start and end are the same; write off for no quiet hours",
            id="empty-or-whole-day",
        ),
    ],
)
def test_parse_quiet_hours_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_quiet_hours(text)
    assert str(raised.value) == message


# --- a number's time zones -------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone, expected",
    [
        pytest.param(NEW_YORK, ("America/New_York",), id="new-york"),
        pytest.param(LOS_ANGELES, ("America/Los_Angeles",), id="los-angeles"),
        pytest.param(IDAHO, ("America/Boise", "America/Los_Angeles"), id="idaho-two-zones"),
        pytest.param(ALASKA, ("America/Adak", "America/Anchorage"), id="alaska-two-zones"),
        pytest.param(GUAM, ("Pacific/Guam",), id="guam"),
        pytest.param(PAGO_PAGO, ("Pacific/Pago_Pago",), id="american-samoa"),
        pytest.param(
            KIRIBATI,
            ("Pacific/Enderbury", "Pacific/Kiritimati", "Pacific/Tarawa"),
            id="kiribati-three-zones",
        ),
        pytest.param(
            NEW_ZEALAND_MOBILE, ("Pacific/Auckland", "Pacific/Chatham"), id="nz-mobile-two-zones"
        ),
        pytest.param(JAMAICA_MOBILE, ("America/Jamaica",), id="caribbean-mobile-by-area-code"),
        pytest.param(TOLL_FREE, US_ZONES, id="toll-free-every-us-state"),
        pytest.param(UNPLACED_US, US_ZONES, id="unplaced-area-code-every-us-state"),
        pytest.param(
            AUSTRALIA_MOBILE,
            (
                "Australia/Adelaide",
                "Australia/Brisbane",
                "Australia/Eucla",
                "Australia/Lord_Howe",
                "Australia/Perth",
                "Australia/Sydney",
                "Indian/Christmas",
                "Indian/Cocos",
            ),
            id="national-mobile-whole-country",
        ),
        pytest.param(
            "+441632960000",
            ("Europe/Guernsey", "Europe/Isle_of_Man", "Europe/Jersey", "Europe/London"),
            id="unplaced-uk-whole-country",
        ),
        pytest.param("+999123456", FALLBACK_ZONES, id="unknown-country"),
        pytest.param("not a number", FALLBACK_ZONES, id="unparseable"),
    ],
)
def test_time_zones(phone: str, expected: tuple[str, ...]) -> None:
    assert time_zones(phone) == expected


def test_toll_free_is_held_to_the_us_not_to_all_42_nanp_zones() -> None:
    # phonenumbers places a toll-free number anywhere from Guam to American Samoa; holding it
    # to all of them would leave 1.5 h a day under 21:00-08:00 and none under 20:00-09:00.
    nanp = phone_zones.time_zones_for_number(phonenumbers.parse(TOLL_FREE))
    assert len(nanp) == 42 and {"Pacific/Guam", "Pacific/Pago_Pago"} <= set(nanp)
    assert quiet_until(TOLL_FREE, utc("2024-06-03 12:00"), parse_quiet_hours("20:00-09:00"))


def test_every_zone_phonenumbers_names_is_in_the_zone_database() -> None:
    # A host without the IANA database (a slim container) would fail every held message.
    for name in {zone for zones in TIMEZONE_DATA.values() for zone in zones} - {"Etc/Unknown"}:
        ZoneInfo(name)


# --- quiet hours -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone, now, quiet, expected",
    [
        # TCPA 47 CFR 64.1200(c)(1): not before 8 am nor after 9 pm, recipient-local.
        pytest.param(NEW_YORK, at("2024-06-03 20:59"), "21:00-08:00", None, id="ny-20:59-open"),
        pytest.param(
            NEW_YORK,
            at("2024-06-03 21:00"),
            "21:00-08:00",
            at("2024-06-04 08:00"),
            id="ny-21:00-held-till-tomorrow-08:00",
        ),
        pytest.param(
            NEW_YORK,
            at("2024-06-04 03:00"),
            "21:00-08:00",
            at("2024-06-04 08:00"),
            id="ny-03:00-held-till-08:00",
        ),
        pytest.param(
            NEW_YORK,
            at("2024-06-04 07:59:59"),
            "21:00-08:00",
            at("2024-06-04 08:00"),
            id="ny-07:59:59-held-one-second",
        ),
        pytest.param(NEW_YORK, at("2024-06-04 08:00"), "21:00-08:00", None, id="ny-08:00-open"),
        pytest.param(
            LOS_ANGELES,
            at("2024-06-03 23:30"),
            "21:00-08:00",
            None,
            id="la-20:30-open-though-new-york-is-quiet",
        ),
        pytest.param(
            LOS_ANGELES,
            at("2024-06-04 10:00"),
            "21:00-08:00",
            at("2024-06-04 08:00", "America/Los_Angeles"),
            id="la-07:00-held-till-pacific-08:00",
        ),
        # Several zones: the most restrictive (SPEC §8), i.e. open only where all are open.
        pytest.param(
            IDAHO,
            at("2024-06-04 08:30", "America/Boise"),
            "21:00-08:00",
            at("2024-06-04 08:00", "America/Los_Angeles"),
            id="idaho-boise-open-held-till-pacific-08:00",
        ),
        pytest.param(
            IDAHO,
            at("2024-06-03 20:30", "America/Los_Angeles"),
            "21:00-08:00",
            at("2024-06-04 08:00", "America/Los_Angeles"),
            id="idaho-pacific-open-held-from-boise-21:00",
        ),
        pytest.param(
            ALASKA,
            at("2024-06-04 08:00", "America/Anchorage"),
            "21:00-08:00",
            at("2024-06-04 08:00", "America/Adak"),
            id="alaska-held-till-adak-08:00",
        ),
        pytest.param(
            TOLL_FREE,
            utc("2024-06-03 12:00"),
            "21:00-08:00",
            at("2024-06-03 08:00", "Pacific/Honolulu"),
            id="toll-free-held-till-honolulu-08:00",
        ),
        pytest.param(
            TOLL_FREE,
            at("2024-06-03 21:00"),
            "21:00-08:00",
            at("2024-06-04 08:00", "Pacific/Honolulu"),
            id="toll-free-closes-at-new-york-21:00",
        ),
        pytest.param(
            AUSTRALIA_MOBILE,
            at("2024-06-04 07:00", "Australia/Perth"),
            "21:00-08:00",
            at("2024-06-04 08:00", "Indian/Cocos"),
            id="australian-mobile-held-till-cocos-islands-08:00",
        ),
        # Either side of the date line: one UTC instant, two calendar days.
        pytest.param(
            GUAM,
            utc("2024-06-03 20:00"),
            "21:00-08:00",
            at("2024-06-04 08:00", "Pacific/Guam"),
            id="guam-06:00-tomorrow-held",
        ),
        pytest.param(PAGO_PAGO, utc("2024-06-03 20:00"), "21:00-08:00", None, id="pago-09:00-open"),
        pytest.param(
            PAGO_PAGO,
            utc("2024-06-04 08:30"),
            "21:00-08:00",
            at("2024-06-04 08:00", "Pacific/Pago_Pago"),
            id="pago-21:30-held-till-08:00",
        ),
        pytest.param(
            KIRIBATI,
            at("2024-06-04 09:00", "Pacific/Kiritimati"),
            "21:00-08:00",
            at("2024-06-04 08:00", "Pacific/Tarawa"),
            id="kiribati-held-till-tarawa-08:00",
        ),
        pytest.param(
            NEW_ZEALAND_MOBILE,
            at("2024-06-04 20:20", "Pacific/Auckland"),
            "21:00-08:00",
            at("2024-06-05 08:00", "Pacific/Auckland"),
            id="nz-held-from-chatham-21:00",
        ),
        # DST: the wall clock decides, whatever the UTC offset did overnight.
        pytest.param(
            NEW_YORK,
            at("2024-03-09 21:00"),
            "21:00-08:00",
            at("2024-03-10 08:00"),
            id="spring-forward-night-held-till-edt-08:00",
        ),
        pytest.param(
            NEW_YORK,
            at("2024-03-10 01:30"),
            "21:00-08:00",
            utc("2024-03-10 12:00"),
            id="spring-forward-held-till-12:00-utc",
        ),
        pytest.param(
            NEW_YORK,
            at("2024-03-10 01:45"),
            "22:00-02:30",
            at("2024-03-10 03:00"),
            id="spring-forward-end-skipped-opens-at-03:00",
        ),
        pytest.param(
            NEW_YORK,
            at("2024-11-03 01:30"),
            "21:00-08:00",
            utc("2024-11-03 13:00"),
            id="fall-back-held-till-13:00-utc",
        ),
        pytest.param(
            NEW_YORK,
            at("2024-11-03 01:15"),
            "22:00-01:30",
            at("2024-11-03 01:30"),
            id="fall-back-first-01:15-held-till-01:30-edt",
        ),
        pytest.param(
            NEW_YORK, at("2024-11-03 01:45"), "22:00-01:30", None, id="fall-back-first-01:45-open"
        ),
        pytest.param(
            NEW_YORK,
            at("2024-11-03 01:10", fold=1),
            "22:00-01:30",
            at("2024-11-03 01:30", fold=1),
            id="fall-back-repeated-01:10-held-again-till-01:30-est",
        ),
        pytest.param(
            SYDNEY,
            at("2024-10-06 01:30", "Australia/Sydney"),
            "21:00-08:00",
            at("2024-10-06 08:00", "Australia/Sydney"),
            id="sydney-spring-forward",
        ),
        # Same-day window and no window.
        pytest.param(NEW_YORK, at("2024-06-04 12:59"), "13:00-14:00", None, id="lunch-12:59-open"),
        pytest.param(
            NEW_YORK,
            at("2024-06-04 13:30"),
            "13:00-14:00",
            at("2024-06-04 14:00"),
            id="lunch-13:30-held",
        ),
        pytest.param(NEW_YORK, at("2024-06-04 14:00"), "13:00-14:00", None, id="lunch-14:00-open"),
        pytest.param(NEW_YORK, at("2024-06-04 03:00"), "13:00-14:00", None, id="lunch-03:00-open"),
        pytest.param(NEW_YORK, at("2024-06-04 03:00"), "off", None, id="off"),
        pytest.param(TOLL_FREE, utc("2024-06-03 12:00"), "", None, id="empty-is-off"),
        pytest.param(
            UNPLACED_US,
            at("2024-06-04 10:00"),
            "21:00-08:00",
            at("2024-06-04 08:00", "Pacific/Honolulu"),
            id="unplaced-us-held-till-honolulu-08:00",
        ),
    ],
)
def test_quiet_until(phone: str, now: datetime, quiet: str, expected: datetime | None) -> None:
    assert quiet_until(phone, now, parse_quiet_hours(quiet)) == expected


def test_quiet_until_answers_in_utc() -> None:
    held = quiet_until(NEW_YORK, at("2024-06-04 03:00"), DEFAULT)
    assert held is not None and held.utcoffset() == timedelta(0)


def test_quiet_until_accepts_any_aware_now() -> None:
    local = datetime(2024, 6, 4, 3, tzinfo=ZoneInfo("America/New_York"))
    assert quiet_until(NEW_YORK, local, DEFAULT) == at("2024-06-04 08:00")


def test_quiet_until_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        quiet_until(NEW_YORK, datetime(2024, 6, 4, 3), DEFAULT)


def test_quiet_hours_that_never_open_in_every_zone_refuse_rather_than_send() -> None:
    # 23h59m of quiet in each US state's zone leaves no minute open in all of them.
    with pytest.raises(ValueError, match="never open"):
        quiet_until(TOLL_FREE, utc("2024-06-03 12:00"), parse_quiet_hours("08:01-08:00"))
    # In one zone the same window still opens for a minute a day.
    held = quiet_until(NEW_YORK, at("2024-06-04 12:00"), parse_quiet_hours("08:01-08:00"))
    assert held == at("2024-06-05 08:00")


# A reference that reads the rule literally: quiet if any zone's wall clock is in the window.
def is_quiet(phone: str, instant: datetime, quiet: QuietHours) -> bool:
    assert quiet.start is not None and quiet.end is not None
    for name in time_zones(phone):
        wall = instant.astimezone(ZoneInfo(name)).time()
        if quiet.start < quiet.end:
            inside = quiet.start <= wall < quiet.end
        else:
            inside = wall >= quiet.start or wall < quiet.end
        if inside:
            return True
    return False


PHONES = st.sampled_from(
    [NEW_YORK, LOS_ANGELES, IDAHO, ALASKA, TOLL_FREE, GUAM, PAGO_PAGO, KIRIBATI]
    + [NEW_ZEALAND_MOBILE, SYDNEY, UNPLACED_US, JAMAICA_MOBILE, AUSTRALIA_MOBILE]
)
# The default, a stricter one, windows ending in a skipped or repeated hour, a same-day one.
WINDOWS = st.sampled_from(
    ["21:00-08:00", "20:00-09:00", "22:00-02:30", "22:00-01:30", "13:00-14:00"]
)
INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC)
)


@given(phone=PHONES, now=INSTANTS, window=WINDOWS)
@example(phone=NEW_YORK, now=at("2024-03-10 01:59:59"), window="22:00-02:30")
@example(phone=NEW_YORK, now=at("2024-11-03 01:59:59"), window="22:00-01:30")
@example(phone=SYDNEY, now=at("2024-04-07 02:30", "Australia/Sydney"), window="22:00-02:30")
def test_held_until_an_instant_that_is_open(phone: str, now: datetime, window: str) -> None:
    quiet = parse_quiet_hours(window)
    held = quiet_until(phone, now, quiet)
    if held is None:
        assert not is_quiet(phone, now, quiet)
    else:
        assert held > now
        assert quiet_until(phone, held, quiet) is None
        assert not is_quiet(phone, held, quiet)


@settings(max_examples=40, deadline=None)
@given(phone=PHONES, now=INSTANTS, window=WINDOWS)
def test_nothing_earlier_is_open(phone: str, now: datetime, window: str) -> None:
    # Zone offsets and DST changes fall on whole minutes, so any earlier opening would show
    # at a whole minute between now and the answer.
    quiet = parse_quiet_hours(window)
    held = quiet_until(phone, now, quiet)
    if held is None:
        return
    minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute < held:
        assert is_quiet(phone, minute, quiet), minute
        minute += timedelta(minutes=1)


# --- frequency caps --------------------------------------------------------------------------

MONTHLY = Frequency(4, "month", timedelta(days=30))
DAILY = Frequency(1, "day", timedelta(days=1))
NOW = utc("2024-06-30 12:00")


def days_ago(*days: float) -> list[datetime]:
    """Send times this many days before NOW."""
    return [NOW - timedelta(days=d) for d in days]


@pytest.mark.parametrize(
    "sent, frequency, expected",
    [
        pytest.param(days_ago(1, 2, 3, 4, 5), None, None, id="no-cap"),
        pytest.param([], MONTHLY, None, id="never-sent"),
        pytest.param(days_ago(1, 2, 3), MONTHLY, None, id="under-cap"),
        pytest.param(days_ago(1, 2, 3, 10), MONTHLY, NOW + timedelta(days=20), id="at-cap"),
        pytest.param(
            days_ago(10, 1, 3, 2), MONTHLY, NOW + timedelta(days=20), id="at-cap-any-order"
        ),
        pytest.param(days_ago(1, 2, 3, 31), MONTHLY, None, id="window-rolled"),
        pytest.param(days_ago(1, 2, 3, 30), MONTHLY, None, id="send-exactly-a-window-ago-left"),
        pytest.param(
            days_ago(1, 2, 3, 4, 5, 6), MONTHLY, NOW + timedelta(days=26), id="over-cap-lowered"
        ),
        pytest.param(days_ago(0.5), DAILY, NOW + timedelta(days=0.5), id="daily-held"),
        pytest.param(days_ago(1), DAILY, None, id="daily-rolled"),
    ],
)
def test_cap_until(sent: list[datetime], frequency: Frequency | None, expected) -> None:
    assert cap_until(sent, frequency, NOW) == expected


def test_a_zero_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="never lets a message go"):
        cap_until([], Frequency(0, "month", timedelta(days=30)), NOW)


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attempts, delay",
    [
        pytest.param(1, timedelta(seconds=30), id="first-retry-30s"),
        pytest.param(2, timedelta(minutes=2), id="second-retry-2min"),
        pytest.param(3, timedelta(minutes=8), id="third-retry-8min"),
    ],
)
def test_next_attempt(attempts: int, delay: timedelta) -> None:
    assert next_attempt(attempts, NOW) == NOW + delay


def test_spec_allows_three_retries() -> None:
    assert MAX_RETRIES == 3


@pytest.mark.parametrize("attempts", [0, 4], ids=["no-failure-yet", "retries-spent"])
def test_next_attempt_refuses_outside_the_schedule(attempts: int) -> None:
    with pytest.raises(ValueError, match="allows 3"):
        next_attempt(attempts, NOW)
