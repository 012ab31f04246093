"""A fault drill's result, and the audit of the stopped server's database every drill of
bench/faults.py ends with: the stored inbound messages of each number replayed through the
pure engine, stored-once and orphan-event checks, and `flask ledger verify`."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field

from bench.client import Answer, twiml_replies
from bench.inbound import FLOWS_DIR, ROOT
from bench.server import BOOT_LIMIT, Server
from flows.contact import Contact
from flows.engine import handle
from flows.loader import load_flows
from flows.outcome import Inbound


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class DrillResult:
    """One drill's counts (first attempts; retries apart), facts and checks."""

    name: str
    setup: str
    requests: int = 0
    ok: int = 0
    busy: int = 0  # 503
    failed: int = 0  # 500, first attempts and retries: must stay 0
    other: int = 0  # any other status
    connection_errors: int = 0  # no HTTP answer at all
    retries: int = 0
    retried_ok: int = 0
    facts: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(check.ok for check in self.checks)

    def count(self, answers: list[list[Answer]]) -> None:
        """Tally each webhook's first answer, and its retries apart."""
        for first, *retries in answers:
            self.requests += 1
            self.ok += first.status == 200
            self.busy += first.status == 503
            self.other += first.status not in (None, 200, 500, 503)
            self.connection_errors += first.status is None
            self.retries += len(retries)
            self.retried_ok += sum(a.status == 200 for a in retries)
            self.failed += sum(a.status == 500 for a in (first, *retries))

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))

    def report(self) -> str:
        """The drill's printout."""
        lines = [
            f"{self.name}: {self.setup} ({self.seconds:.1f} s)",
            f"  requests {self.requests:,}  200: {self.ok:,}  503: {self.busy:,}"
            f"  500: {self.failed:,}  other status: {self.other:,}"
            f"  connection errors: {self.connection_errors:,}",
            f"  retries {self.retries:,}  answered 200 on retry: {self.retried_ok:,}",
            *(f"  {fact}" for fact in self.facts),
        ]
        for check in self.checks:
            detail = f" ({check.detail})" if check.detail else ""
            lines.append(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}{detail}")
        return "\n".join(lines)


def check_storage(
    result: DrillResult,
    server: Server,
    forms: list[dict[str, str]],
    answers: list[list[Answer]],
) -> None:
    """The checks every drill ends with, on the stopped server's database."""
    result.check("no 500 answers", result.failed == 0, f"{result.failed}")
    flows = load_flows(FLOWS_DIR)
    store = server.store()
    try:
        ledger = store.ledger()
        events: dict[str | None, list[tuple[str, str | None]]] = defaultdict(list)
        for row in ledger:
            events[(row.body or {}).get("sid")].append((row.event, (row.body or {}).get("flow")))
        stored: dict[str, list[str]] = {}  # inbound sid -> its stored replies
        inbound_rows, mismatched = 0, []
        for phone in sorted({form["From"] for form in forms}):
            messages = store.messages(phone)
            replies: dict[str | None, list[str]] = defaultdict(list)
            for message in messages:
                if message.direction == "out":
                    replies[message.reply_to].append(message.body)
            contact, profile, problems = Contact(phone), {}, []
            for message in (m for m in messages if m.direction == "in"):
                inbound_rows += 1
                stored[message.sid] = replies[message.sid]
                inbound = Inbound(sid=message.sid, phone=phone, body=message.body)
                outcome = handle(inbound, contact, flows, message.created_at)
                if [r.text for r in outcome.replies] != replies[message.sid]:
                    problems.append(f"{message.sid}: stored replies differ")
                if [(e.event, e.flow) for e in outcome.events] != events[message.sid]:
                    problems.append(
                        f"{message.sid} {message.body!r}: ledger has {events[message.sid]}"
                        f", the engine gives {[(e.event, e.flow) for e in outcome.events]}"
                    )
                contact, profile = outcome.contact, {**profile, **dict(outcome.profile)}
            if _state(store.contact(phone)) != _state(contact):
                problems.append("stored state differs from the replay's")
            if store.profile(phone) != profile:
                problems.append("stored profile differs from the replay's")
            mismatched += [f"{phone}: {problem}" for problem in problems]
    finally:
        store.close()

    posted = list(zip((form["MessageSid"] for form in forms), answers, strict=True))
    ok_sids = {sid for sid, tries in posted if tries and tries[-1].status == 200}
    kept = ok_sids & stored.keys()
    result.check(
        "every 200-answered MessageSid is stored once as an inbound message",
        kept == ok_sids and inbound_rows == len(stored),
        f"{len(kept):,} of {len(ok_sids):,}; {inbound_rows:,} inbound rows,"
        f" {len(stored):,} distinct sids",
    )
    wrong = [
        sid
        for sid, tries in posted
        for answer in tries
        if answer.status == 200 and twiml_replies(answer.body) != stored.get(sid)
    ]
    result.check(
        "every 200 answer carries exactly the stored replies of its MessageSid",
        not wrong,
        ", ".join(wrong[:3]),
    )
    result.check(
        "no half-written state: replaying each number's stored messages through the engine"
        " gives its stored replies, ledger events, state and profile",
        not mismatched,
        "; ".join(mismatched[:3]) or f"{len({f['From'] for f in forms}):,} numbers",
    )
    orphans = [sid for sid in events if sid not in stored]
    result.check(
        "no ledger event without its inbound message",
        not orphans,
        f"orphans: {orphans[:3]}" if orphans else f"{len(ledger):,} events",
    )
    verify = subprocess.run(
        [sys.executable, "-m", "flask", "ledger", "verify"],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=BOOT_LIMIT,
    )
    said = (verify.stdout.strip().splitlines() or verify.stderr.strip().splitlines() or [""])[0]
    result.check("flask ledger verify", verify.returncode == 0, said)


def check_unstored(result: DrillResult, server: Server, forms: list[dict[str, str]]) -> None:
    """Check that nothing of the messages in `forms` (each answered 503) was stored."""
    store = server.store()
    try:
        early = [
            form["MessageSid"]
            for form in forms
            if any(
                m.direction == "in" and m.sid == form["MessageSid"]
                for m in store.messages(form["From"])
            )
        ]
    finally:
        store.close()
    result.check("nothing of a 503'd message was stored", not early, ", ".join(early[:3]))


def _state(contact: Contact) -> tuple:
    subscriptions = sorted((s.flow, s.state, s.since, s.question) for s in contact.subscriptions)
    return contact.opted_out, contact.restorable, subscriptions
