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
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.audit import DrillResult, check_storage, check_unstored  # noqa: E402
from bench.client import SOCKET_TIMEOUT, Answer, Client, burst, run_threads, webhooks  # noqa: E402
from bench.server import BOOT_LIMIT, Server, postgres_schema, scratch_folder, serve  # noqa: E402
from bench.workload import BUSINESS, conversations  # noqa: E402


def _finish(result: DrillResult, server: Server, started: float) -> DrillResult:
    if result.failed:
        result.facts.append(f"server errors: {server.errors()}")
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
    with scratch_folder(scratch) as tmp, serve(tmp, workers, database_url) as server:
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
        scratch_folder(scratch) as tmp,
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
        check_unstored(result, server, [forms[index] for index in refused])
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
        else f"gunicorn exited {server.process.returncode}: {server.errors()}",
    )


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
    with scratch_folder(scratch) as tmp, serve(tmp, workers, database_url) as server:
        hooks, client = webhooks(forms, server.url), Client(server.port)
        rounds: list[list[Answer]] = [[None] * copies for _ in hooks]
        barrier = threading.Barrier(copies)

        def sender(copy: int) -> None:
            for index, hook in enumerate(hooks):
                barrier.wait(timeout=SOCKET_TIMEOUT + 10)
                rounds[index][copy] = client.post(hook)

        run_threads([lambda c=c: sender(c) for c in range(copies)])
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


# --- the command --------------------------------------------------------------------------


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
