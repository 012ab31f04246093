"""The outbox worker (SPEC §8): claim due rows, send them through Twilio, settle each one."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from flows.delivery import SEND, verdict
from flows.engine import handle_carrier_opt_out
from flows.model import FlowSet
from flows.outcome import Inbound
from flows.schedule import QuietHours, next_attempt
from storage import OutboxRow, Store

# Twilio errors no retry can fix: the recipient replied STOP to the carrier (21610), the
# number is invalid (21211) or can't receive SMS (21614).
OPTED_OUT_AT_CARRIER = 21610
PERMANENT = {OPTED_OUT_AT_CARRIER, 21211, 21614}
MAX_ATTEMPTS = 4  # the first try and at most 3 retries
UNLIMITED_BATCH = 50
API_TIMEOUT = 15.0  # seconds; a send still unanswered by then is reconciled, never re-sent blind


def twilio_client(account_sid: str, auth_token: str, api_url: str | None) -> Client:
    """A twilio client, pointed at `api_url` instead of Twilio's API when one is set."""
    client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=API_TIMEOUT))
    if api_url:
        client.api.base_url = api_url.rstrip("/")
    return client


def carrier_opt_out(store: Store, flows: FlowSet, phone: str, sid: str | None, now: datetime):
    """Opt a number out because Twilio says it replied STOP to the carrier (error 21610)."""
    message = Inbound(
        sid, phone, "", source="carrier", context={"error_code": OPTED_OUT_AT_CARRIER}
    )
    return store.change(phone, lambda c: handle_carrier_opt_out(message, c, flows, now), now)


class Worker:
    """Drains the outbox at `rate` messages a second (0: as fast as Twilio answers)."""

    def __init__(
        self,
        store: Store,
        flows: FlowSet,
        client: Client,
        sender: str,
        quiet: QuietHours,
        rate: float = 1.0,
        status_callback: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        reclaim_after: timedelta = timedelta(seconds=API_TIMEOUT * 2),
    ):
        self.store, self.flows, self.client, self.sender = store, flows, client, sender
        self.quiet, self.rate, self.status_callback = quiet, rate, status_callback
        self.clock, self.sleep, self.reclaim_after = clock, sleep, reclaim_after
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.counts: Counter = Counter()

    def run(self, once: bool = False, stop: Callable[[], bool] = lambda: False) -> Counter:
        """Send until stopped (or, with `once`, until nothing is due now); return counts."""
        self.reconcile()
        next_slot = self.clock()
        # One second's worth per claim: every row is re-checked (STOP, caps, quiet hours)
        # at most a second before it goes.
        batch = max(1, int(self.rate)) if self.rate else UNLIMITED_BATCH
        while not stop():
            rows, examined = self.store.claim(self.clock(), self.name, batch, self._decide)
            if not rows:
                if examined:
                    continue  # all held or cancelled: there may be sendable rows behind
                if once:
                    break
                self.sleep(1.0)
                self.reconcile()
                continue
            for index, row in enumerate(rows):
                if stop():  # SIGTERM: give the unsent claims back, settle nothing blind
                    for unsent in rows[index:]:
                        self.store.release(unsent)
                    break
                if self.rate:
                    self.sleep(max(0.0, (next_slot - self.clock()).total_seconds()))
                    next_slot = max(next_slot, self.clock()) + timedelta(seconds=1 / self.rate)
                self.send(row)
        return self.counts

    def _decide(self, row: OutboxRow, contact, suppressed: bool, recent: list[datetime]):
        flow = self.flows.flow(row.flow) if row.flow else None
        result = verdict(row.kind, flow, contact, suppressed, recent, self.clock(), self.quiet)
        if result.action != SEND:
            self.counts[f"{result.action}: {result.reason}"] += 1
        return result.action, result.until, result.reason

    def send(self, row: OutboxRow) -> None:
        """Send one claimed row and settle it: sent, retried, failed, or reconciled."""
        params = {"to": row.phone, "body": row.body}
        if self.sender.startswith("MG"):
            params["messaging_service_sid"] = self.sender
        else:
            params["from_"] = self.sender
        if self.status_callback:
            params["status_callback"] = self.status_callback
        try:
            message = self.client.messages.create(**params)
        except TwilioRestException as error:
            self._failed(row, error)
        except requests.RequestException:
            # Twilio may or may not have it: ask before anything is sent again.
            self.counts["reconciled"] += 1
            self.reconcile_row(row)
        else:
            self.store.mark_sent(row, message.sid, message.status or "queued", self.clock())
            self.counts["sent"] += 1

    def _failed(self, row: OutboxRow, error: TwilioRestException) -> None:
        now, code = self.clock(), error.code
        attempts = row.attempts + 1  # claiming counted this attempt
        if code in PERMANENT or attempts >= MAX_ATTEMPTS:
            reason = error.msg if code in PERMANENT else f"gave up after {attempts} attempts"
            self.store.finish(row, "failed", str(code or error.status), reason, now)
            self.counts["failed"] += 1
            if code == OPTED_OUT_AT_CARRIER:
                carrier_opt_out(self.store, self.flows, row.phone, None, now)
        else:
            self.store.retry(row, next_attempt(attempts, now), str(code or error.status), error.msg)
            self.counts["retried"] += 1

    def reconcile(self) -> None:
        """Settle rows a crashed worker claimed: sent if Twilio has them, else queued again."""
        # Called between batches, when none of this worker's own sends is under way.
        for row in self.store.stale_claims(self.clock() - self.reclaim_after):
            self.counts["reconciled"] += 1
            self.reconcile_row(row)

    def reconcile_row(self, row: OutboxRow) -> None:
        """Look the row up at Twilio (same number, same text, since the claim)."""
        since = (row.claimed_at or row.not_before) - timedelta(minutes=1)
        try:
            found = [
                m
                for m in self.client.messages.list(to=row.phone, limit=50)
                if m.body == row.body and (m.date_created is None or m.date_created >= since)
            ]
        except (TwilioRestException, requests.RequestException):
            return  # Twilio can't say now; the row stays claimed until the next look
        if found:
            self.store.mark_sent(row, found[0].sid, found[0].status or "queued", self.clock())
        else:
            self.store.release(row)
