"""What only PostgreSQL has to prove: many processes on one database. Webhooks from several
gunicorn workers at once keep one linear ledger, duplicates included; workers share one
outbox without sending a row twice (FOR UPDATE SKIP LOCKED); one number's lock holds only
that number; each process has its own connection; a bad URL stops start-up clearly.
Every other storage test runs on PostgreSQL too (the `backend` fixture)."""

from __future__ import annotations

import multiprocessing
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from app import SettingsError, create_app
from flows.loader import load_flows
from flows.schedule import parse_quiet_hours
from outbox import Worker, twilio_client
from storage import open_store
from storage.ledger import subject_key
from tests import database
from tests.conftest import AUTH_TOKEN, PHONE, POSTGRES_URL, SHIPPED_FLOWS, Backend
from tests.live import BOOT_LIMIT, Gunicorn
from tests.live import SECRET_KEY as LIVE_SECRET_KEY
from tests.sending import SENDER, Clock, creates, subscribe
from tests.sending import fake_twilio as fake_twilio  # the fixtures, shared by the sending tests
from tests.sending import settings as settings

ON_POSTGRES = pytest.mark.parametrize("backend", ["postgres"], indirect=True)
FLOWS = load_flows(SHIPPED_FLOWS)
VIP = FLOWS.flow("vip")
OTHER = "+15555550111"
TEXT = "Acme VIP: 2-for-1 lattes today. Reply STOP to cancel."


# -- many gunicorn workers, one ledger ----------------------------------------------------------

WORKERS = 4
NUMBERS = [f"+1555555{2000 + n:04d}" for n in range(6)]
COPIES = 2  # each webhook is posted this many times at once: Twilio's retries, racing


def phase(server: Gunicorn, posts: list[tuple[str, str, str]]) -> dict[str, set[str]]:
    """POST every (text, phone, sid) at once, each COPIES times; returns each sid's answers."""
    jobs = [post for post in posts for _ in range(COPIES)]
    start = threading.Barrier(len(jobs))

    def send(post: tuple[str, str, str]) -> tuple[str, int, str]:
        text, phone, sid = post
        start.wait()
        answer = server.text(text, phone, sid)
        return sid, answer.status, answer.body

    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(send, jobs))
    assert {status for _, status, _ in answers} == {200}, answers
    by_sid: dict[str, set[str]] = {}
    for sid, _, body in answers:
        by_sid.setdefault(sid, set()).add(body)
    return by_sid


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll until `condition` holds; BOOT_LIMIT bounds a stuck wait, it is not a check."""
    deadline = time.monotonic() + BOOT_LIMIT
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def messages(twiml: str) -> tuple[str, ...]:
    return tuple(message.text for message in ET.fromstring(twiml).iter("Message"))


def server_connections(backend: Backend) -> int:
    """Sessions open in the test's schema, other than the one asking."""
    return database.scalar(
        backend.config,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = current_schema()"
        " AND pid <> pg_backend_pid()",
    )


@ON_POSTGRES
def test_webhooks_from_many_processes_keep_one_linear_ledger(
    tmp_path: Path, backend: Backend
) -> None:
    # Every number is texted by several senders at once through four gunicorn workers, and
    # each webhook arrives twice at the same moment. Whatever the interleaving, the events
    # are fixed: three distinct JOINs are three `requested` (a JOIN while pending prompts
    # again), one YES is one `confirmed`, and of two STOPs only the first opts out.
    joins = [("JOIN", phone, f"SM{phone[1:]}J{n}") for phone in NUMBERS for n in range(3)]
    yeses = [("YES", phone, f"SM{phone[1:]}Y") for phone in NUMBERS]
    stops = [("STOP", phone, f"SM{phone[1:]}S{n}") for phone in NUMBERS for n in range(2)]
    with Gunicorn(tmp_path, workers=WORKERS, **backend.env) as server:
        answers = {}
        for posts in (joins, yeses, stops):
            answers.update(phase(server, posts))
        # One connection per worker, opened in the worker after the fork: the arbiter holds
        # none that its workers could inherit and share. (Polled: a worker may still boot.)
        wait_until(lambda: server_connections(backend) == WORKERS)
        assert server_connections(backend) == WORKERS

    # A duplicate got the very answer its first copy got; the stop text went out once.
    assert all(len(bodies) == 1 for bodies in answers.values()), answers
    replied = {sid: messages(bodies.pop()) for sid, bodies in answers.items()}
    assert {replied[sid] for _, _, sid in joins} == {(VIP.replies.prompt,)}
    for phone in NUMBERS:
        to_stops = sorted(replied[sid] for _, number, sid in stops if number == phone)
        assert to_stops == [(), (FLOWS.gateway.stop,)], phone
    app = create_app({**backend.config, "SECRET_KEY": LIVE_SECRET_KEY, "TWILIO_AUTH_TOKEN": "t"})
    try:
        verified = app.test_cli_runner().invoke(args=["ledger", "verify"])
    finally:
        app.extensions["smsbot.store"].close()
    events = len(NUMBERS) * 5
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith(f"ok {events} events\n")

    ledger = database.rows(
        backend.config, "SELECT seq, subject_key, event FROM ledger ORDER BY seq"
    )
    assert [seq for seq, _, _ in ledger] == list(range(1, events + 1))
    for phone in NUMBERS:
        key = subject_key(LIVE_SECRET_KEY, phone)
        story = [event for _, subject, event in ledger if subject == key]
        assert story == ["requested"] * 3 + ["confirmed", "opted_out"], phone
        inbound = database.count(
            backend.config, "messages", "direction = 'in' AND phone = ?", phone
        )
        assert inbound == 3 + 1 + 2, phone  # one row per MessageSid, however often it came


# -- one number's lock holds only that number ---------------------------------------------------


@pytest.fixture
def impatient(settings) -> None:
    """Give up on a held lock after 0.05 s instead of 5 s (asked for before `app`)."""
    settings["BUSY_TIMEOUT"] = 0.05


@ON_POSTGRES
def test_a_held_number_lock_holds_that_number_only(impatient, settings, twilio) -> None:
    with psycopg.connect(settings["DATABASE_URL"], autocommit=True) as holder:
        holder.execute("BEGIN")  # another worker, mid-message for PHONE
        holder.execute("SELECT pg_advisory_xact_lock(1, hashtext(%s))", (PHONE,))
        assert twilio.text("JOIN", phone=PHONE).status_code == 503
        assert twilio.say("JOIN", phone=OTHER) == [VIP.replies.prompt]
        holder.execute("ROLLBACK")
    assert twilio.say("JOIN", phone=PHONE) == [VIP.replies.prompt]


# -- several workers, one outbox ----------------------------------------------------------------


def outbox_worker(settings, fake, name: str) -> Worker:
    """A worker with its own store (its own connection), as a separate process would have,
    pacing itself at 5 a second on its own clock so that it claims five rows at a time."""
    store = open_store(
        settings["DATABASE"], settings["SECRET_KEY"], 0.5, url=settings["DATABASE_URL"]
    )
    clock = Clock(datetime.now(UTC) + timedelta(seconds=10))
    worker = Worker(
        store,
        FLOWS,
        twilio_client(fake.account_sid, fake.auth_token, fake.url),
        SENDER,
        parse_quiet_hours("off"),
        rate=5,
        clock=clock,
        sleep=clock.sleep,
    )
    worker.name = name
    return worker


def queue_broadcast(runner) -> None:
    result = runner.invoke(args=["broadcast", "--flow", "vip", "--text", TEXT])
    assert result.exit_code == 0, result.output


@ON_POSTGRES
def test_two_workers_drain_one_outbox_sending_each_row_once(
    settings, twilio, runner, store, fake_twilio
) -> None:
    phones = [f"+1555555{3000 + n:04d}" for n in range(24)]
    subscribe(twilio, *phones)
    queue_broadcast(runner)
    fake_twilio.delay = 0.002  # each send takes a moment: the two workers' claims interleave
    workers = [outbox_worker(settings, fake_twilio, name) for name in ("one", "two")]
    start = threading.Barrier(len(workers))

    def drain(worker: Worker) -> Counter:
        start.wait()
        try:
            return worker.run(once=True)
        finally:
            worker.store.close()

    with ThreadPoolExecutor(len(workers)) as pool:
        counts = list(pool.map(drain, workers))

    assert sum(c["sent"] for c in counts) == len(phones), counts
    per_row = Counter((form["To"], form["Body"]) for form in creates(fake_twilio))
    assert per_row == Counter({(phone, TEXT): 1 for phone in phones})
    assert {row.state for row in store.outbox()} == {"sent"}
    claimed_by = database.column(settings, "SELECT claimed_by FROM outbox")
    assert set(claimed_by) <= {"one", "two"}


@ON_POSTGRES
def test_a_worker_skips_rows_another_worker_holds_instead_of_waiting(
    settings, twilio, runner, store, fake_twilio
) -> None:
    phones = [f"+1555555{4000 + n:04d}" for n in range(6)]
    subscribe(twilio, *phones)
    queue_broadcast(runner)
    with psycopg.connect(settings["DATABASE_URL"], autocommit=True) as other:
        other.execute("BEGIN")  # another worker, mid-claim: two rows locked
        held = [
            phone
            for (phone,) in other.execute(
                "SELECT phone FROM outbox ORDER BY id LIMIT 2 FOR UPDATE"
            ).fetchall()
        ]
        first = outbox_worker(settings, fake_twilio, "first")
        try:
            # Without SKIP LOCKED this would wait on the held rows, then give up (StoreBusy).
            assert first.run(once=True)["sent"] == len(phones) - len(held)
        finally:
            first.store.close()
        other.execute("ROLLBACK")
    assert sorted(form["To"] for form in creates(fake_twilio)) == sorted(set(phones) - set(held))

    second = outbox_worker(settings, fake_twilio, "second")
    try:
        assert second.run(once=True)["sent"] == len(held)
    finally:
        second.store.close()
    per_row = Counter(form["To"] for form in creates(fake_twilio))
    assert per_row == Counter(dict.fromkeys(phones, 1))


# -- one connection per process -----------------------------------------------------------------


def _child_session(store, results) -> None:
    """In the forked child: ping, say which server session answered, close."""
    alive = store.ping()
    results.put((alive, store._conn().execute("SELECT pg_backend_pid()").fetchone()[0]))
    store.close()


@ON_POSTGRES
def test_a_forked_process_opens_its_own_connection(backend: Backend) -> None:
    # gunicorn forks its workers; a connection shared across a fork would mix two
    # processes' queries on one socket. The store keys its connection by os.getpid().
    store = open_store(backend.database, "test-secret-key", url=backend.url)
    store.migrate()
    try:
        assert store.ping()
        parent = store._conn().execute("SELECT pg_backend_pid()").fetchone()[0]
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        child = context.Process(target=_child_session, args=(store, results))
        child.start()
        alive, child_session = results.get(timeout=BOOT_LIMIT)
        child.join(BOOT_LIMIT)
        assert child.exitcode == 0
        assert alive
        assert child_session != parent
        # The child's connection came and went; the parent's is untouched.
        assert store.ping()
        assert store._conn().execute("SELECT pg_backend_pid()").fetchone()[0] == parent
    finally:
        store.close()


# -- start-up errors ----------------------------------------------------------------------------


def app_settings(tmp_path: Path, url: str) -> dict[str, object]:
    return {
        "DATABASE": str(tmp_path / "unused.db"),
        "DATABASE_URL": url,
        "FLOWS_DIR": str(SHIPPED_FLOWS),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SECRET_KEY": "test-secret-key",
    }


@pytest.mark.parametrize(
    "url, named",
    [
        pytest.param(
            "postgresql://postgres:hunter2@127.0.0.1:1/test",
            "can't connect to postgresql://127.0.0.1:1/test: ",
            id="nothing-listening",
        ),
        pytest.param(
            "postgres://postgres:hunter2@127.0.0.1:notaport/test",
            "can't connect to postgres://(malformed address): ",
            id="port-not-a-number",
        ),
        pytest.param(
            "postgresql://postgres:hunter2@[::1/test",
            "can't connect to postgresql://(malformed address): ",
            id="unclosed-ipv6-bracket",
        ),
    ],
)
def test_unusable_url_stops_start_up_naming_the_server_not_the_password(
    tmp_path: Path, url: str, named: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        create_app(app_settings(tmp_path, url))
    assert str(raised.value).startswith(named)
    assert "hunter2" not in str(raised.value)
    assert "hunter2" not in repr(raised.value.__cause__) + repr(raised.value.__context__)


@ON_POSTGRES
def test_missing_database_stops_start_up_naming_it(tmp_path: Path, backend: Backend) -> None:
    parts = urlsplit(POSTGRES_URL)
    with_password = parts._replace(
        netloc=f"{parts.username or 'postgres'}:hunter2@{parts.hostname}:{parts.port or 5432}",
        path="/smsbot_no_such_database",
    )
    with pytest.raises(SettingsError) as raised:
        create_app(app_settings(tmp_path, urlunsplit(with_password)))
    message = str(raised.value)
    assert message.startswith(
        f"can't connect to {parts.scheme}://{parts.hostname}:{parts.port or 5432}"
        "/smsbot_no_such_database: "
    )
    assert 'database "smsbot_no_such_database" does not exist' in message
    assert "hunter2" not in message


# -- a connection the server dropped ------------------------------------------------------------


@ON_POSTGRES
def test_a_message_after_the_server_dropped_the_connection_is_handled(
    settings, client, twilio
) -> None:
    # A server restart (or an idle timeout) ends every idle session. The next webhook must
    # not be a 500 that loses the message: the store connects again before it begins.
    assert client.get("/healthz").status_code == 200
    dropped = "application_name = current_schema() AND pid <> pg_backend_pid()"
    database.execute(
        settings, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {dropped}"
    )
    wait_until(lambda: database.count(settings, "pg_stat_activity", dropped) == 0)
    assert twilio.say("JOIN") == [VIP.replies.prompt]
    assert client.get("/healthz").status_code == 200
