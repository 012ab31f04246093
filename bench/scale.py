"""The inbound mix against 1,000,000 prefilled contacts and against 10,000, in one run.

    python bench/scale.py [--contacts 1000000] [--seconds 10] [--rounds 2] [--concurrency 16]

Prefills two fresh databases with bench/prefill.py (10,000 contacts, and --contacts), each
contact subscribed to vip after JOIN and YES with its sealed ledger events, and serves each
with smsbot under the Procfile's `web:` gunicorn line. Sends both the same realistic mix
(bench/workload.py: 10,000 numbers, half of them prefilled contacts, half new) with wrk on
loopback, after a 2-second warm-up of each, alternating which goes first round by round
(ABBA) so drift on a shared machine falls on both; prints req/s, p50 and p99 per run, the
mean p50 of each database and their ratio, and the database size per million contacts;
then checks every answered message is stored and `flask ledger verify` passes on both.
Bounded: each run lasts --seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inbound import (  # noqa: E402
    TOKEN,
    check_stored,
    free_port,
    load,
    serve,
    smsbot_env,
    verify_ledger,
    web_line,
)
from bench.memory import booted_workers  # noqa: E402
from bench.prefill import fill, report  # noqa: E402
from bench.workload import conversations, signed  # noqa: E402

SMALL = 10_000
WARMUP = 2  # seconds of traffic each server gets before the measured runs
BOUND = 1.20  # the bound: p50 at 1M contacts within 20% of p50 at 10,000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000, help="the large prefill")
    parser.add_argument("--seconds", type=int, default=10, help="per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per database")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--lines", type=int, default=40_000, help="requests prepared per run")
    parser.add_argument("--numbers", type=int, default=10_000, help="distinct phones in the mix")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt install wrk")
    command = web_line()
    sizes = {"small": SMALL, "large": args.contacts}
    with tempfile.TemporaryDirectory(prefix="smsbot-scale-") as tmp:
        scratch = Path(tmp)
        databases = {name: scratch / f"{name}.db" for name in sizes}
        ports = {name: free_port() for name in sizes}
        envs = {name: smsbot_env(databases[name], ports[name], scratch / name) for name in sizes}
        filled = {}
        for name, contacts in sizes.items():
            # The secret the servers use: the contacts' ledger keys must match theirs.
            filled[name] = fill(databases[name], contacts, envs[name]["SMSBOT_SECRET_KEY"])
        forms = conversations(args.numbers, args.lines * args.rounds)
        servers = {name: serve(command, envs[name], ports[name]) for name in sizes}
        results, answered = [], {name: set() for name in sizes}
        try:
            # Not measured: workers booted, first requests served (another mix, WU sids).
            warmup = conversations(args.numbers, args.lines, seed=8, prefix="WU")
            for name, server in servers.items():
                booted_workers(server.pid)
                lines = signed(warmup, f"http://127.0.0.1:{ports[name]}/sms", TOKEN)
                load(ports[name], lines, args.concurrency, WARMUP, scratch)
            for round_ in range(args.rounds):
                chunk = forms[round_ * args.lines : (round_ + 1) * args.lines]
                for name in ("small", "large") if round_ % 2 == 0 else ("large", "small"):
                    lines = signed(chunk, f"http://127.0.0.1:{ports[name]}/sms", TOKEN)
                    run = load(ports[name], lines, args.concurrency, args.seconds, scratch)
                    results.append((name, round_, run))
                    answered[name] |= {chunk[n]["MessageSid"] for n in run["answered"]}
        finally:
            for server in servers.values():
                server.terminate()
                server.wait(timeout=30)
        print(f"machine: {os.cpu_count()} cores; smsbot: {command.split(' --bind')[0]}")
        print(f"python bench/scale.py --contacts {args.contacts} --seconds {args.seconds}"
              f" --rounds {args.rounds} --concurrency {args.concurrency}")  # fmt: skip
        summary(sizes, filled, results, args.concurrency)
        for name in sizes:
            print(f"{sizes[name]:,} contacts:", end=" ")
            check_stored(databases[name], answered[name])
            started = time.monotonic()
            outcome = verify_ledger(envs[name])
            print(f"  ledger verify: {outcome} ({time.monotonic() - started:.0f} s)")


def summary(sizes: dict[str, int], filled: dict, results: list, concurrency: int) -> None:
    """Print the prefills, each run, the p50 ratio and the size per million contacts."""
    for name in sizes:
        print(report(filled[name]))
    print(f"{'contacts':>9} {'round':>5} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for name, round_, r in results:
        errors = r["errors"] + r["status_errors"]
        print(f"{sizes[name]:9,} {round_ + 1:5} {r['rps']:7.0f} {r['p50_us'] / 1000:7.1f}"
              f" {r['p99_us'] / 1000:7.1f} {errors:6}")  # fmt: skip
    p50 = {name: mean(r["p50_us"] for n, _, r in results if n == name) / 1000 for name in sizes}
    ratio = p50["large"] / p50["small"]
    verdict = "within" if ratio <= BOUND else "OVER"
    print(f"mean p50 at concurrency {concurrency}: {p50['small']:.1f} ms with"
          f" {sizes['small']:,} contacts, {p50['large']:.1f} ms with {sizes['large']:,}:"
          f" ratio {ratio:.2f} ({verdict} the {BOUND:.2f} bound)")  # fmt: skip
    large = filled["large"]
    print(f"database size: {large.size / large.contacts:,.0f} MB per million contacts"
          f" ({large.size / 1e6:,.0f} MB for {large.contacts:,} after the prefill)")  # fmt: skip


if __name__ == "__main__":
    main()
