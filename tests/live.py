"""A live gunicorn running the Procfile's `web:` command, and signed webhooks over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.inbound import free_port, web_line
from tests.conftest import AUTH_TOKEN, BUSINESS_NUMBER, ROOT, SHIPPED_FLOWS, sign

SECRET_KEY = "live-test-secret-key"
BOOT_LIMIT = 30.0  # seconds gunicorn gets to answer /healthz or to exit; a bound, not a check


def smsbot_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """A clean environment: no inherited SMSBOT_ settings, a temp database, the test token.
    `settings` (names without the prefix) override those; a test on PostgreSQL passes its
    DATABASE_URL (see `Backend.env` in conftest.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSBOT_")}
    env.pop("DATABASE_URL", None)
    # The venv's scripts (gunicorn, flask) first; HOME in tmp keeps gunicorn's control
    # socket (~/.gunicorn/gunicorn.ctl) away from any other gunicorn on this machine.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["HOME"] = str(tmp_path)
    env["TMPDIR"] = str(tmp_path / "tmp")
    os.makedirs(env["TMPDIR"], exist_ok=True)
    env.update(
        SMSBOT_DATABASE=str(tmp_path / "smsbot.db"),
        SMSBOT_FLOWS_DIR=str(SHIPPED_FLOWS),
        SMSBOT_TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        SMSBOT_SECRET_KEY=SECRET_KEY,
    )
    env.update({f"SMSBOT_{k}": v for k, v in settings.items()})
    return env


@dataclass
class Response:
    status: int
    content_type: str
    body: str


class Gunicorn:
    """The Procfile's web process on a free port, on the settings' database (SQLite by
    default, PostgreSQL given DATABASE_URL); use as a context manager."""

    def __init__(self, tmp_path: Path, workers: int = 2, **settings: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = smsbot_env(tmp_path, PUBLIC_URL=self.url, **settings)
        self.env["PORT"] = str(self.port)
        self.env["WEB_CONCURRENCY"] = str(workers)
        self.log_path = tmp_path / "gunicorn.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Gunicorn:
        with open(self.log_path, "wb") as log:
            # The Procfile line as a host runs it, through sh; `exec` makes sh become the
            # arbiter, so its exit status is ours to read. start_new_session: gunicorn and
            # its workers form one process group, which only we end.
            self.process = subprocess.Popen(
                ["sh", "-c", "exec " + web_line()],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + BOOT_LIMIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited {self.process.returncode}:\n{self.output()}")
            try:
                if self.get("/healthz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gunicorn did not answer /healthz in {BOOT_LIMIT}s:\n{self.output()}")

    def wait_for_exit(self) -> int | None:
        """The exit status, or None (after killing it) if it is still running at the limit."""
        try:
            return self.process.wait(timeout=BOOT_LIMIT)
        except subprocess.TimeoutExpired:
            self.stop()
            return None

    def stop(self) -> None:
        """SIGTERM the arbiter (it stops its workers); SIGKILL our process group if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=BOOT_LIMIT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> Gunicorn:
        self.start()
        self.wait_until_healthy()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def get(self, path: str) -> Response:
        return self._send(urllib.request.Request(self.url + path))

    def text(self, body: str, phone: str, sid: str) -> Response:
        """POST a signed incoming-message webhook, as Twilio does."""
        params = {
            "MessageSid": sid,
            "AccountSid": "AC" + "0" * 32,
            "From": phone,
            "To": BUSINESS_NUMBER,
            "Body": body,
            "NumMedia": "0",
        }
        request = urllib.request.Request(
            self.url + "/sms",
            data=urllib.parse.urlencode(params).encode(),
            headers={"X-Twilio-Signature": sign(self.url + "/sms", params)},
        )
        return self._send(request)

    @staticmethod
    def _send(request: urllib.request.Request) -> Response:
        try:
            with urllib.request.urlopen(request, timeout=BOOT_LIMIT) as answer:
                return Response(
                    answer.status, answer.headers.get_content_type(), answer.read().decode()
                )
        except urllib.error.HTTPError as error:
            return Response(error.code, error.headers.get_content_type(), error.read().decode())
