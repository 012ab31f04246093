"""Web workers' memory under traffic: each worker's RSS after 10,000 messages and 100,000.

    python bench/memory.py [--messages 100000] [--step 10000] [--numbers 10000]

Starts smsbot under gunicorn exactly as the Procfile's `web:` line does (temp SQLite file,
the shipped flows), sends the realistic signed mix of bench/workload.py with wrk on
loopback, `--step` messages at a time, each sent exactly once (inbound.lua's `once`
mode), and after each step reads every worker's VmRSS from /proc/<pid>/status (the
workers are the gunicorn master's children). Prints each worker's RSS at every step, its
growth from the first step to the last, and any worker that was replaced on the way
(gunicorn's log lines about it too), then checks every message was stored and the ledger.
Bounded: each step gives up after --step / 100 seconds (at least 30).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inbound import (  # noqa: E402
    THREADS,
    TOKEN,
    check_stored,
    free_port,
    serve,
    smsbot_env,
    verify_ledger,
    web_line,
)
from bench.workload import conversations, signed  # noqa: E402

LIMIT = 0.10  # the bound: RSS after 100,000 within 10% of RSS after 10,000
# gunicorn's log lines when a worker starts, times out, dies or is killed.
WORKER_EVENTS = ("Booting worker", "WORKER TIMEOUT", "exited with code", "SIGKILL")


def workers(master: int) -> list[int]:
    """The pids whose parent is `master`: gunicorn's workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # exited meanwhile
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                found.append(int(entry.name))
    return sorted(found)


def booted_workers(master: int) -> list[int]:
    """The workers, once gunicorn has started as many as the Procfile asks for."""
    wanted = int(os.environ.get("WEB_CONCURRENCY", "2"))
    deadline = time.monotonic() + 30
    while len(found := workers(master)) < wanted:
        if time.monotonic() > deadline:
            raise SystemExit(f"gunicorn started {len(found)} of {wanted} workers")
        time.sleep(0.1)
    return found


def rss(pid: int) -> dict[str, int] | None:
    """VmRSS and RssAnon of a process in kB, or None if it is gone."""
    try:
        status = (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "RssAnon")}


def send(port: int, lines: list[tuple[str, str]], concurrency: int, scratch: Path) -> dict:
    """Send each line once through wrk; return its figures once every line is answered
    (or after len(lines) / 100 seconds: then `answers` says how many were)."""
    path = scratch / "requests.tsv"
    path.write_text("".join(f"{body}\t{sig}\n" for body, sig in lines))
    seconds = max(30, len(lines) // 100)
    wrk = subprocess.Popen(
        ["wrk", f"-t{THREADS}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(ROOT / "bench" / "inbound.lua"), f"http://127.0.0.1:{port}",
         "--", str(path), str(THREADS), "once"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    finished, last = 0, ""
    for line in wrk.stdout:
        if line.startswith("thread ") and line.rstrip().endswith(" done"):
            finished += 1
            if finished == THREADS:
                wrk.send_signal(signal.SIGINT)  # wrk would otherwise wait out its -d
        last = line
    wrk.wait(timeout=60)
    figures = json.loads(last)
    figures["sent"] = sum(figures["answers"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="in all")
    parser.add_argument("--step", type=int, default=10_000, help="messages between readings")
    parser.add_argument("--numbers", type=int, default=10_000, help="distinct phones in the mix")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt install wrk")
    command = web_line()
    with tempfile.TemporaryDirectory(prefix="smsbot-memory-") as tmp:
        scratch, port = Path(tmp), free_port()
        env = smsbot_env(scratch / "smsbot.db", port, scratch)
        log = scratch / "gunicorn.log"
        forms = conversations(args.numbers, args.messages)
        url = f"http://127.0.0.1:{port}/sms"
        server = serve(command, env, port, log)
        readings: list[tuple[int, dict[int, dict[str, int] | None]]] = []
        answered: set[str] = set()
        errors, seconds = 0, 0.0
        try:
            booted = booted_workers(server.pid)
            for first in range(0, args.messages, args.step):
                chunk = forms[first : first + args.step]
                lines = signed(chunk, url, TOKEN)
                started = time.monotonic()
                run = send(port, lines, args.concurrency, scratch)
                seconds += time.monotonic() - started
                errors += run["errors"] + run["status_errors"]
                if run["sent"] == len(chunk):
                    answered |= {form["MessageSid"] for form in chunk}
                else:
                    print(f"step {first:,}+: only {run['sent']:,} of {len(chunk):,} answered")
                current = workers(server.pid)
                readings.append((first + len(chunk), {pid: rss(pid) for pid in current}))
            # Read before stopping the server: its shutdown lines are no finding.
            events = [
                line
                for line in log.read_text(errors="replace").splitlines()
                if any(word in line for word in WORKER_EVENTS)
            ]
        finally:
            server.terminate()
            server.wait(timeout=30)
        print(f"machine: {os.cpu_count()} cores; smsbot: {command.split(' --bind')[0]}")
        print(f"python bench/memory.py --messages {args.messages} --step {args.step}"
              f" --numbers {args.numbers} --concurrency {args.concurrency}")  # fmt: skip
        report(booted, readings)
        later = events[len(booted) :]  # after the first boots
        print(f"gunicorn log, worker boots, timeouts and kills after start-up: {len(later)}")
        for line in later:
            print(f"  {line}")
        print(f"sent {len(answered):,} distinct messages in {seconds:.0f} s"
              f" ({args.messages / seconds:,.0f} req/s); errors (connection, timeout,"
              f" non-2xx): {errors}")  # fmt: skip
        check_stored(scratch / "smsbot.db", answered)
        print("ledger verify:", verify_ledger(env))


def report(booted: list[int], readings: list[tuple[int, dict[int, dict | None]]]) -> None:
    """Print RSS per worker at each reading, growth first to last, and replaced workers."""
    pids = sorted({pid for _, seen in readings for pid in seen} | set(booted))
    print(f"{'messages':>9} " + " ".join(f"{f'pid {pid} MB':>16}" for pid in pids)
          + "   (VmRSS / RssAnon)")  # fmt: skip
    for messages, seen in readings:
        cells = [
            f"{seen[pid]['VmRSS'] / 1024:7.1f} /{seen[pid]['RssAnon'] / 1024:6.1f}"
            if seen.get(pid)
            else f"{'-':>16}"
            for pid in pids
        ]
        print(f"{messages:9,} " + " ".join(f"{cell:>16}" for cell in cells))
    (start, first), (end, last) = readings[0], readings[-1]
    for pid in pids:
        if pid in first and pid in last and first[pid] and last[pid]:
            before, after = first[pid]["VmRSS"], last[pid]["VmRSS"]
            growth = (after - before) / before
            verdict = "ok" if abs(growth) <= LIMIT else f"OVER the {LIMIT:.0%} bound"
            print(f"worker {pid}: {before / 1024:.1f} MB after {start:,} messages,"
                  f" {after / 1024:.1f} MB after {end:,}: {growth:+.1%} ({verdict})")  # fmt: skip
    replaced = [pid for pid in pids if pid not in last or not last[pid]]
    arrived = [pid for pid in pids if pid not in booted]
    if replaced or arrived:
        for pid in replaced:
            gone = next(m for m, seen in readings if pid not in seen or not seen[pid])
            print(f"worker {pid} REPLACED: gone by {gone:,} messages")
        for pid in arrived:
            since = next(m for m, seen in readings if seen.get(pid))
            print(f"worker {pid} NEW: started by {since:,} messages (not counted above)")
    else:
        print(f"workers replaced: none ({len(booted)} workers served all {end:,} messages)")


if __name__ == "__main__":
    main()
