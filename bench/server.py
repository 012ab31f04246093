"""The Procfile's web process on a loopback port, on a throwaway database, for the fault
drills of bench/faults.py: started, watched (its workers, /healthz, its log), stopped."""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.inbound import ROOT, free_port, smsbot_env, web_line
from storage import Store, open_store

SECRET_KEY = "faults"
BOOT_LIMIT = 30.0  # seconds gunicorn gets to answer /healthz, or to stop


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
        """Stop the server and its workers."""
        stop(self.process)

    def healthy(self) -> bool:
        """True when /healthz answers 200."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def errors(self) -> list[str]:
        """The exception line ending each traceback in the gunicorn log, and the arbiter's
        reason for exiting: what a 500 or a dead server came from."""
        found, in_traceback = [], False
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("Traceback"):
                in_traceback = True
            elif in_traceback and line and not line[0].isspace():
                found.append(line)
                in_traceback = False
            elif "Reason:" in line:
                found.append(line[line.index("Reason:") :])
        return list(dict.fromkeys(found))[-3:]


@contextmanager
def serve(scratch: Path, workers: int = 2, database_url: str | None = None, **settings: str):
    """Run the Procfile's `web:` line on a fresh database; yield the Server, stop it after."""
    port = free_port()
    if database_url:
        settings["DATABASE_URL"] = database_url
    env = smsbot_env(scratch / "smsbot.db", port, scratch, secret=SECRET_KEY, **settings)
    env["WEB_CONCURRENCY"] = str(workers)
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


def stop(process: subprocess.Popen) -> None:
    """SIGTERM a gunicorn arbiter started in its own session (it stops its workers);
    SIGKILL the whole process group if it hangs."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=BOOT_LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def scratch_folder(scratch: Path | None) -> Iterator[Path]:
    """`scratch` (created if need be), or a temporary folder removed after."""
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
        yield scratch
        return
    with tempfile.TemporaryDirectory(prefix="smsbot-faults-") as tmp:
        yield Path(tmp)


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
