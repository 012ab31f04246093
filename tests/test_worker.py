"""The outbox worker in-process (SPEC §8), on a clock the test turns, sending over real HTTP
to the fake Twilio: what goes, what is held or cancelled at send time, what fails, and that
no outbox row is ever sent twice."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from flows.schedule import RETRY_DELAYS, parse_quiet_hours
from outbox import MAX_ATTEMPTS, Worker
from storage.ledger import subject_key
from tests import database
from tests.conftest import PHONE
from tests.sending import (
    CALLBACK,
    SENDER,
    SERVICE,
    Clock,
    creates,
    optin,
    outbox_column,
    subscribe,
    worker,
)
from tests.sending import fake_twilio as fake_twilio  # the fixtures, shared by the sending tests
from tests.sending import settings as settings

OTHER = "+15555550111"
THIRD = "+15555550122"
NEW_YORK = ZoneInfo("America/New_York")
NY_PHONE = "+12125550123"  # area code 212: New York only
LA_PHONE = "+13105550123"  # area code 310: Los Angeles only
QUIET = "21:00-08:00"


@pytest.fixture
def clock() -> Clock:
    """The worker's clock, a little ahead of the real one so that what the test queues
    (stamped with the real time) is already due."""
    return Clock(datetime.now(UTC) + timedelta(seconds=10))


def broadcast(runner, text: str, *extra: str) -> None:
    """`flask broadcast --flow vip --text TEXT`, asserting it worked."""
    result = runner.invoke(args=["broadcast", "--flow", "vip", "--text", text, *extra])
    assert result.exit_code == 0, result.output


def states(store) -> list[str]:
    return [row.state for row in store.outbox()]


def outbound(store, phone: str) -> list:
    return [m for m in store.messages(phone) if m.direction == "out" and m.sid]


def ny_evening(hour: int, minute: int = 0, days_ahead: int = 1) -> datetime:
    """A wall-clock time in New York, `days_ahead` days from today there (always ahead of now)."""
    day = datetime.now(NEW_YORK).date() + timedelta(days=days_ahead)
    return datetime.combine(day, time(hour, minute), NEW_YORK)


# -- sending --------------------------------------------------------------------------------

SENDERS = [
    pytest.param(SENDER, {"From": SENDER}, id="phone-number"),
    pytest.param(SERVICE, {"MessagingServiceSid": SERVICE}, id="messaging-service"),
]


@pytest.mark.parametrize("sender,sent_as", SENDERS)
def test_worker_sends_each_broadcast_row_once_with_sender_and_status_callback(
    app, twilio, runner, store, fake_twilio, clock, sender, sent_as
) -> None:
    phones = (PHONE, OTHER, THIRD)
    subscribe(twilio, *phones)
    broadcast(runner, "Acme VIP: 2-for-1 lattes today. Reply STOP to cancel.")

    counts = worker(app, fake_twilio, clock, sender=sender).run(once=True)

    assert counts["sent"] == 3
    for phone in phones:
        [form] = creates(fake_twilio, phone)
        assert form["Body"] == "Acme VIP: 2-for-1 lattes today. Reply STOP to cancel."
        assert form["StatusCallback"] == CALLBACK
        assert {k: form.get(k) for k in ("From", "MessagingServiceSid")} == {
            "From": None,
            "MessagingServiceSid": None,
            **sent_as,
        }
    by_phone = {m["to"]: m["sid"] for m in fake_twilio.sent()}
    rows = store.outbox()
    assert [(r.state, r.sid) for r in rows] == [("sent", by_phone[r.phone]) for r in rows]
    for phone in phones:
        [message] = outbound(store, phone)
        assert (message.sid, message.body, message.flow) == (
            by_phone[phone],
            "Acme VIP: 2-for-1 lattes today. Reply STOP to cancel.",
            "vip",
        )
    # Sent rows stay sent: another pass (even a day later) creates nothing.
    clock.advance(timedelta(days=1))
    worker(app, fake_twilio, clock, sender=sender).run(once=True)
    assert len(creates(fake_twilio)) == 3


def test_broadcast_at_a_future_time_waits_until_the_clock_passes_it(
    app, twilio, runner, store, fake_twilio, clock
) -> None:
    subscribe(twilio, PHONE)
    at = clock() + timedelta(hours=3)
    broadcast(runner, "Happy hour starts now.", "--at", at.isoformat())

    # The real clock is hours short of --at: the CLI's --once finds nothing due.
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "nothing to send" in result.output
    clock.set(at - timedelta(seconds=1))
    worker(app, fake_twilio, clock).run(once=True)
    assert creates(fake_twilio) == []
    assert states(store) == ["queued"]

    clock.set(at)
    worker(app, fake_twilio, clock).run(once=True)
    assert [m["body"] for m in fake_twilio.sent(PHONE)] == ["Happy hour starts now."]
    assert states(store) == ["sent"]


def test_send_rate_spaces_the_sends(app, twilio, runner, settings, fake_twilio, clock) -> None:
    subscribe(twilio, PHONE, OTHER, THIRD, "+15555550133")
    broadcast(runner, "Two a second.")

    worker(app, fake_twilio, clock, rate=2).run(once=True)

    sent_at = sorted(map(datetime.fromisoformat, outbox_column(settings, "finished_at")))
    gaps = [later - earlier for earlier, later in zip(sent_at, sent_at[1:], strict=False)]
    assert gaps == [timedelta(seconds=0.5)] * 3


# -- re-checked at send time ------------------------------------------------------------------


def test_stop_after_queueing_cancels_that_numbers_row(
    app, twilio, runner, store, fake_twilio, clock
) -> None:
    subscribe(twilio, PHONE, OTHER)
    broadcast(runner, "Weekend deals inside.")
    twilio.say("STOP", phone=PHONE)

    counts = worker(app, fake_twilio, clock).run(once=True)

    assert fake_twilio.sent(PHONE) == [] and len(fake_twilio.sent(OTHER)) == 1
    assert {r.phone: r.state for r in store.outbox()} == {PHONE: "cancelled", OTHER: "sent"}
    assert counts["cancel: opted out"] == 1


def test_erased_number_is_not_sent_a_queued_broadcast(
    app, twilio, runner, store, fake_twilio, clock
) -> None:
    subscribe(twilio, PHONE, OTHER)
    broadcast(runner, "Weekend deals inside.")
    erased = runner.invoke(args=["subject", "erase", PHONE, "--yes"])
    assert erased.exit_code == 0, erased.output

    worker(app, fake_twilio, clock).run(once=True)

    assert creates(fake_twilio, PHONE) == [] and len(fake_twilio.sent(OTHER)) == 1
    assert [r.state for r in store.outbox() if r.phone == PHONE] in ([], ["cancelled"])


def test_erasure_leaves_the_number_nowhere_in_the_outbox(
    app, twilio, runner, store, settings, fake_twilio, clock
) -> None:
    """SPEC §7: after erasure the number appears nowhere in the database (nor, on SQLite,
    in the file's bytes). The outbox holds it too: a broadcast already sent and one still queued."""
    subscribe(twilio, PHONE)
    broadcast(runner, "First deal.")
    worker(app, fake_twilio, clock).run(once=True)
    broadcast(runner, "Second deal.")
    erased = runner.invoke(args=["subject", "erase", PHONE, "--yes"])
    assert erased.exit_code == 0, erased.output

    assert [r.state for r in store.outbox() if r.phone == PHONE] == []
    assert database.places_holding(settings, PHONE) == []


def test_frequency_cap_holds_the_fifth_broadcast_until_the_window_rolls(
    app, twilio, runner, store, fake_twilio, clock
) -> None:
    subscribe(twilio, PHONE)
    first = clock()
    for day in range(4):  # vip is 4/month: four sends on four days
        clock.set(first + timedelta(days=day))
        broadcast(runner, f"Deal number {day + 1}.")
        worker(app, fake_twilio, clock).run(once=True)
    assert len(fake_twilio.sent(PHONE)) == 4

    clock.set(first + timedelta(days=4))
    broadcast(runner, "Deal number 5.")
    counts = worker(app, fake_twilio, clock).run(once=True)

    assert counts["hold: frequency cap"] == 1
    held = store.outbox()[-1]
    assert (held.state, held.not_before) == ("queued", first + timedelta(days=30))
    clock.set(first + timedelta(days=30, seconds=-1))
    worker(app, fake_twilio, clock).run(once=True)
    assert len(fake_twilio.sent(PHONE)) == 4
    clock.set(first + timedelta(days=30))  # the first send leaves the 30-day window
    worker(app, fake_twilio, clock).run(once=True)
    assert [m["body"] for m in fake_twilio.sent(PHONE)][-1] == "Deal number 5."
    assert states(store) == ["sent"] * 5


def test_frequency_cap_counts_broadcasts_sent_in_the_same_batch(
    app, twilio, runner, store, fake_twilio, clock
) -> None:
    """Five broadcasts due at once for one number (queued together, or all released when
    quiet hours end) must still respect vip's 4/month: the fifth waits."""
    subscribe(twilio, PHONE)
    for number in range(1, 6):
        broadcast(runner, f"Deal number {number}.")

    worker(app, fake_twilio, clock).run(once=True)

    assert len(fake_twilio.sent(PHONE)) == 4
    assert states(store) == ["sent"] * 4 + ["queued"]


def test_quiet_hours_hold_a_new_york_broadcast_until_8am_there(
    app, twilio, runner, store, fake_twilio, clock
) -> None:
    subscribe(twilio, NY_PHONE)
    broadcast(runner, "Tomorrow's deal.")
    clock.set(ny_evening(22))

    counts = worker(app, fake_twilio, clock, quiet=QUIET).run(once=True)

    assert counts["hold: quiet hours"] == 1
    morning = ny_evening(8, days_ahead=2)
    [held] = store.outbox()
    assert (held.state, held.not_before) == ("queued", morning)
    clock.set(morning - timedelta(seconds=1))
    worker(app, fake_twilio, clock, quiet=QUIET).run(once=True)
    assert creates(fake_twilio) == []
    clock.set(morning)
    worker(app, fake_twilio, clock, quiet=QUIET).run(once=True)
    assert [m["body"] for m in fake_twilio.sent(NY_PHONE)] == ["Tomorrow's deal."]


def test_once_sends_every_due_row_even_behind_held_ones(
    app, twilio, runner, store, fake_twilio, clock
) -> None:
    """`worker --once` sends what is due now: at 22:00 in New York (19:00 in Los Angeles) the
    Los Angeles subscriber's row is due even though the New York rows ahead of it are held."""
    new_yorkers = [f"+1212555012{digit}" for digit in range(5)]
    subscribe(twilio, *new_yorkers, LA_PHONE)
    broadcast(runner, "Evening deal.")
    assert store.outbox()[-1].phone == LA_PHONE  # behind the five New York rows
    clock.set(ny_evening(22))

    worker(app, fake_twilio, clock, quiet=QUIET, rate=1).run(once=True)

    assert [m["to"] for m in fake_twilio.sent()] == [LA_PHONE]


def test_web_prompt_is_not_held_by_quiet_hours(app, client, store, fake_twilio, clock) -> None:
    response = optin(client, NY_PHONE)
    assert response.status_code == 202, response.json
    clock.set(ny_evening(22))

    worker(app, fake_twilio, clock, quiet=QUIET).run(once=True)

    flow = app.extensions["smsbot.flows"].flow("vip")
    assert [m["body"] for m in fake_twilio.sent(NY_PHONE)] == [flow.replies.prompt]
    assert [(r.kind, r.state) for r in store.outbox()] == [("prompt", "sent")]


def test_web_prompt_is_not_counted_toward_the_cap(
    app, client, twilio, runner, store, fake_twilio, clock
) -> None:
    assert optin(client, PHONE).status_code == 202
    worker(app, fake_twilio, clock).run(once=True)
    twilio.say("YES", phone=PHONE)
    for number in range(1, 5):  # the prompt went this month, yet all four broadcasts fit
        clock.advance(timedelta(hours=1))
        broadcast(runner, f"Deal number {number}.")
        worker(app, fake_twilio, clock).run(once=True)

    assert [r.kind for r in store.outbox() if r.state == "sent"] == ["prompt"] + ["broadcast"] * 4
    assert len(fake_twilio.sent(PHONE)) == 5


# -- failures ---------------------------------------------------------------------------------


def test_carrier_opt_out_21610_on_send_fails_the_row_and_opts_the_number_out(
    app, twilio, runner, store, settings, fake_twilio, clock
) -> None:
    subscribe(twilio, PHONE)
    replies_before = len(store.messages(PHONE))
    broadcast(runner, "Deal of the week.")
    fake_twilio.fail(PHONE, 21610)

    counts = worker(app, fake_twilio, clock).run(once=True)

    assert counts["failed"] == 1
    [row] = store.outbox()
    assert (row.state, row.attempts) == ("failed", 1)
    assert store.contact(PHONE).opted_out
    last = store.ledger_for(subject_key(settings["SECRET_KEY"], PHONE))[-1]
    assert (last.event, last.body["source"], last.body["flow"]) == ("opted_out", "carrier", "vip")
    # No stop confirmation: Twilio blocks every message to the number now.
    assert len(creates(fake_twilio)) == 1
    assert len(store.messages(PHONE)) == replies_before
    assert outbox_column(settings, "error_code") == ["21610"]


@pytest.mark.parametrize(
    "code",
    [pytest.param(21211, id="21211-invalid-number"), pytest.param(21614, id="21614-not-mobile")],
)
def test_permanent_error_fails_the_row_without_retry(
    app, twilio, runner, store, settings, fake_twilio, clock, code
) -> None:
    subscribe(twilio, PHONE)
    broadcast(runner, "Deal of the week.")
    fake_twilio.fail(PHONE, code)

    worker(app, fake_twilio, clock).run(once=True)
    for delay in RETRY_DELAYS:
        clock.advance(delay)
        worker(app, fake_twilio, clock).run(once=True)

    assert len(creates(fake_twilio)) == 1
    assert states(store) == ["failed"]
    assert outbox_column(settings, "error_code") == [str(code)]
    assert not store.contact(PHONE).opted_out


TRANSIENT = [
    pytest.param(20429, 429, id="20429-too-many-requests"),
    pytest.param(20500, 500, id="500-internal-error"),
    pytest.param(20503, 503, id="503-unavailable"),
]


@pytest.mark.parametrize("code,status", TRANSIENT)
def test_transient_error_is_retried_after_the_backoff_then_sent(
    app, twilio, runner, store, fake_twilio, clock, code, status
) -> None:
    subscribe(twilio, PHONE)
    broadcast(runner, "Deal of the week.")
    fake_twilio.fail(PHONE, code, status, times=1)
    failed_at = clock()

    counts = worker(app, fake_twilio, clock).run(once=True)

    assert counts["retried"] == 1
    [row] = store.outbox()
    assert (row.state, row.not_before) == ("queued", failed_at + RETRY_DELAYS[0])
    clock.set(failed_at + RETRY_DELAYS[0] - timedelta(seconds=1))
    worker(app, fake_twilio, clock).run(once=True)
    assert len(creates(fake_twilio)) == 1
    clock.set(failed_at + RETRY_DELAYS[0])
    worker(app, fake_twilio, clock).run(once=True)
    assert len(creates(fake_twilio)) == 2
    [message] = fake_twilio.sent(PHONE)
    [row] = store.outbox()
    assert (row.state, row.sid, row.attempts) == ("sent", message["sid"], 2)


def test_always_failing_transient_send_fails_after_four_attempts(
    app, twilio, runner, store, fake_twilio, clock
) -> None:
    subscribe(twilio, PHONE)
    broadcast(runner, "Deal of the week.")
    fake_twilio.fail(PHONE, 20503, 503)

    worker(app, fake_twilio, clock).run(once=True)
    for delay in (*RETRY_DELAYS, timedelta(hours=1)):
        clock.advance(delay)
        worker(app, fake_twilio, clock).run(once=True)

    assert MAX_ATTEMPTS == 4
    assert len(creates(fake_twilio)) == 4
    [row] = store.outbox()
    assert (row.state, row.attempts) == ("failed", 4)
    assert fake_twilio.sent() == []


# -- never twice --------------------------------------------------------------------------------


def slow_client(fake_twilio) -> Client:
    """A real twilio client that gives up after 0.2 s (the app's own waits 15 s)."""
    client = Client(
        fake_twilio.account_sid,
        fake_twilio.auth_token,
        http_client=TwilioHttpClient(timeout=0.2),
    )
    client.api.base_url = fake_twilio.url
    return client


def timing_out_worker(app, fake_twilio, clock) -> Worker:
    return Worker(
        app.extensions["smsbot.store"],
        app.extensions["smsbot.flows"],
        slow_client(fake_twilio),
        SENDER,
        parse_quiet_hours("off"),
        rate=0,
        status_callback=CALLBACK,
        clock=clock,
        sleep=clock.sleep,
    )


def test_send_that_timed_out_is_reconciled_not_sent_again(
    app, twilio, runner, store, fake_twilio, clock
) -> None:
    subscribe(twilio, PHONE)
    broadcast(runner, "Deal of the week.")
    fake_twilio.delay = 0.5  # Twilio creates the message, but answers after the client gave up

    counts = timing_out_worker(app, fake_twilio, clock).run(once=True)

    assert counts["reconciled"] == 1
    assert states(store) == ["sending"]  # the lookup timed out too: nobody knows yet
    fake_twilio.delay = 0
    clock.advance(timedelta(minutes=1))
    worker(app, fake_twilio, clock).run(once=True)  # the next worker asks Twilio
    [message] = fake_twilio.sent(PHONE)
    assert len(creates(fake_twilio)) == 1
    [row] = store.outbox()
    assert (row.state, row.sid) == ("sent", message["sid"])
    assert [m.sid for m in outbound(store, PHONE)] == [message["sid"]]


def test_send_whose_outcome_is_unknown_is_settled_by_the_same_running_worker(
    app, twilio, runner, store, fake_twilio, clock
) -> None:
    """A timed-out send whose lookup also failed is reconciled later by the worker that
    claimed it (the Procfile's worker runs for days), not left `sending` until a restart."""
    subscribe(twilio, PHONE)
    broadcast(runner, "Deal of the week.")
    fake_twilio.delay = 0.5
    same = timing_out_worker(app, fake_twilio, clock)
    same.run(once=True)
    fake_twilio.delay = 0
    clock.advance(timedelta(minutes=5))

    passes = iter(range(3))  # three idle passes of the loop, each a reconcile
    same.run(stop=lambda: next(passes, None) is None)

    assert len(creates(fake_twilio)) == 1
    assert states(store) == ["sent"]
