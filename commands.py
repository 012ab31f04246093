"""The operator commands (`flask init-db`, `ledger verify`, `evidence`, `subject`, `retention`,
`import`, `broadcast`, `worker`, `flows check`). Registered on the app by app.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import jinja2

from flows.check import report
from flows.model import FlowSet
from flows.outcome import ConsentEvent
from flows.phones import to_e164
from flows.schedule import parse_quiet_hours
from flows.subscribers import read_subscribers
from flows.times import parse_instant
from outbox import API_TIMEOUT, Worker, twilio_client
from settings import DEFAULTS
from storage import Store, StoreBusy
from storage.evidence import build_packet
from storage.ledger import subject_key, timestamp, verify

ROOT = Path(__file__).resolve().parent
MAX_TEXT = 1600  # Twilio's limit for one message body
_HEAD = re.compile(r"\d+:[0-9a-f]{64}")
# Autoescaped: the packet holds texts people sent, which must print as text, never markup.
_EVIDENCE_HTML = jinja2.Environment(
    loader=jinja2.FileSystemLoader(ROOT / "templates"), autoescape=True
).get_template("evidence.html")


def _store(app) -> Store:
    return app.extensions["smsbot.store"]


def _flows(app) -> FlowSet:
    return app.extensions["smsbot.flows"]


def parse_time(value: str | None) -> datetime:
    """An ISO-8601 time from the command line; no offset means UTC, none means now."""
    if not value:
        return datetime.now(UTC)
    try:
        return parse_instant(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}") from None


@click.group("flows")
def flows_cli() -> None:
    """Check flow files (works even when the configured flows are broken)."""


@flows_cli.command("check")
@click.argument("directory", required=False)
def flows_check(directory: str | None) -> None:
    """Load and lint every flow; print problems and segment counts; exit 1 on an error."""
    # A flask.commands entry point, so it runs without create_app: the flows it checks
    # may be the very ones that stop the app from starting.
    lines, ok = report(directory or os.environ.get("SMSBOT_FLOWS_DIR") or DEFAULTS["FLOWS_DIR"])
    for line in lines:
        click.echo(line)
    sys.exit(0 if ok else 1)


def _redactable_before(app, now: datetime) -> str:
    """Ledger rows redacted after this time broke the evidence retention."""
    return timestamp(now - timedelta(days=app.config["EVIDENCE_RETENTION_DAYS"]))


def _phone_argument(app, text: str) -> str:
    phone = to_e164(text, app.config["DEFAULT_REGION"])
    if phone is None:
        raise click.BadParameter(f"not a phone number: {text!r}", param_hint="PHONE")
    return phone


def register_commands(app) -> None:
    """Add the operator commands to the app's `flask` CLI."""
    ledger_group = click.Group("ledger", help="The consent ledger.")
    app.cli.add_command(ledger_group)

    @ledger_group.command("verify")
    @click.option("--head", "head_seen", help="an earlier head SEQ:HASH that must still be there")
    def ledger_verify(head_seen: str | None) -> None:
        """Recompute the hash chain; exit 1 naming the first bad event."""
        if head_seen is not None and not _HEAD.fullmatch(head_seen):
            raise click.BadParameter("expected SEQ:HASH, e.g. 42:9f86…", param_hint="--head")
        result = verify(
            _store(app).iter_ledger(), _redactable_before(app, datetime.now(UTC)), head_seen
        )
        if not result.ok:
            click.echo(f"FAILED: {result.problem}", err=True)
            sys.exit(1)
        click.echo(f"ok {result.events} events")
        click.echo(f"head {result.head}")
        click.echo(f"{result.redacted} redacted")

    subject_group = click.Group("subject", help="One person's data (GDPR art. 15, 17, 20).")
    app.cli.add_command(subject_group)

    @subject_group.command("export")
    @click.argument("phone")
    def subject_export(phone: str) -> None:
        """Everything held about one number, as JSON."""
        exported = _store(app).export(_phone_argument(app, phone))
        click.echo(json.dumps(exported, indent=2, ensure_ascii=False))

    @subject_group.command("erase")
    @click.argument("phone")
    @click.option("--yes", "confirmed", is_flag=True, help="really erase")
    def subject_erase(phone: str, confirmed: bool) -> None:
        """Erase one number's personal data; keep the pseudonymous ledger and suppress it."""
        number = _phone_argument(app, phone)
        if not confirmed:
            raise click.UsageError("erasure can't be undone: add --yes to erase " + number)
        event = ConsentEvent("erased", None, "admin", None, {"reason": "data subject request"})
        try:
            removed = _store(app).erase(number, event, datetime.now(UTC))
        except StoreBusy as busy:
            click.echo(f"not finished: {busy}; run the same command again", err=True)
            sys.exit(1)
        click.echo(f"erased {number}")
        for what, count in removed.items():
            click.echo(f"  {count} {what}")
        click.echo("  kept: the pseudonymous ledger rows; the number key is now suppressed")

    retention_group = click.Group("retention", help="Data retention (GDPR art. 5(1)(e)).")
    app.cli.add_command(retention_group)

    @retention_group.command("run")
    @click.option("--dry-run", is_flag=True, help="count what would change, change nothing")
    def retention_run(dry_run: bool) -> None:
        """Purge old message bodies, expire stale opt-ins, redact ended evidence."""
        store, config, now = _store(app), app.config, datetime.now(UTC)
        windows = {flow.id: flow.confirm_within for flow in _flows(app).flows}
        messages = timedelta(days=config["MESSAGE_RETENTION_DAYS"])
        evidence = timedelta(days=config["EVIDENCE_RETENTION_DAYS"])
        counts = {
            "message bodies replaced by their SHA-256": store.purge_bodies(
                now - messages, now, dry_run
            ),
            "pending opt-ins expired": store.expire_pending(windows, now, dry_run),
            "ledger rows redacted": store.redact(now - evidence, dry_run),
        }
        for what, count in counts.items():
            click.echo(f"{count} {what}")
        if dry_run:
            click.echo("dry run: nothing was changed")

    @app.cli.command("import")
    @click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--flow", "flow_id", required=True, help="the flow they consented to")
    @click.option("--source", required=True, help="where the consent was collected")
    def import_command(csv_file: str, flow_id: str, source: str) -> None:
        """Import subscribers with their consent evidence (phone,consented_at,consent_text)."""
        flow = _flows(app).flow(flow_id)
        if flow is None:
            raise click.BadParameter(f"no flow {flow_id!r}", param_hint="--flow")
        raw, now = Path(csv_file).read_bytes(), datetime.now(UTC)
        lines = raw.decode("utf-8-sig", errors="replace").splitlines()
        rows, problems = read_subscribers(lines, app.config["DEFAULT_REGION"], now)
        if problems:
            for problem in problems:
                click.echo(f"{csv_file}: {problem}", err=True)
            click.echo("nothing imported: fix those rows and run again", err=True)
            sys.exit(1)
        digest, counts = hashlib.sha256(raw).hexdigest(), Counter()
        for row in rows:
            evidence = {
                "consent_text": row.consent_text,
                "consented_at": timestamp(row.consented_at),
                "import_source": source,
                "file_sha256": digest,
                "line": row.line,
                "flow_hash": flow.content_hash,
            }
            event = ConsentEvent("imported", flow.id, "import", None, evidence)
            result = _store(app).import_subscriber(row.phone, flow.id, row.consented_at, event, now)
            counts[result] += 1
            if result != "imported":
                click.echo(f"line {row.line}: {row.phone}: skipped, {result.replace('_', ' ')}")
        click.echo(
            f"imported {counts['imported']}; skipped {counts['opted_out']} opted out,"
            f" {counts['suppressed']} suppressed, {counts['already']} already in {flow.id}"
        )

    @app.cli.command("broadcast")
    @click.option("--flow", "flow_id", required=True, help="send to this flow's subscribers")
    @click.option("--text", required=True, help="the message")
    @click.option("--at", "start", help="ISO-8601; not before this time (default now)")
    def broadcast(flow_id: str, text: str, start: str | None) -> None:
        """Queue one message to every current subscriber of a flow."""
        flow = _flows(app).flow(flow_id)
        if flow is None:
            raise click.BadParameter(f"no flow {flow_id!r}", param_hint="--flow")
        if not text.strip() or len(text) > MAX_TEXT:
            raise click.BadParameter("must be 1 to 1,600 characters", param_hint="--text")
        now = datetime.now(UTC)
        not_before = max(parse_time(start), now)
        queued, left_out = _store(app).queue_broadcast(flow.id, text, not_before, now)
        click.echo(f"queued {queued} for {flow.id}, not before {timestamp(not_before)}")
        click.echo(
            f"left out {sum(left_out.values())}"
            + "".join(f"; {count} {reason}" for reason, count in sorted(left_out.items()))
        )

    @app.cli.command("worker")
    @click.option("--once", is_flag=True, help="send what is due now, then exit")
    @click.option(
        "--reclaim-after",
        type=float,
        default=API_TIMEOUT * 2,
        show_default=True,
        help="seconds after which another worker's unsettled claim is reconciled",
    )
    def worker_command(once: bool, reclaim_after: float) -> None:
        """Send the outbox: rate, quiet hours, frequency caps, retries."""
        config = app.config
        for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"):
            if not config[name]:
                click.echo(f"can't send: SMSBOT_{name} is not set", err=True)
                sys.exit(1)
        client = twilio_client(
            config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"], config["TWILIO_API_URL"]
        )
        public = config["PUBLIC_URL"]
        worker = Worker(
            _store(app),
            _flows(app),
            client,
            config["TWILIO_FROM"],
            parse_quiet_hours(config["QUIET_HOURS"]),
            rate=config["SEND_RATE"],
            status_callback=public.rstrip("/") + "/status" if public else None,
            reclaim_after=timedelta(seconds=reclaim_after),
        )
        stopping: list[int] = []
        # Procfile hosts send SIGTERM on restarts: finish the send under way, then stop.
        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
        counts = worker.run(once=once, stop=lambda: bool(stopping))
        summary = ", ".join(f"{count} {what}" for what, count in sorted(counts.items()))
        click.echo(summary or "nothing to send")

    @app.cli.command("evidence")
    @click.argument("phone")
    @click.option(
        "--format",
        "output",
        type=click.Choice(["json", "html"]),
        default="json",
        show_default=True,
        help="json for systems, html for a printable report",
    )
    def evidence(phone: str, output: str) -> None:
        """The consent evidence packet for one number (SPEC §7)."""
        number, store, now = _phone_argument(app, phone), _store(app), datetime.now(UTC)
        key = subject_key(app.config["SECRET_KEY"], number)
        rows, messages = store.ledger_for(key), store.messages(number)
        # The whole chain, read after the rows so it covers every event shown, with the
        # same retention cutoff as `ledger verify`, so the two never disagree.
        chain = verify(store.iter_ledger(), _redactable_before(app, now))
        packet = build_packet(number, store.contact(number), rows, messages, chain, now, key=key)
        if not chain.ok:
            # The packet is still printed: it is the evidence of the break.
            click.echo(f"warning: ledger chain verification FAILED: {chain.problem}", err=True)
        if output == "html":
            click.echo(_EVIDENCE_HTML.render(packet=packet))
        else:
            click.echo(json.dumps(packet, indent=2, ensure_ascii=False))

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create or migrate the database."""
        _store(app).migrate()
        click.echo("database ready")
