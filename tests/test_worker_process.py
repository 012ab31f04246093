"""`flask broadcast` and `flask worker` as an operator runs them (SPEC §4, §8): the commands
through the CLI runner, and the worker as a real process that is killed mid-batch or
stopped with SIGTERM, sending over HTTP to the fake Twilio in this test process."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from app import create_app
from storage.ledger import subject_key
from tests import database
from tests.conftest import PHONE, PUBLIC_URL, ROOT
from tests.live import BOOT_LIMIT, smsbot_env
from tests.sending import creates, subscribe
from tests.sending import fake_twilio as fake_twilio  # the fixtures, shared by the sending tests
from tests.sending import settings as settings

OTHER = "+15555550111"
THIRD = "+15555550122"
TEXT = "Acme VIP: 2-for-1 lattes today. Reply STOP to cancel."


def broadcast(runner, *args: str):
    return runner.invoke(args=["broadcast", *args])


def outbox_states(settings) -> Counter:
    return Counter(database.column(settings, "SELECT state FROM outbox"))


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen) -> None:
    """Poll until `condition` holds; BOOT_LIMIT is a bound for a stuck process, not a check."""
    deadline = time.monotonic() + BOOT_LIMIT
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"worker exited {process.returncode} before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {BOOT_LIMIT}s")
        time.sleep(0.01)


# -- flask broadcast ----------------------------------------------------------------------------


def test_broadcast_queues_one_row_per_current_subscriber_and_reports_left_out(
    twilio, runner, store, settings
) -> None:
    subscribe(twilio, PHONE, OTHER, THIRD)
    twilio.say("JOIN", phone="+15555550133")  # pending: not a subscriber
    subscribe(twilio, "+15555550144")
    twilio.say("STOP", phone="+15555550144")  # opted out: no longer a subscriber
    # Erased, then subscribed again by texting JOIN and YES: the person's own new consent
    # lifts the suppression, so they are a subscriber like any other.
    subscribe(twilio, "+15555550155")
    assert runner.invoke(args=["subject", "erase", "+15555550155", "--yes"]).exit_code == 0
    subscribe(twilio, "+15555550155")
    # A subscriber whose key is suppressed (put there by hand) is left out at queue time.
    subscribe(twilio, "+15555550166")
    key = subject_key(settings["SECRET_KEY"], "+15555550166")
    database.execute(settings, "INSERT INTO suppressions VALUES (?, 'by hand', '2026-01-01')", key)

    result = broadcast(runner, "--flow", "vip", "--text", TEXT)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("queued 4 for vip, not before ")
    assert lines[1] == "left out 1; 1 suppressed"
    rows = store.outbox()
    assert sorted(r.phone for r in rows) == sorted([PHONE, OTHER, THIRD, "+15555550155"])
    assert {(r.flow, r.kind, r.body, r.state, r.attempts) for r in rows} == {
        ("vip", "broadcast", TEXT, "queued", 0)
    }


USAGE_ERRORS = [
    pytest.param(["--flow", "nope", "--text", TEXT], "no flow 'nope'", id="unknown-flow"),
    pytest.param(["--flow", "vip", "--text", ""], "1 to 1,600 characters", id="empty-text"),
    pytest.param(["--flow", "vip", "--text", "   "], "1 to 1,600 characters", id="blank-text"),
    pytest.param(
        ["--flow", "vip", "--text", "x" * 1601], "1 to 1,600 characters", id="text-over-1600"
    ),
    pytest.param(["--flow", "vip", "--text", TEXT, "--at", "tomorrow"], "ISO-8601", id="bad-at"),
    pytest.param(["--text", TEXT], "--flow", id="no-flow"),
    pytest.param(["--flow", "vip"], "--text", id="no-text"),
]


@pytest.mark.parametrize("args,message", USAGE_ERRORS)
def test_broadcast_usage_errors_queue_nothing(twilio, runner, store, args, message) -> None:
    subscribe(twilio, PHONE)

    result = broadcast(runner, *args)

    assert result.exit_code == 2, result.output
    assert message in result.output
    assert store.outbox() == []


def test_broadcast_of_exactly_1600_characters_is_queued(twilio, runner, store) -> None:
    subscribe(twilio, PHONE)

    result = broadcast(runner, "--flow", "vip", "--text", "x" * 1600)

    assert result.exit_code == 0, result.output
    assert [len(r.body) for r in store.outbox()] == [1600]


# -- flask worker --once, in-process ------------------------------------------------------------


def test_worker_once_sends_the_queue_and_prints_counts(twilio, runner, store, fake_twilio) -> None:
    subscribe(twilio, PHONE, OTHER)
    assert broadcast(runner, "--flow", "vip", "--text", TEXT).exit_code == 0

    result = runner.invoke(args=["worker", "--once"])

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "2 sent"
    assert sorted(form["To"] for form in creates(fake_twilio)) == [PHONE, OTHER]
    assert [r.state for r in store.outbox()] == ["sent", "sent"]
    again = runner.invoke(args=["worker", "--once"])
    assert again.output.strip() == "nothing to send"
    assert len(creates(fake_twilio)) == 2


@pytest.mark.parametrize(
    "missing", ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"], ids=str.lower
)
def test_worker_refuses_to_start_without_twilio_settings(settings, missing) -> None:
    app = create_app({**settings, missing: None})
    try:
        result = app.test_cli_runner().invoke(args=["worker", "--once"])
    finally:
        app.extensions["smsbot.store"].close()

    assert result.exit_code == 1
    assert f"SMSBOT_{missing} is not set" in result.output


# -- flask worker as a process ----------------------------------------------------------------


def worker_env(tmp_path: Path, settings: dict, fake, **overrides: str) -> dict[str, str]:
    """The environment of a `flask worker` process on the test's database, sending to `fake`."""
    sending = {
        "DATABASE": str(settings["DATABASE"]),
        **({"DATABASE_URL": settings["DATABASE_URL"]} if settings["DATABASE_URL"] else {}),
        "SECRET_KEY": str(settings["SECRET_KEY"]),
        "PUBLIC_URL": PUBLIC_URL,
        "TWILIO_API_URL": fake.url,
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": fake.auth_token,
        "TWILIO_FROM": "+15555550199",
        "QUIET_HOURS": "off",
        "SEND_RATE": "0",
    }
    env = smsbot_env(tmp_path, **{**sending, **overrides})
    for name in ("TWILIO_EDGE", "TWILIO_REGION"):  # they would send the client elsewhere
        env.pop(name, None)
    return env


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["flask", "worker", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.fixture
def processes() -> list[subprocess.Popen]:
    """Worker processes a test started; any still running at the end are killed."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_worker_killed_mid_batch_sends_every_row_exactly_once_after_restart(
    tmp_path, twilio, runner, settings, fake_twilio, processes
) -> None:
    phones = [f"+1555555{1000 + n:04d}" for n in range(30)]
    subscribe(twilio, *phones)
    assert broadcast(runner, "--flow", "vip", "--text", TEXT).exit_code == 0
    env = worker_env(tmp_path, settings, fake_twilio)
    fake_twilio.delay = 0.05  # slow enough that the batch is still going when we look
    first = start_worker(env)
    processes.append(first)

    wait_for(lambda: len(fake_twilio.sent()) >= 5, "five sends", first)
    # Hold the next answer: Twilio has created that message, the worker hasn't heard back.
    fake_twilio.delay = 10
    created = len(creates(fake_twilio))
    wait_for(lambda: len(creates(fake_twilio)) > created, "a send in flight", first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    fake_twilio.delay = 0
    killed_with = outbox_states(settings)
    assert killed_with["sending"] >= 1 and len(fake_twilio.sent()) < len(phones), killed_with

    second = subprocess.run(
        ["flask", "worker", "--once", "--reclaim-after", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BOOT_LIMIT,
    )

    assert second.returncode == 0, second.stderr
    # Every row the killed worker had claimed was looked up at Twilio before anything else.
    assert f"{killed_with['sending']} reconciled" in second.stdout
    assert outbox_states(settings) == Counter(sent=len(phones))
    per_row = Counter((form["To"], form["Body"]) for form in creates(fake_twilio))
    assert per_row == Counter({(phone, TEXT): 1 for phone in phones})
    stored = dict(database.rows(settings, "SELECT phone, sid FROM outbox"))
    logged = database.column(
        settings, "SELECT sid FROM messages WHERE direction = 'out' AND sid IS NOT NULL"
    )
    assert stored == {m["to"]: m["sid"] for m in fake_twilio.sent()}
    assert sorted(logged) == sorted(stored.values())


def test_worker_exits_cleanly_on_sigterm_when_idle(
    tmp_path, twilio, runner, settings, fake_twilio, processes
) -> None:
    subscribe(twilio, PHONE, OTHER, THIRD)
    assert broadcast(runner, "--flow", "vip", "--text", TEXT).exit_code == 0
    process = start_worker(worker_env(tmp_path, settings, fake_twilio))
    processes.append(process)
    wait_for(lambda: outbox_states(settings) == Counter(sent=3), "three rows sent", process)

    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=BOOT_LIMIT)

    assert process.returncode == 0, err
    assert out.strip() == "3 sent"


def test_worker_on_sigterm_settles_the_send_under_way_then_stops(
    tmp_path, twilio, runner, settings, fake_twilio, processes
) -> None:
    subscribe(twilio, PHONE, OTHER, THIRD)
    assert broadcast(runner, "--flow", "vip", "--text", TEXT).exit_code == 0
    # One a second: the worker claims one row at a time. Its first send waits for an answer.
    fake_twilio.delay = 1.0
    env = worker_env(tmp_path, settings, fake_twilio, SEND_RATE="1")
    process = start_worker(env)
    processes.append(process)
    wait_for(lambda: len(creates(fake_twilio)) == 1, "the first send", process)

    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=BOOT_LIMIT)

    assert process.returncode == 0, err
    assert out.strip() == "1 sent"
    assert len(creates(fake_twilio)) == 1
    assert outbox_states(settings) == Counter(sent=1, queued=2)
