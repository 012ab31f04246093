"""A live gunicorn running the Procfile's `web:` command, and signed webhooks over real HTTP."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.inbound import free_port, web_line
from bench.inbound import smsbot_env as bench_env
from bench.server import stop
from tests.conftest import AUTH_TOKEN, BUSINESS_NUMBER, ROOT, sign

SECRET_KEY = "live-test-secret-key"
BOOT_LIMIT = 30.0  # seconds gunicorn gets to answer /healthz or to exit; a bound, not a check


def smsbot_env(tmp_path: Path, port: int | None = None, **settings: str) -> dict[str, str]:
    """A clean environment (no inherited SMSBOT_ settings), a database in `tmp_path`, the
    test token; `settings` (names without the prefix) override those, and a test on
    PostgreSQL passes its DATABASE_URL (see `Backend.env` in conftest.py)."""
    return bench_env(tmp_path / "smsbot.db", port, tmp_path, AUTH_TOKEN, SECRET_KEY, **settings)


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
        self.env = smsbot_env(tmp_path, self.port, **settings)
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
        """Stop gunicorn and its workers."""
        if self.process is not None:
            stop(self.process)

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
