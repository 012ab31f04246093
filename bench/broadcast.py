"""Broadcast benchmark: queue one message to 100,000 subscribers, then drain the outbox.

    python bench/broadcast.py [--subscribers 100000] [--sends 3000]

Prints, with a baseline measured in the same run:
- queue time for `flask broadcast` (store.queue_broadcast) vs a bare executemany of the
  same rows into an identical table (the floor for one SQLite transaction);
- the worker's sends per second with the rate limit off, against the local fake Twilio
  API running in its own process, vs the bare twilio client calling the same fake in a
  loop (the ceiling: no storage, no re-checks).
Loopback only; bounded by --sends.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from flows.schedule import parse_quiet_hours  # noqa: E402
from outbox import Worker, twilio_client  # noqa: E402
from storage.ledger import subject_key, timestamp  # noqa: E402
from tests.fake_twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN  # noqa: E402


def start_fake() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_twilio", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, process.stdout.readline().strip()


def fill(database: str, secret: str, count: int) -> None:
    """Bulk-load `count` subscribed contacts of flow vip (benchmark set-up, not timed)."""
    at = timestamp(datetime.now(UTC) - timedelta(days=1))
    phones = [f"+1202555{n:04d}" if n < 10_000 else f"+1{3020000000 + n}" for n in range(count)]
    with sqlite3.connect(database) as conn:
        conn.executemany(
            "INSERT INTO contacts (phone, subject_key, opted_out, restorable, created_at,"
            " updated_at) VALUES (?, ?, 0, '[]', ?, ?)",
            [(p, subject_key(secret, p), at, at) for p in phones],
        )
        conn.executemany(
            "INSERT INTO subscriptions (phone, flow, state, since, question, updated_at)"
            " VALUES (?, 'vip', 'subscribed', ?, NULL, ?)",
            [(p, at, at) for p in phones],
        )


def baseline_queue(database: str, count: int) -> float:
    """The same number of outbox-shaped rows inserted with one bare executemany."""
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE bare AS SELECT * FROM outbox WHERE 0")
        rows = [(f"+1{3020000000 + n}", "vip", "broadcast", "Deals!", "t", "t", "queued", 0)
                for n in range(count)]  # fmt: skip
        started = time.perf_counter()
        conn.executemany(
            "INSERT INTO bare (phone, flow, kind, body, not_before, created_at, state, attempts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.commit()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--sends", type=int, default=3_000)
    args = parser.parse_args()
    fake, url = start_fake()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            database = os.path.join(scratch, "bench.db")
            app = create_app(
                {
                    "DATABASE": database,
                    "SECRET_KEY": "bench",
                    "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
                    "QUIET_HOURS": "off",
                }
            )
            store, flows = app.extensions["smsbot.store"], app.extensions["smsbot.flows"]
            fill(database, "bench", args.subscribers)

            started = time.perf_counter()
            queued, _ = store.queue_broadcast("vip", "Deals!", datetime.now(UTC), datetime.now(UTC))
            queue_time = time.perf_counter() - started
            floor = baseline_queue(database, queued)
            print(f"machine: {os.cpu_count()} cores")
            print(f"queue {queued:,} rows: smsbot {queue_time:.2f} s, bare executemany "
                  f"{floor:.2f} s, ratio {queue_time / floor:.1f}x")  # fmt: skip

            client = twilio_client(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, url)
            sample = min(args.sends, 1000)
            started = time.perf_counter()
            for n in range(sample):
                client.messages.create(to=f"+1303555{n:04d}", from_="+15555550199", body="x")
            ceiling = sample / (time.perf_counter() - started)

            worker = Worker(store, flows, client, "+15555550199", parse_quiet_hours("off"), rate=0)
            started = time.perf_counter()
            worker.run(stop=lambda: worker.counts["sent"] >= args.sends)
            rate = worker.counts["sent"] / (time.perf_counter() - started)
            print(f"worker, rate limit off: {rate:,.0f} sends/s over {worker.counts['sent']:,}"
                  f" sends; bare client {ceiling:,.0f}/s; ratio {rate / ceiling:.2f}")  # fmt: skip
            store.close()
    finally:
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    main()
