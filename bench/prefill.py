"""Bulk-load a fresh smsbot SQLite database with contacts who texted JOIN and then YES.

    python bench/prefill.py PATH [--contacts 1000000] [--secret bench]

The file is created by smsbot's own migrations (create_app). Its rows are copies of what
smsbot itself stores for one number's JOIN and YES to the vip flow (bench/template.py
records them through app.receive on a scratch database), with the number, its key, the
MessageSids and the times changed: per contact one contact row, one subscription (vip,
subscribed, asked for its ZIP), five messages (JOIN, the prompt, YES, the welcome, the
ZIP question) and two ledger events, `requested` and `confirmed`, sealed with
storage.ledger.seal into one continuous chain, so `flask ledger verify` passes. History
runs over the past year, in ledger order. The load uses executemany in large
transactions with the journal and syncs off, a second process sealing the chain
meanwhile; at the end the file is switched back to WAL, as smsbot keeps it, and synced.
The time reported covers all of it.

Numbers are +1202 2000000, 2000002, 2000004 ... (every other one). bench/workload.py
draws its mix from +1202 2000000 up (10,000 numbers by default): whatever the size of the
prefill, half of the mix's numbers are known contacts and half are new, interleaved.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import queue
import sqlite3
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from bench.template import KEY, Template, config, record  # noqa: E402
from storage.ledger import GENESIS, canonical_json, seal, subject_key, timestamp  # noqa: E402

FIRST, LAST = 2_000_000, 9_999_999  # the 7-digit range after +1202
BATCH = 10_000  # contacts per transaction
TEXTS = ("JOIN", "YES")


def phone(n: int) -> str:
    """The n-th prefilled number (0-based): every other one from +1202 2000000."""
    return f"+1202{FIRST + 2 * n:07d}"


def _identities(numbers: range, secret: str, start: datetime, step: timedelta) -> list[tuple]:
    """Each number's own values, in the template's slot order."""
    gap = step / len(TEXTS)
    return [
        (
            number := phone(n),
            subject_key(secret, number),
            *(f"SMf{len(TEXTS) * n + m:031x}" for m in range(len(TEXTS))),  # not the mix's SM0
            *(timestamp(start + n * step + m * gap) for m in range(len(TEXTS))),
        )
        for n in numbers
    ]


@dataclass(frozen=True)
class Filled:
    """What a prefill did: contacts, rows per table, seconds, and the file's size."""

    contacts: int
    rows: dict[str, int]
    seconds: float
    size: int  # bytes
    tables: dict[str, int]  # bytes per table, its indexes included


def fill(path: Path | str, contacts: int, secret: str, span_days: float = 365) -> Filled:
    """Create `path` with smsbot's migrations and load `contacts` JOIN + YES histories."""
    if not 0 < contacts <= (LAST - FIRST) // 2 + 1:
        raise SystemExit(f"prefill: 1 to {(LAST - FIRST) // 2 + 1:,} contacts")
    if os.path.exists(path):
        raise SystemExit(f"prefill: {path} exists; it loads fresh databases only")
    started = time.monotonic()
    template = record(TEXTS, secret)
    app = create_app(config(path, secret))
    app.extensions["smsbot.store"].close()
    with closing(sqlite3.connect(path)) as conn:
        last = conn.execute("SELECT seq, chain_hash FROM ledger ORDER BY seq DESC LIMIT 1")
        head = last.fetchone() or (0, GENESIS)
    start = datetime.now(UTC) - timedelta(days=span_days)
    step = timedelta(days=span_days) / contacts
    # Two cores: a child process derives the numbers' keys and seals the chain while this
    # one builds and inserts the rows (threads would take turns on the GIL).
    fork = multiprocessing.get_context("fork")
    batches = fork.Queue(maxsize=4)
    sealer = fork.Process(
        target=_seal_all, args=(template, secret, contacts, start, step, head, batches)
    )
    sealer.start()
    columns = {name: columns for name, (columns, _) in template.tables.items()}
    columns["ledger"] = ("seq", "at", "event", "subject_key", "body", "body_hash", "chain_hash")
    inserts = {
        name: f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        for name, cols in columns.items()
    }
    rows = dict.fromkeys(inserts, 0)
    conn = sqlite3.connect(path, isolation_level=None)
    # For the load only: no rollback journal, no fsync, a large page cache.
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    gc.disable()  # millions of new tuples that live on: collecting them finds nothing, slowly
    try:
        while (batch := _receive(batches, sealer)) is not None:
            people, seals = batch
            people = [values + template.constants for values in people]
            conn.execute("BEGIN")
            for name, (_, getters) in template.tables.items():
                values = [getter(p) for p in people for getter in getters]
                conn.executemany(inserts[name], values)
                rows[name] += len(values)
            ledger, sealed = [], iter(seals)
            for p in people:
                for e in template.events:
                    seq, body_hash, chain_hash = next(sealed)
                    ledger.append(
                        (seq, p[e.at], e.name, p[KEY], e.text_for(p), body_hash, chain_hash)
                    )
            conn.executemany(inserts["ledger"], ledger)
            rows["ledger"] += len(ledger)
            conn.execute("COMMIT")
    finally:
        gc.enable()
        sealer.kill()
        sealer.join()
    conn.execute("PRAGMA journal_mode=WAL")  # as smsbot keeps it
    with open(path, "rb+") as file:  # written unsynced: make it durable, as if grown by smsbot
        os.fsync(file.fileno())
    seconds = time.monotonic() - started
    tables = dict(
        conn.execute(
            "SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d"
            " LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY 1 ORDER BY 2 DESC"
        )
    )
    conn.close()
    size = sum(os.path.getsize(f) for f in (str(path), f"{path}-wal") if os.path.exists(f))
    return Filled(contacts, rows, seconds, size, tables)


def _seal_all(
    template: Template,
    secret: str,
    contacts: int,
    start: datetime,
    step: timedelta,
    head: tuple[int, str],
    batches: multiprocessing.Queue,
) -> None:
    """Put each batch's (per-number values, (seq, body hash, chain hash) of each event) on
    `batches`, continuing the chain from `head`; then None."""
    gc.disable()
    seq, previous = head
    for first in range(0, contacts, BATCH):
        people = _identities(range(first, min(first + BATCH, contacts)), secret, start, step)
        seals = []
        for values in people:
            for event in template.events:
                seq += 1
                row = seal(previous, seq, values[event.at], event.name, event.body_for(values))
                seals.append((seq, row.body_hash, row.chain_hash))
                previous = row.chain_hash
        for event in template.events if first == 0 else ():
            # The inserting side's text must be the canonical JSON of the sealed body.
            if event.text_for(people[0]) != canonical_json(event.body_for(people[0])):
                raise SystemExit(f"prefill: {event.name}: rewritten text differs from the body")
        batches.put((people, seals))
    batches.put(None)


def _receive(batches: multiprocessing.Queue, sealer: multiprocessing.Process) -> tuple | None:
    while True:
        try:
            return batches.get(timeout=1)
        except queue.Empty:
            if not sealer.is_alive():
                raise SystemExit(f"prefill: the sealer exited ({sealer.exitcode})") from None


def report(filled: Filled) -> str:
    """The load's figures as text: time, rows, size per million contacts, biggest tables."""
    per_million = filled.size / filled.contacts  # bytes per contact = MB per million
    lines = [
        f"prefill {filled.contacts:,} contacts in {filled.seconds:.1f} s"
        f" ({filled.contacts / filled.seconds:,.0f} contacts/s; "
        + ", ".join(f"{count:,} {name}" for name, count in filled.rows.items())
        + ")",
        f"database {filled.size / 1e6:,.0f} MB = {per_million:,.0f} MB per million contacts"
        " (" + ", ".join(f"{name} {size / 1e6:,.0f}" for name, size in filled.tables.items()
                         if size >= filled.size / 100) + " MB)",
    ]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="the SQLite file to create")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--secret", default="bench", help="SMSBOT_SECRET_KEY the app will use")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; python bench/prefill.py {args.path}"
          f" --contacts {args.contacts}")  # fmt: skip
    print(report(fill(args.path, args.contacts, args.secret)))


if __name__ == "__main__":
    main()
