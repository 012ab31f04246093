"""The inbound path under load, side by side with a baseline measured in the same run.

    python bench/inbound.py [--seconds 10] [--rounds 3] [--numbers 10000] [--concurrency 16 64]

Starts smsbot under gunicorn exactly as the Procfile's `web:` line does (temp SQLite file,
the shipped flows) and the baseline (bench/baseline.py: form, signature, one insert,
TwiML) with the same gunicorn line; sends each the same realistic mix of signed webhooks
(bench/workload.py) with wrk (`apt install wrk`) on loopback, the two taking turns for
--rounds rounds; prints req/s, p50, p99 and errors of each app's median run and the ratio;
then checks that every answered message is stored and that `flask ledger verify` passes.
Bounded: each run lasts --seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.workload import conversations, signed  # noqa: E402

TOKEN = "bench-auth-token"
SECRET_KEY = "bench"
FLOWS_DIR = ROOT / "flows" / "definitions"  # the shipped flows


def web_line() -> str:
    """The Procfile's web command."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise SystemExit("Procfile has no web: line")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env(home: Path | str) -> dict[str, str]:
    """This process's environment without its SMSBOT_ settings or DATABASE_URL (a bench or
    test must never reach the operator's database), the venv's scripts first on PATH, and
    HOME (TMPDIR in it) at `home`, which keeps gunicorn's control socket
    (~/.gunicorn/gunicorn.ctl) apart from any other gunicorn's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSBOT_")}
    env.pop("DATABASE_URL", None)
    tmp = Path(home) / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
        HOME=str(home),
        TMPDIR=str(tmp),
    )
    return env


def smsbot_env(
    database: Path,
    port: int | None,
    home: Path | str,
    token: str = TOKEN,
    secret: str = SECRET_KEY,
    **settings: str,
) -> dict[str, str]:
    """The whole environment of an smsbot keeping `database`, with the shipped flows; given
    a port, for a server on it. `settings` (names without the prefix) go on top."""
    env = clean_env(home)
    env.update(
        SMSBOT_DATABASE=str(database),
        SMSBOT_FLOWS_DIR=str(FLOWS_DIR),
        SMSBOT_TWILIO_AUTH_TOKEN=token,
        SMSBOT_SECRET_KEY=secret,
    )
    if port is not None:
        env.update(PORT=str(port), SMSBOT_PUBLIC_URL=f"http://127.0.0.1:{port}")
    env.update({f"SMSBOT_{k}": v for k, v in settings.items()})
    return env


def serve(
    command: str, env: dict[str, str], port: int, log: Path | None = None
) -> subprocess.Popen:
    """Start a gunicorn command line in the environment `env` (all of it) and wait until it
    accepts connections; its error log (stderr) goes to `log` when given."""
    with open(log or os.devnull, "ab") as errors:
        process = subprocess.Popen(
            ["sh", "-c", f"exec {command}"],
            cwd=ROOT,
            env={**env, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}: {command}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"server did not start: {command}")


THREADS = 2  # wrk threads: one per core, as the server's workers are


def load(
    port: int, lines: list[tuple[str, str]], concurrency: int, seconds: int, scratch: Path
) -> dict:
    """Send lines in order through wrk for `seconds`; return its figures, and `answered`:
    the indexes of lines certainly answered (all but each connection's last in flight)."""
    path = scratch / f"requests-{port}-{concurrency}.tsv"
    path.write_text("".join(f"{body}\t{sig}\n" for body, sig in lines))
    result = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(ROOT / "bench" / "inbound.lua"), f"http://127.0.0.1:{port}",
         "--", str(path), str(THREADS)],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    )  # fmt: skip
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    if any(issued > len(lines) // THREADS for issued in figures["issued"]):
        raise SystemExit("the request file ran out: raise --lines")
    in_flight = concurrency // THREADS
    # wrk calls the first thread's request() once before the run to check the request
    # (script_verify_request): that line is never sent.
    figures["answered"] = [
        n
        for thread, issued in enumerate(figures["issued"])
        for n in range(thread, len(lines), THREADS)[int(thread == 0) : max(0, issued - in_flight)]
    ]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per app and concurrency")
    parser.add_argument("--lines", type=int, default=60_000, help="requests prepared per run")
    parser.add_argument("--numbers", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt install wrk")
    command = web_line()
    with tempfile.TemporaryDirectory(prefix="smsbot-bench-") as tmp:
        scratch = Path(tmp)
        ports = {"baseline": free_port(), "smsbot": free_port()}
        envs = {  # a home each: one gunicorn control socket each
            "smsbot": smsbot_env(scratch / "smsbot.db", ports["smsbot"], scratch / "smsbot"),
            "baseline": {
                **clean_env(scratch / "baseline"),
                "BASELINE_DATABASE": str(scratch / "baseline.db"),
                "BASELINE_TOKEN": TOKEN,
                "BASELINE_PUBLIC_URL": f"http://127.0.0.1:{ports['baseline']}",
            },
        }
        commands = {
            "smsbot": command,
            "baseline": command.replace("'app:create_app()'", "'bench.baseline:create_app()'"),
        }
        runs = [(r, c) for r in range(args.rounds) for c in args.concurrency]
        forms = conversations(args.numbers, args.lines * len(runs))
        results: dict[tuple[str, int], list[dict]] = {}
        answered: set[str] = set()
        # Both apps stay up (an idle one costs nothing) and take turns, the order swapped
        # each round, so a drift in the machine's speed weighs on both alike.
        servers = [serve(commands[app], envs[app], ports[app]) for app in ports]
        try:
            for index, (round_, concurrency) in enumerate(runs):
                chunk = forms[index * args.lines : (index + 1) * args.lines]
                for app in ("baseline", "smsbot")[:: 1 if round_ % 2 == 0 else -1]:
                    lines = signed(chunk, f"http://127.0.0.1:{ports[app]}/sms", TOKEN)
                    run = load(ports[app], lines, concurrency, args.seconds, scratch)
                    results.setdefault((app, concurrency), []).append(run)
                    if app == "smsbot":
                        answered |= {chunk[n]["MessageSid"] for n in run["answered"]}
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
        report(command, results, args.concurrency)
        check_stored(scratch / "smsbot.db", answered)
        print("ledger verify:", verify_ledger(envs["smsbot"]))


def report(command: str, results: dict[tuple[str, int], list[dict]], levels: list[int]) -> None:
    """Each app's median run per concurrency (by req/s), the ratio of the medians, and each
    round's ratio: the first round's numbers are all new (a burst of JOINs and YESes)."""
    print(f"machine: {os.cpu_count()} cores; both apps: {command.split(' --bind')[0]}")
    rounds = len(next(iter(results.values())))
    print(f"median of {rounds} runs each; req/s of every run in brackets")
    print(f"{'app':9} {'conc':>4} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}  runs")
    median = {}
    for concurrency in levels:
        for app in ("baseline", "smsbot"):
            runs = sorted(results[app, concurrency], key=lambda r: r["rps"])
            r = median[app, concurrency] = runs[len(runs) // 2]
            errors = sum(run["errors"] + run["status_errors"] for run in runs)
            every = ", ".join(f"{run['rps']:.0f}" for run in results[app, concurrency])
            print(f"{app:9} {concurrency:4} {r['rps']:7.0f} {r['p50_us'] / 1000:7.1f}"
                  f" {r['p99_us'] / 1000:7.1f} {errors:6}  [{every}]")  # fmt: skip
    for concurrency in levels:
        ratio = median["smsbot", concurrency]["rps"] / median["baseline", concurrency]["rps"]
        pairs = zip(results["smsbot", concurrency], results["baseline", concurrency], strict=True)
        each = ", ".join(f"{s['rps'] / b['rps']:.2f}" for s, b in pairs)
        print(f"smsbot/baseline at concurrency {concurrency}: {ratio:.2f} (rounds: {each})")


def check_stored(database: Path, answered: set[str]) -> None:
    """Print how many of the answered MessageSids are in the database, and any missing."""
    with sqlite3.connect(database) as conn:
        kept = {sid for (sid,) in conn.execute("SELECT sid FROM messages WHERE direction = 'in'")}
    missing = answered - kept
    print(f"answered messages stored: {len(answered) - len(missing):,} of {len(answered):,}")
    for sid in sorted(missing):
        print(f"  missing: {sid}")


def verify_ledger(env: dict[str, str]) -> str:
    """`flask ledger verify` on the benchmark's database: its first line, or its error."""
    verify = subprocess.run(
        ["flask", "ledger", "verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # it reads the whole ledger: about a minute per 2 million events
    )
    return " / ".join(verify.stdout.split("\n")[:1]) or verify.stderr.strip()


if __name__ == "__main__":
    main()
