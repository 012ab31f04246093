"""A local fake of Twilio's REST Messages API, reached by the real twilio client over HTTP.

Point a client at it by setting the API domain's base URL (no patching)::

    client = Client(fake.account_sid, fake.auth_token)
    client.api.base_url = fake.url

In tests use the `fake_twilio` fixture, or `with FakeTwilio() as fake:`. It serves
`POST` and `GET .../Accounts/{sid}/Messages.json` and `GET .../Messages/{sid}.json`, checks
HTTP basic auth, records every request, and answers with Twilio's JSON shapes; `fail()` and
`delay` script errors and slowness. Statuses never advance and no status callback is sent.

For benchmarks run it alone; it prints its URL on the first line and serves until killed::

    python -m tests.fake_twilio --port 0 [--account-sid AC...] [--auth-token TOKEN]

It answers as fast as it can: one thread per connection, keep-alive, no logging, no sleeps
unless `delay` is set. The defaults are DEFAULT_ACCOUNT_SID and DEFAULT_AUTH_TOKEN.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from flows.segments import segments

DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token"
API = "/2010-04-01"
_ROUTE = re.compile(r"/2010-04-01/Accounts/(?P<account>\w+)/Messages(?:/(?P<sid>\w+))?\.json")
# The wording Twilio's API gives for the codes smsbot meets; others get a generic message.
ERROR_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "Invalid 'To' Phone Number",
    21602: "Message body is required.",
    21603: "The source 'from' phone number is required to send an SMS",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}


class Request(NamedTuple):
    """One request as received: the form is the POST body, or the query string of a GET."""

    method: str
    path: str
    form: dict[str, str]


class _Failure(NamedTuple):
    code: int
    status: int
    times: int | None  # None: every send; else how many more sends fail


def error(code: int, status: int) -> dict[str, object]:
    """Twilio's JSON error body; twilio-python turns it into TwilioRestException."""
    return {
        "code": code,
        "message": ERROR_MESSAGES.get(code, f"Fake Twilio error {code}"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class FakeTwilio:
    """Twilio's Messages API on 127.0.0.1, in a background thread."""

    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        port: int = 0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.delay = 0.0  # seconds every answer waits; the message is created before it
        self.requests: list[Request] = []
        credentials = f"{account_sid}:{auth_token}".encode()
        self._authorization = "Basic " + base64.b64encode(credentials).decode()
        self._messages: dict[str, dict[str, object]] = {}  # by sid, oldest first
        self._failures: dict[str, _Failure] = {}
        self._connections: set[socket.socket] = set()  # open keep-alive connections
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _handler_for(self))
        # A short poll lets stop() return at once; fixtures stop one fake per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL to give `client.api.base_url`."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeTwilio:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections, so a pooled client can't reach it either."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def fail(self, to: str, code: int, status: int = 400, times: int | None = None) -> None:
        """Answer sends to `to` with Twilio error `code`: forever, or only the next `times`."""
        with self._lock:
            self._failures[to] = _Failure(code, status, times)

    def recover(self, to: str) -> None:
        """Let sends to `to` succeed again."""
        with self._lock:
            self._failures.pop(to, None)

    def sent(self, to: str | None = None) -> list[dict[str, object]]:
        """The messages created so far (Twilio's Message resources), oldest first."""
        with self._lock:
            messages = list(self._messages.values())
        return [dict(m) for m in messages if to is None or m["to"] == to]

    def answer(
        self, method: str, path: str, form: dict[str, str], authorization: str | None
    ) -> tuple[int, dict[str, object]]:
        """The status and JSON body Twilio would give this request."""
        with self._lock:
            self.requests.append(Request(method, path, form))
        if authorization != self._authorization:
            return 401, error(20003, 401)
        route = _ROUTE.fullmatch(path)
        if not route or route["account"] != self.account_sid:
            return 404, error(20404, 404)
        if method == "POST" and not route["sid"]:
            return self._create(form)
        if method == "GET" and route["sid"]:
            with self._lock:
                message = self._messages.get(route["sid"])
            return (200, message) if message else (404, error(20404, 404))
        if method == "GET":
            return 200, self._page(path, form)
        return 405, error(20004, 405)

    def _create(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        to, body = form.get("To"), form.get("Body", "")
        if not to:
            return 400, error(21604, 400)
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return 400, error(21603, 400)
        if not body and not form.get("MediaUrl"):
            return 400, error(21602, 400)
        if len(body) > 1600:
            return 400, error(21617, 400)
        with self._lock:
            failure = self._failures.get(to)
            if failure and failure.times is not None:
                left = failure.times - 1
                if left > 0:
                    self._failures[to] = failure._replace(times=left)
                else:
                    del self._failures[to]
            if failure:
                return failure.status, error(failure.code, failure.status)
            message = self._message(form)
            self._messages[message["sid"]] = message
        return 201, message

    def _message(self, form: dict[str, str]) -> dict[str, object]:
        sid = "SM" + uuid.uuid4().hex
        uri = f"{API}/Accounts/{self.account_sid}/Messages/{sid}"
        now = format_datetime(datetime.now(UTC))
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "1" if form.get("MediaUrl") else "0",
            "num_segments": str(segments(form.get("Body", "")).count),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # A Messaging Service send without a From is "accepted" until a sender is picked.
            "status": "queued" if form.get("From") else "accepted",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form["To"],
            "uri": f"{uri}.json",
        }

    def _page(self, path: str, query: dict[str, str]) -> dict[str, object]:
        size, number = int(query.get("PageSize", 50)), int(query.get("Page", 0))
        with self._lock:
            matches = [
                m
                for m in reversed(self._messages.values())  # Twilio lists newest first
                if m["to"] == query.get("To", m["to"]) and m["from"] == query.get("From", m["from"])
            ]
        filters = {k: v for k, v in query.items() if k in ("To", "From")}
        first = f"{path}?{urlencode({**filters, 'PageSize': size, 'Page': 0})}"
        later = f"{path}?{urlencode({**filters, 'PageSize': size, 'Page': number + 1})}"
        return {
            "messages": matches[number * size : (number + 1) * size],
            "end": min((number + 1) * size, len(matches)) - 1,
            "first_page_uri": first,
            "next_page_uri": later if (number + 1) * size < len(matches) else None,
            "page": number,
            "page_size": size,
            "previous_page_uri": None,
            "start": number * size,
            "uri": f"{path}?{urlencode(query)}",
        }


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # benchmarks open many connections at once

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up (timed out, killed worker) is the scenario, not a fault.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(fake: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the twilio client pools connections
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            with fake._lock:
                fake._connections.add(self.connection)

        def finish(self) -> None:
            with fake._lock:
                fake._connections.discard(self.connection)
            super().finish()

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            parts = urlsplit(self.path)
            form = dict(parse_qsl(raw if self.command == "POST" else parts.query))
            status, payload = fake.answer(
                self.command, parts.path, form, self.headers.get("Authorization")
            )
            if fake.delay:
                time.sleep(fake.delay)
            body = json.dumps(payload).encode()
            reason = self.responses.get(status, ("",))[0]
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            self.wfile.write(head.encode() + body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: thousands of requests a second

    return Handler


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    """A started FakeTwilio, stopped after the test."""
    with FakeTwilio() as fake:
        yield fake


def main() -> None:
    """Serve until interrupted, printing the URL first (for benchmarks)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    args = parser.parse_args()
    fake = FakeTwilio(args.account_sid, args.auth_token, args.port)
    print(fake.url, flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()


if __name__ == "__main__":
    main()
