"""Signed webhooks posted to a loopback smsbot from many threads over kept-alive
http.client connections, every answer recorded, a lost connection retried as Twilio
would; for the fault drills of bench/faults.py."""

from __future__ import annotations

import http.client
import itertools
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from bench.inbound import TOKEN
from bench.workload import signed

SOCKET_TIMEOUT = 20.0  # above gunicorn's --timeout 15: a stuck worker is killed first
CONCURRENCY = 16  # client threads; the pacing, not the threads, sets the rate


@dataclass(frozen=True)
class Webhook:
    """One signed inbound-message webhook, ready to post."""

    sid: str
    body: str  # urlencoded form
    signature: str


@dataclass(frozen=True)
class Answer:
    """What one POST got: an HTTP status and body, or no answer (status None) and why."""

    status: int | None
    body: str
    seconds: float
    error: str = ""


class Client:
    """Posts webhooks over http.client connections, one per thread, kept between requests
    (gunicorn's sync workers close each one; http.client then opens the next)."""

    def __init__(self, port: int):
        self.port = port
        self._local = threading.local()

    def post(self, hook: Webhook) -> Answer:
        """POST one webhook to /sms; a connection that fails unanswered gives status None."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=SOCKET_TIMEOUT
            )
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": hook.signature,
        }
        started = time.monotonic()
        try:
            conn.request("POST", "/sms", hook.body, headers)
            response = conn.getresponse()
            body = response.read().decode()
            return Answer(response.status, body, time.monotonic() - started)
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            self._local.conn = None
            return Answer(None, "", time.monotonic() - started, type(error).__name__)


def burst(
    client: Client, hooks: list[Webhook], seconds: float, attempts: int = 1
) -> list[list[Answer]]:
    """Post `hooks` paced evenly over `seconds` from CONCURRENCY threads; for each, its
    answers: the first, then up to `attempts - 1` retries after connection failures.
    Nothing new is posted past a deadline, so a hung server can't hold the drill."""
    answers: list[list[Answer]] = [[] for _ in hooks]
    counter, start = itertools.count(), time.monotonic()
    deadline = start + 3 * seconds + 30
    gap = seconds / max(1, len(hooks))

    def sender() -> None:
        while True:
            index = next(counter)
            if index >= len(hooks) or time.monotonic() > deadline:
                return
            time.sleep(max(0.0, start + index * gap - time.monotonic()))
            for attempt in range(attempts):
                if attempt:
                    time.sleep(0.1)  # Twilio retries later, not in the same instant
                answers[index].append(client.post(hooks[index]))
                if answers[index][-1].status is not None:
                    break

    run_threads([sender] * CONCURRENCY)
    return answers


def run_threads(targets: list[Callable[[], None]]) -> None:
    """Run each target in a thread of its own; return when all have ended."""
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def webhooks(forms: list[dict[str, str]], url: str) -> list[Webhook]:
    """The forms signed for the server at `url`."""
    return [
        Webhook(form["MessageSid"], body, signature)
        for form, (body, signature) in zip(forms, signed(forms, url + "/sms", TOKEN), strict=True)
    ]


def twiml_replies(body: str) -> list[str]:
    """The <Message> texts of a TwiML answer."""
    return [message.text or "" for message in ET.fromstring(body).iter("Message")]
