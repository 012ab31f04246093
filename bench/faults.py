"""Fault drills: smsbot under the Procfile's gunicorn line while things go wrong.

    python bench/faults.py [--size 2000] [--drill kill|lock|duplicate] [--database-url URL]

kill       SIGKILL one gunicorn worker every second during a burst of signed webhooks (the
           workload of bench/workload.py); a request whose connection dies unanswered is
           retried with the same MessageSid, as Twilio would (3 tries in all: a retry
           can meet the next kill).
lock       another process holds SQLite's write lock (BEGIN IMMEDIATE) for 2 s mid-burst:
           with the default busy timeout (5 s) requests wait; with 1 s some fail with 503
           and are retried; and with 1 s while a worker killed as the hold starts boots
           again (its start-up migration must wait for the same lock).
duplicate  each MessageSid posted 20 times at once: one effect, 20 identical replies.

Each drill prints its counts and checks and the script exits 1 if a check fails. "Half
written" is made concrete by replaying: each number's stored inbound messages, in stored
order, go through the pure engine again, and the stored replies, ledger events (by
MessageSid), state and profile must be exactly what that replay gives; every ledger event
must name a stored inbound message; every 200 must be stored with the replies it
answered; and `flask ledger verify` must pass.

Loopback only; a temp SQLite file per drill (or, for kill and duplicate, a throwaway
schema in --database-url's PostgreSQL). Bounded: requests are paced over a fixed number of
seconds and stop being issued at a deadline; every socket has a timeout.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inbound import TOKEN, free_port, web_line  # noqa: E402
from bench.workload import BUSINESS, conversations, signed  # noqa: E402
from flows.contact import Contact  # noqa: E402
from flows.engine import handle  # noqa: E402
from flows.loader import load_flows  # noqa: E402
from flows.outcome import Inbound  # noqa: E402
from storage import Store, open_store  # noqa: E402

FLOWS_DIR = ROOT / "flows" / "definitions"
SECRET_KEY = "faults"
BOOT_LIMIT = 30.0  # seconds gunicorn gets to answer /healthz, or to stop
SOCKET_TIMEOUT = 20.0  # above gunicorn's --timeout 15: a stuck worker is killed first
CONCURRENCY = 16  # client threads; the pacing, not the threads, sets the rate


# --- the server ---------------------------------------------------------------------------


@dataclass
class Server:
    """The Procfile's web process on a loopback port, with its environment and log."""

    process: subprocess.Popen
    port: int
    env: dict[str, str]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def store(self) -> Store:
        """A store on the server's database, for the checks."""
        return open_store(
            self.env["SMSBOT_DATABASE"], SECRET_KEY, url=self.env.get("SMSBOT_DATABASE_URL")
        )

    def workers(self) -> list[tuple[int, str]]:
        """(pid, state) of each gunicorn worker: the master's children, read from /proc."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    # After the ")" closing the command name: state, ppid, ...
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:  # exited while we looked
                    continue
                if int(fields[1]) == self.process.pid:
                    found.append((int(entry.name), fields[0]))
        return found

    def stop(self) -> None:
        """SIGTERM the arbiter (it stops its workers); SIGKILL the group if it hangs."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=BOOT_LIMIT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def healthy(self) -> bool:
        """True when /healthz answers 200."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False


@contextmanager
def serve(scratch: Path, workers: int = 2, database_url: str | None = None, **settings: str):
    """Run the Procfile's `web:` line on a fresh database; yield the Server, stop it after."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSBOT_")}
    env.pop("DATABASE_URL", None)
    (scratch / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
        HOME=str(scratch),  # gunicorn's control socket stays out of the real home
        TMPDIR=str(scratch / "tmp"),
        PORT=str(port),
        WEB_CONCURRENCY=str(workers),
        SMSBOT_DATABASE=str(scratch / "smsbot.db"),
        SMSBOT_FLOWS_DIR=str(FLOWS_DIR),
        SMSBOT_TWILIO_AUTH_TOKEN=TOKEN,
        SMSBOT_SECRET_KEY=SECRET_KEY,
        SMSBOT_PUBLIC_URL=f"http://127.0.0.1:{port}",
    )
    if database_url:
        env["SMSBOT_DATABASE_URL"] = database_url
    env.update({f"SMSBOT_{k}": v for k, v in settings.items()})
    log = scratch / "gunicorn.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["sh", "-c", f"exec {web_line()}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the arbiter and its workers: one group, ours to end
        )
    server = Server(process, port, env, log)
    try:
        deadline = time.monotonic() + BOOT_LIMIT
        while not server.healthy():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


# --- the client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    """One signed inbound-message webhook, ready to post."""

    sid: str
    body: str  # urlencoded form
    signature: str


@dataclass(frozen=True)
class Answer:
    """What one POST got: an HTTP status and body, or no answer (status None) and why."""

    status: int | None
    body: str
    seconds: float
    error: str = ""


class Client:
    """Posts webhooks over http.client connections, one per thread, kept between requests
    (gunicorn's sync workers close each one; http.client then opens the next)."""

    def __init__(self, port: int):
        self.port = port
        self._local = threading.local()

    def post(self, hook: Webhook) -> Answer:
        """POST one webhook to /sms; a connection that fails unanswered gives status None."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=SOCKET_TIMEOUT
            )
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": hook.signature,
        }
        started = time.monotonic()
        try:
            conn.request("POST", "/sms", hook.body, headers)
            response = conn.getresponse()
            body = response.read().decode()
            return Answer(response.status, body, time.monotonic() - started)
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            self._local.conn = None
            return Answer(None, "", time.monotonic() - started, type(error).__name__)


def burst(
    client: Client, hooks: list[Webhook], seconds: float, attempts: int = 1
) -> list[list[Answer]]:
    """Post `hooks` paced evenly over `seconds` from CONCURRENCY threads; for each, its
    answers: the first, then up to `attempts - 1` retries after connection failures.
    Nothing new is posted past a deadline, so a hung server can't hold the drill."""
    answers: list[list[Answer]] = [[] for _ in hooks]
    counter, start = itertools.count(), time.monotonic()
    deadline = start + 3 * seconds + 30
    gap = seconds / max(1, len(hooks))

    def sender() -> None:
        while True:
            index = next(counter)
            if index >= len(hooks) or time.monotonic() > deadline:
                return
            time.sleep(max(0.0, start + index * gap - time.monotonic()))
            for attempt in range(attempts):
                if attempt:
                    time.sleep(0.1)  # Twilio retries later, not in the same instant
                answers[index].append(client.post(hooks[index]))
                if answers[index][-1].status is not None:
                    break

    _run_threads([sender] * CONCURRENCY)
    return answers


def webhooks(forms: list[dict[str, str]], url: str) -> list[Webhook]:
    """The forms signed for the server at `url`."""
    return [
        Webhook(form["MessageSid"], body, signature)
        for form, (body, signature) in zip(forms, signed(forms, url + "/sms", TOKEN), strict=True)
    ]


def twiml_replies(body: str) -> list[str]:
    """The <Message> texts of a TwiML answer."""
    return [message.text or "" for message in ET.fromstring(body).iter("Message")]


# --- results and checks -------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class DrillResult:
    """One drill's counts (first attempts; retries apart), facts and checks."""

    name: str
    setup: str
    requests: int = 0
    ok: int = 0
    busy: int = 0  # 503
    failed: int = 0  # 500, first attempts and retries: must stay 0
    other: int = 0  # any other status
    connection_errors: int = 0  # no HTTP answer at all
    retries: int = 0
    retried_ok: int = 0
    facts: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(check.ok for check in self.checks)

    def count(self, answers: list[list[Answer]]) -> None:
        """Tally each webhook's first answer, and its retries apart."""
        for first, *retries in answers:
            self.requests += 1
            self.ok += first.status == 200
            self.busy += first.status == 503
            self.other += first.status not in (None, 200, 500, 503)
            self.connection_errors += first.status is None
            self.retries += len(retries)
            self.retried_ok += sum(a.status == 200 for a in retries)
            self.failed += sum(a.status == 500 for a in (first, *retries))

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))

    def report(self) -> str:
        """The drill's printout."""
        lines = [
            f"{self.name}: {self.setup} ({self.seconds:.1f} s)",
            f"  requests {self.requests:,}  200: {self.ok:,}  503: {self.busy:,}"
            f"  500: {self.failed:,}  other status: {self.other:,}"
            f"  connection errors: {self.connection_errors:,}",
            f"  retries {self.retries:,}  answered 200 on retry: {self.retried_ok:,}",
            *(f"  {fact}" for fact in self.facts),
        ]
        for check in self.checks:
            detail = f" ({check.detail})" if check.detail else ""
            lines.append(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}{detail}")
        return "\n".join(lines)


def check_storage(
    result: DrillResult,
    server: Server,
    forms: list[dict[str, str]],
    answers: list[list[Answer]],
) -> None:
    """The checks every drill ends with, on the stopped server's database."""
    result.check("no 500 answers", result.failed == 0, f"{result.failed}")
    flows = load_flows(FLOWS_DIR)
    store = server.store()
    try:
        ledger = store.ledger()
        events: dict[str | None, list[tuple[str, str | None]]] = defaultdict(list)
        for row in ledger:
            events[(row.body or {}).get("sid")].append((row.event, (row.body or {}).get("flow")))
        stored: dict[str, list[str]] = {}  # inbound sid -> its stored replies
        inbound_rows, mismatched = 0, []
        for phone in sorted({form["From"] for form in forms}):
            messages = store.messages(phone)
            replies: dict[str | None, list[str]] = defaultdict(list)
            for message in messages:
                if message.direction == "out":
                    replies[message.reply_to].append(message.body)
            contact, profile, problems = Contact(phone), {}, []
            for message in (m for m in messages if m.direction == "in"):
                inbound_rows += 1
                stored[message.sid] = replies[message.sid]
                inbound = Inbound(sid=message.sid, phone=phone, body=message.body)
                outcome = handle(inbound, contact, flows, message.created_at)
                if [r.text for r in outcome.replies] != replies[message.sid]:
                    problems.append(f"{message.sid}: stored replies differ")
                if [(e.event, e.flow) for e in outcome.events] != events[message.sid]:
                    problems.append(
                        f"{message.sid} {message.body!r}: ledger has {events[message.sid]}"
                        f", the engine gives {[(e.event, e.flow) for e in outcome.events]}"
                    )
                contact, profile = outcome.contact, {**profile, **dict(outcome.profile)}
            if _state(store.contact(phone)) != _state(contact):
                problems.append("stored state differs from the replay's")
            if store.profile(phone) != profile:
                problems.append("stored profile differs from the replay's")
            mismatched += [f"{phone}: {problem}" for problem in problems]
    finally:
        store.close()

    posted = list(zip((form["MessageSid"] for form in forms), answers, strict=True))
    ok_sids = {sid for sid, tries in posted if tries and tries[-1].status == 200}
    kept = ok_sids & stored.keys()
    result.check(
        "every 200-answered MessageSid is stored once as an inbound message",
        kept == ok_sids and inbound_rows == len(stored),
        f"{len(kept):,} of {len(ok_sids):,}; {inbound_rows:,} inbound rows,"
        f" {len(stored):,} distinct sids",
    )
    wrong = [
        sid
        for sid, tries in posted
        for answer in tries
        if answer.status == 200 and twiml_replies(answer.body) != stored.get(sid)
    ]
    result.check(
        "every 200 answer carries exactly the stored replies of its MessageSid",
        not wrong,
        ", ".join(wrong[:3]),
    )
    result.check(
        "no half-written state: replaying each number's stored messages through the engine"
        " gives its stored replies, ledger events, state and profile",
        not mismatched,
        "; ".join(mismatched[:3]) or f"{len({f['From'] for f in forms}):,} numbers",
    )
    orphans = [sid for sid in events if sid not in stored]
    result.check(
        "no ledger event without its inbound message",
        not orphans,
        f"orphans: {orphans[:3]}" if orphans else f"{len(ledger):,} events",
    )
    verify = subprocess.run(
        [sys.executable, "-m", "flask", "ledger", "verify"],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=BOOT_LIMIT,
    )
    said = (verify.stdout.strip().splitlines() or verify.stderr.strip().splitlines() or [""])[0]
    result.check("flask ledger verify", verify.returncode == 0, said)


def _state(contact: Contact) -> tuple:
    subscriptions = sorted((s.flow, s.state, s.since, s.question) for s in contact.subscriptions)
    return contact.opted_out, contact.restorable, subscriptions


def _server_errors(server: Server) -> list[str]:
    """The exception line ending each traceback in the gunicorn log, and the arbiter's
    reason for exiting: what a 500 or a dead server came from."""
    found, in_traceback = [], False
    for line in server.log.read_text(errors="replace").splitlines():
        if line.startswith("Traceback"):
            in_traceback = True
        elif in_traceback and line and not line[0].isspace():
            found.append(line)
            in_traceback = False
        elif "Reason:" in line:
            found.append(line[line.index("Reason:") :])
    return list(dict.fromkeys(found))[-3:]


@contextmanager
def _scratch(scratch: Path | None) -> Iterator[Path]:
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
        yield scratch
        return
    with tempfile.TemporaryDirectory(prefix="smsbot-faults-") as tmp:
        yield Path(tmp)


def _finish(result: DrillResult, server: Server, started: float) -> DrillResult:
    if result.failed:
        result.facts.append(f"server errors: {_server_errors(server)}")
    result.seconds = time.monotonic() - started
    return result


def _backend(database_url: str | None) -> str:
    return "postgresql" if database_url else "sqlite"


# --- the drills ---------------------------------------------------------------------------


def drill_kill_workers(
    size: int = 2000,
    seconds: float = 10.0,
    workers: int = 2,
    database_url: str | None = None,
    scratch: Path | None = None,
    seed: int = 11,
) -> DrillResult:
    """SIGKILL one gunicorn worker every second while `size` webhooks are posted over
    `seconds`; a request left unanswered is retried with its MessageSid (3 tries in all)."""
    started = time.monotonic()
    result = DrillResult(
        "kill",
        f"kill -9 one of {workers} gunicorn workers every second during the burst,"
        f" {_backend(database_url)}",
    )
    forms = conversations(max(10, size // 4), size, seed=seed, prefix="SMkill")
    rng = random.Random(seed)
    with _scratch(scratch) as tmp, serve(tmp, workers, database_url) as server:
        killed: list[bool] = []  # one per kill: was the worker running (mid-request)?
        done = threading.Event()

        def killer() -> None:
            while not done.wait(1.0):
                victim = _pick_worker(server, rng)
                if victim is not None:
                    try:
                        os.kill(victim[0], signal.SIGKILL)
                        killed.append(victim[1] == "R")
                    except ProcessLookupError:
                        pass

        thread = threading.Thread(target=killer)
        thread.start()
        try:
            answers = burst(Client(server.port), webhooks(forms, server.url), seconds, attempts=3)
        finally:
            done.set()
            thread.join()
        result.count(answers)
        lost = Counter(a.error for tries in answers for a in tries if a.status is None)
        result.facts.append(
            f"workers killed: {len(killed)} ({sum(killed)} while running);"
            f" connections lost: {dict(lost) or 0}"
        )
        result.check(
            "a worker was killed every second of the burst",
            len(killed) >= max(1, math.ceil(seconds) - 1),
            f"{len(killed)} kills",
        )
        _check_serving(result, server, workers)
        unanswered = sum(a[-1].status != 200 for a in answers)
        result.check(
            "every request answered 200, retried with its MessageSid after a lost connection",
            unanswered == 0,
            f"{unanswered} not answered 200",
        )
        server.stop()
        check_storage(result, server, forms, answers)
        return _finish(result, server, started)


def _pick_worker(server: Server, rng: random.Random) -> tuple[int, str] | None:
    """A worker to kill: one running (likely mid-request) if any shows up within 100 ms."""
    until = time.monotonic() + 0.1
    while True:
        workers = server.workers()
        running = [w for w in workers if w[1] == "R"]
        if running:
            return rng.choice(running)
        if time.monotonic() > until:
            return rng.choice(workers) if workers else None
        time.sleep(0.002)


HOLDER = """\
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def drill_held_lock(
    size: int = 1000,
    seconds: float = 6.0,
    hold: float = 2.0,
    busy_timeout: float = 5.0,
    workers: int = 2,
    kill_worker: bool = False,
    scratch: Path | None = None,
    seed: int = 12,
) -> DrillResult:
    """Another process holds SQLite's write lock for `hold` seconds mid-burst; requests
    wait up to the busy timeout or get 503, and each 503'd MessageSid is retried once.
    `kill_worker`: SIGKILL a worker as the hold starts, so its replacement boots while the
    lock is held (a request it was serving is retried, as in the kill drill)."""
    started = time.monotonic()
    killing = ", a worker killed mid-hold" if kill_worker else ""
    result = DrillResult(
        f"lock (busy timeout {busy_timeout:g} s{killing})",
        f"another process holds BEGIN IMMEDIATE for {hold:g} s mid-burst,"
        f" SMSBOT_BUSY_TIMEOUT={busy_timeout:g}{killing}, sqlite",
    )
    forms = conversations(max(10, size // 4), size, seed=seed, prefix="SMlock")
    with (
        _scratch(scratch) as tmp,
        serve(tmp, workers, BUSY_TIMEOUT=str(busy_timeout)) as server,
    ):
        hooks, held = webhooks(forms, server.url), []

        def holder() -> None:
            time.sleep((seconds - hold) / 2)
            process = subprocess.Popen(
                [sys.executable, "-c", HOLDER, server.env["SMSBOT_DATABASE"], str(hold)],
                stdout=subprocess.PIPE,
                text=True,
            )
            if process.stdout.readline().strip() == "held":
                held.append(time.monotonic())
                if kill_worker:
                    os.kill(server.workers()[0][0], signal.SIGKILL)
            process.wait(timeout=hold + BOOT_LIMIT)
            held.append(time.monotonic())

        thread = threading.Thread(target=holder)
        thread.start()
        answers = burst(Client(server.port), hooks, seconds, attempts=2 if kill_worker else 1)
        thread.join()
        result.count(answers)
        waited = [a[0].seconds for a in answers if a[0].status == 200 and a[0].seconds >= 0.5]
        result.facts.append(
            f"lock held {held[-1] - held[0]:.1f} s; answered 200 after waiting >= 0.5 s:"
            f" {len(waited)} (slowest {max(waited, default=0):.2f} s)"
            if len(held) == 2
            else "the holder never got the lock"
        )
        result.check("the other process held the lock", len(held) == 2)
        if kill_worker:
            _check_serving(result, server, workers)
        unanswered = sum(tries[-1].status not in (200, 503) for tries in answers)
        result.check(
            "every request answered 200 or 503", unanswered == 0, f"{unanswered} not answered"
        )
        if busy_timeout > hold:
            result.check(f"requests waited out the {hold:g} s hold: no 503", result.busy == 0)
        else:
            result.check(f"the {hold:g} s hold produced 503s", result.busy > 0, f"{result.busy}")
        refused = [index for index, tries in enumerate(answers) if tries[-1].status == 503]
        store = server.store()
        try:
            early = [hooks[i].sid for i in refused if _stored(store, forms[i], hooks[i].sid)]
        finally:
            store.close()
        result.check("nothing of a 503'd message was stored", not early, ", ".join(early[:3]))
        client = Client(server.port)
        for index in refused:  # after the burst, as Twilio's retry comes later
            answers[index].append(client.post(hooks[index]))
        result.retries += len(refused)
        result.retried_ok += sum(answers[index][-1].status == 200 for index in refused)
        result.failed += sum(answers[index][-1].status == 500 for index in refused)
        result.check(
            "every 503'd MessageSid answered 200 when retried once",
            result.retried_ok == len(refused),
            f"{result.retried_ok} of {len(refused)}",
        )
        server.stop()
        check_storage(result, server, forms, answers)
        return _finish(result, server, started)


def _check_serving(result: DrillResult, server: Server, workers: int) -> None:
    """Check that gunicorn replaced every killed worker and still answers."""
    deadline = time.monotonic() + BOOT_LIMIT
    while len(server.workers()) < workers and time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        time.sleep(0.1)
    alive = server.process.poll() is None
    result.check(
        "gunicorn replaced the killed workers and answers /healthz",
        alive and len(server.workers()) == workers and server.healthy(),
        f"{len(server.workers())} of {workers} workers"
        if alive
        else f"gunicorn exited {server.process.returncode}: {_server_errors(server)}",
    )


def _stored(store: Store, form: dict[str, str], sid: str) -> bool:
    return any(m.direction == "in" and m.sid == sid for m in store.messages(form["From"]))


# A script per number whose every step but the last changes consent or the profile.
SCRIPT = ("JOIN", "YES", "10001", "STOP", "START", "HELP")


def drill_duplicate_sid(
    size: int = 2000,
    copies: int = 20,
    workers: int = 2,
    database_url: str | None = None,
    scratch: Path | None = None,
) -> DrillResult:
    """Post each of `size // copies` MessageSids `copies` times at once (a barrier releases
    them together): one effect each, and every copy gets the same reply."""
    started = time.monotonic()
    result = DrillResult(
        "duplicate",
        f"each MessageSid posted {copies} times concurrently, {workers} workers,"
        f" {_backend(database_url)}",
    )
    forms = [
        {
            "MessageSid": f"SMdup{n:029d}",
            "AccountSid": "AC" + "0" * 32,
            "From": f"+1202300{n // len(SCRIPT):04d}",
            "To": BUSINESS,
            "Body": SCRIPT[n % len(SCRIPT)],
            "NumMedia": "0",
        }
        for n in range(max(1, size // copies))
    ]
    with _scratch(scratch) as tmp, serve(tmp, workers, database_url) as server:
        hooks, client = webhooks(forms, server.url), Client(server.port)
        rounds: list[list[Answer]] = [[None] * copies for _ in hooks]
        barrier = threading.Barrier(copies)

        def sender(copy: int) -> None:
            for index, hook in enumerate(hooks):
                barrier.wait(timeout=SOCKET_TIMEOUT + 10)
                rounds[index][copy] = client.post(hook)

        _run_threads([lambda c=c: sender(c) for c in range(copies)])
        result.count([[answer] for answers in rounds for answer in answers])
        uneven = [
            hook.sid
            for hook, answers in zip(hooks, rounds, strict=True)
            if {(a.status, a.body) for a in answers} != {(200, answers[0].body)}
        ]
        result.check(
            f"every MessageSid: {copies} answers, all 200 with the same body",
            not uneven,
            ", ".join(uneven[:3]) or f"{len(hooks)} MessageSids",
        )
        server.stop()
        # One effect: the replay check finds the replies and ledger events of one handling
        # per sid; a second handling would show as extra rows or events.
        check_storage(result, server, forms, rounds)
        return _finish(result, server, started)


def _run_threads(targets: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# --- the command --------------------------------------------------------------------------


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A throwaway schema in the PostgreSQL at `url`; yields a URL landing in it."""
    import psycopg

    name = "drill_" + secrets.token_hex(4)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    joiner = "&" if "?" in url else "?"
    try:
        yield f"{url}{joiner}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000, help="requests per drill")
    parser.add_argument("--drill", choices=["kill", "lock", "duplicate"], action="append")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--database-url", help="run kill and duplicate on PostgreSQL (a throwaway schema each)"
    )
    args = parser.parse_args()
    chosen = args.drill or ["kill", "lock", "duplicate"]
    size, workers = args.size, args.workers

    def on_database(drill: Callable[..., DrillResult]) -> Callable[[], DrillResult]:
        def run() -> DrillResult:
            if not args.database_url:
                return drill(size, workers=workers)
            with postgres_schema(args.database_url) as url:
                return drill(size, workers=workers, database_url=url)

        return run

    runs = {
        "kill": [on_database(drill_kill_workers)],
        "lock": [
            lambda t=timeout, k=kill: drill_held_lock(
                size // 2, busy_timeout=t, kill_worker=k, workers=workers
            )
            for timeout, kill in ((5.0, False), (1.0, False), (1.0, True))
        ],
        "duplicate": [on_database(drill_duplicate_sid)],
    }
    results = []
    for name in ("kill", "lock", "duplicate"):
        for run in runs[name] if name in chosen else []:
            results.append(run())
            print(results[-1].report(), flush=True)
    failed = [r.name for r in results if not r.passed]
    print(f"drills failed: {', '.join(failed)}" if failed else "all drills passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
