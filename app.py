"""smsbot's Flask app: settings, HTTP routes and CLI commands. The only module importing flask."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from flask import Flask, Response, current_app, render_template, request
from flask.cli import AppGroup
from twilio.request_validator import (
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from flows.check import report
from flows.engine import handle, handle_web_optin
from flows.loader import load_flows
from flows.machine import machine_for
from flows.model import FlowError, FlowSet
from flows.outcome import ConsentEvent, Inbound
from flows.phones import to_e164
from flows.schedule import parse_quiet_hours
from flows.subscribers import read_subscribers
from outbox import API_TIMEOUT, OPTED_OUT_AT_CARRIER, Worker, carrier_opt_out, twilio_client
from storage import Processed, Store, StoreBusy, open_store
from storage.evidence import build_packet
from storage.ledger import subject_key, timestamp, verify

ROOT = Path(__file__).resolve().parent
DEV_SECRET_KEY = "smsbot-development-key-not-secret"
MAX_BODY = 64 * 1024  # SPEC §3: larger webhook bodies get 413
MAX_TEXT = 1600  # Twilio's limit for one message body

# Every setting (SPEC §2): name without the SMSBOT_ prefix → default. The README's table
# lists each one; tests/test_docs.py keeps the two in step.
DEFAULTS: dict[str, object] = {
    "DATABASE": str(ROOT / "instance" / "smsbot.db"),
    "DATABASE_URL": None,
    "FLOWS_DIR": str(ROOT / "flows" / "definitions"),
    "TWILIO_ACCOUNT_SID": None,
    "TWILIO_AUTH_TOKEN": None,
    "TWILIO_FROM": None,
    "TWILIO_API_URL": None,
    "PUBLIC_URL": None,
    "BEHIND_PROXY": 0,
    "VALIDATE_SIGNATURES": True,
    "SECRET_KEY": None,
    "API_TOKEN": None,
    "MESSAGE_RETENTION_DAYS": 90,
    "EVIDENCE_RETENTION_DAYS": 1826,
    "QUIET_HOURS": "21:00-08:00",
    "SEND_RATE": 1.0,
    "ENV": "development",
    "DEFAULT_REGION": "US",
    # Not in SPEC §2: how long a message waits for another writer before answering 503.
    "BUSY_TIMEOUT": 5.0,
}
REQUIRED_FIELDS = ("From", "To", "MessageSid")
OPTIN_FIELDS = ("phone", "flow", "consent_text", "page_url", "ip", "user_agent")
OPTIN_REQUIRED = ("phone", "flow", "consent_text")
# SPEC §3: 202 pending; 409 for suppressed or opted-out numbers; 429 within 24 h.
OPTIN_STATUS = {
    "pending": 202,
    "subscribed": 200,
    "suppressed": 409,
    "opted_out": 409,
    "too_soon": 429,
}
_HEAD = re.compile(r"\d+:[0-9a-f]{64}")
_CLOCK_STEP = re.compile(r"@(\d+)([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class SettingsError(RuntimeError):
    """A setting is missing or malformed; raised by create_app so the process exits."""


def _coerce(name: str, value: object) -> object:
    """Environment values arrive as text (or JSON-decoded); give each setting its type."""
    default = DEFAULTS[name]
    if value is None:
        return None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise SettingsError(f"SMSBOT_{name} must be true or false, got {value!r}")
        return text in ("1", "true", "yes", "on")
    if isinstance(default, int | float):
        try:
            return type(default)(value)
        except (TypeError, ValueError):
            raise SettingsError(f"SMSBOT_{name} must be a number, got {value!r}") from None
    return str(value)


def _settings(app: Flask, config: Mapping[str, object] | None) -> None:
    app.config.update(DEFAULTS)
    # Raw strings (not Flask's default JSON decoding): a token such as "1e51234" must stay
    # text, not become a float; _coerce gives each setting its type below.
    app.config.from_prefixed_env("SMSBOT", loads=str)
    if app.config.get("DATABASE_URL") is None and os.environ.get("DATABASE_URL"):
        app.config["DATABASE_URL"] = os.environ["DATABASE_URL"]  # Heroku's add-on sets this
    for key, value in (config or {}).items():
        app.config[key.removeprefix("SMSBOT_")] = value
    for name in DEFAULTS:
        app.config[name] = _coerce(name, app.config.get(name))
    try:
        parse_quiet_hours(app.config["QUIET_HOURS"])
    except ValueError as error:
        raise SettingsError(f"SMSBOT_QUIET_HOURS: {error}") from None
    production = app.config["ENV"] == "production"
    if not app.config["SECRET_KEY"]:
        if production:
            raise SettingsError("SMSBOT_SECRET_KEY is required when SMSBOT_ENV=production")
        app.logger.warning("SMSBOT_SECRET_KEY is unset: using the development key")
        app.config["SECRET_KEY"] = DEV_SECRET_KEY
    if not app.config["VALIDATE_SIGNATURES"]:
        if production:
            raise SettingsError("SMSBOT_VALIDATE_SIGNATURES=false is refused in production")
        app.logger.warning("Twilio signature validation is OFF: for local development only")
    elif not app.config["TWILIO_AUTH_TOKEN"]:
        if production:
            raise SettingsError("SMSBOT_TWILIO_AUTH_TOKEN is required to validate webhooks")
        app.logger.warning("SMSBOT_TWILIO_AUTH_TOKEN is unset: every webhook will get 403")


def _open_store(app: Flask) -> Store:
    url = app.config["DATABASE_URL"]
    if url and url.startswith(("postgres://", "postgresql://")):
        raise SettingsError("the PostgreSQL back end is not available yet (issue 5)")
    return open_store(app.config["DATABASE"], app.config["SECRET_KEY"], app.config["BUSY_TIMEOUT"])


def _load_flows(app: Flask) -> FlowSet:
    try:
        flows = load_flows(app.config["FLOWS_DIR"])
    except FlowError as error:
        for problem in error.problems:
            app.logger.error("%s", problem)
        raise
    for flow in flows.flows:
        machine_for(flow)  # build each flow's machine once, at start-up
    return flows


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """Build the app: settings, flows (refusing to start on an error), storage, routes."""
    app = Flask(__name__)
    if not app.logger.handlers or app.logger.level == logging.NOTSET:
        app.logger.setLevel(logging.INFO)
    _settings(app, config)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    if app.config["BEHIND_PROXY"]:
        hops = int(app.config["BEHIND_PROXY"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    app.extensions["smsbot.flows"] = _load_flows(app)
    store = _open_store(app)
    store.migrate()
    app.extensions["smsbot.store"] = store
    _register_routes(app)
    _register_commands(app)
    return app


def _store() -> Store:
    return current_app.extensions["smsbot.store"]


def _flows() -> FlowSet:
    return current_app.extensions["smsbot.flows"]


def receive(store: Store, flows: FlowSet, message: Inbound, now: datetime) -> Processed:
    """Run one inbound message through the engine and storage in one transaction."""
    return store.process(message, lambda contact: handle(message, contact, flows, now), now)


def _twiml(replies: Iterable[str]) -> Response:
    response = MessagingResponse()
    for text in replies:
        response.message(text)
    return Response(str(response), mimetype="application/xml")


def _signed_url() -> str:
    public = current_app.config["PUBLIC_URL"]
    if not public:
        return request.url
    query = request.query_string.decode("latin-1")
    return public.rstrip("/") + request.path + (f"?{query}" if query else "")


def _signature_ok() -> bool:
    """Validate X-Twilio-Signature once, over the public URL and the posted form."""
    if not current_app.config["VALIDATE_SIGNATURES"]:
        return True
    token = current_app.config["TWILIO_AUTH_TOKEN"]
    signature = request.headers.get("X-Twilio-Signature")
    if not token or not signature:
        return False
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    return RequestValidator(token).validate(_signed_url(), request.form, signature, algorithm)


def _text(status: int, message: str) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain")


def _register_routes(app: Flask) -> None:
    @app.post("/sms")
    def sms() -> Response:
        if not _signature_ok():
            return _text(403, "invalid or missing X-Twilio-Signature")
        form = request.form
        for name in REQUIRED_FIELDS:
            if not form.get(name):
                return _text(400, f"missing field: {name}")
        now = datetime.now(UTC)
        # PostgreSQL text can't hold NUL; replace it so both back ends store the same body.
        body = form.get("Body", "").replace("\x00", "\ufffd")
        phone = to_e164(form["From"])
        if phone is None:
            current_app.logger.info("message %s from non-phone sender logged", form["MessageSid"])
            _store().log_unroutable(form["MessageSid"], form["From"], body, now)
            return _twiml(())
        message = Inbound(
            sid=form["MessageSid"],
            phone=phone,
            body=body,
            opt_out_type=form.get("OptOutType", ""),
            signature_verified=bool(current_app.config["VALIDATE_SIGNATURES"]),
        )
        return _twiml(receive(_store(), _flows(), message, now).replies)

    @app.post("/status")
    def status() -> Response:
        if not _signature_ok():
            return _text(403, "invalid or missing X-Twilio-Signature")
        form = request.form
        for name in ("MessageSid", "MessageStatus"):
            if not form.get(name):
                return _text(400, f"missing field: {name}")
        now, code = datetime.now(UTC), form.get("ErrorCode") or None
        _store().record_status(form["MessageSid"], form["MessageStatus"], code, now)
        # Twilio error 21610: the recipient replied STOP to the carrier (SPEC §3).
        if code == str(OPTED_OUT_AT_CARRIER) and (phone := to_e164(form.get("To", ""))):
            carrier_opt_out(_store(), _flows(), phone, form["MessageSid"], now)
        return Response(status=204)

    @app.post("/api/optins")
    def api_optins() -> tuple[dict, int] | Response:
        token = current_app.config["API_TOKEN"]
        if not token:
            return _text(404, "not found")
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {token}".encode()):
            return {"error": "missing or wrong bearer token"}, 401
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return {"error": "expected a JSON object"}, 400
        for name in OPTIN_FIELDS:
            value = data.get(name)
            if name in OPTIN_REQUIRED and not value:
                return {"error": f"{name}: missing"}, 400
            if value is not None and (not isinstance(value, str) or len(value) > 2000):
                return {"error": f"{name}: expected a string of at most 2,000 characters"}, 400
        phone = to_e164(data["phone"], current_app.config["DEFAULT_REGION"])
        if phone is None:
            return {"error": "phone: not a phone number"}, 400
        flow = _flows().flow(data["flow"])
        if flow is None:
            return {"error": f"flow: no flow {data['flow']!r}"}, 400
        now = datetime.now(UTC)
        context = {f"web_{k}" if k == "ip" else k: data.get(k) for k in OPTIN_FIELDS[2:]}
        message = Inbound(None, phone, "", source="web", context=context)
        result = _store().request_web(
            phone, flow.id, lambda c: handle_web_optin(message, c, _flows(), flow, now), now
        )
        return {"status": result}, OPTIN_STATUS[result]

    @app.get("/healthz")
    def healthz() -> tuple[dict, int]:
        if _store().ping():
            return {"status": "ok"}, 200
        return {"status": "unavailable"}, 503

    @app.errorhandler(StoreBusy)
    def busy(error: StoreBusy) -> Response:
        response = _text(503, "busy, try again")
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(Exception)
    def crash(error: Exception) -> Response:
        if isinstance(error, HTTPException):
            return _text(error.code or 500, error.name)
        # The transaction has rolled back; Twilio's retry is safe (dedupe by MessageSid).
        current_app.logger.exception("unhandled error")
        return _text(500, "internal error")


def _parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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


@click.command("simulate")
@click.option("--from", "sender", required=True, help="the texting phone number")
@click.option("--at", "start", help="ISO-8601 starting clock (no offset means UTC)")
@click.argument("texts", nargs=-1, required=True)
def simulate_cli(sender: str, start: str | None, texts: tuple[str, ...]) -> None:
    """Run texts through the real pipeline on a throwaway database; @25h advances the clock."""
    now = _parse_time(start)
    with tempfile.TemporaryDirectory(prefix="smsbot-simulate-") as scratch:
        # A flask.commands entry point with its own app on a scratch database: the
        # configured database is never opened, so a simulation never becomes evidence.
        app = create_app({"DATABASE": os.path.join(scratch, "simulate.db"), "DATABASE_URL": None})
        phone = to_e164(sender, app.config["DEFAULT_REGION"])
        if phone is None:
            raise click.BadParameter(f"not a phone number: {sender!r}", param_hint="--from")
        store, flows = app.extensions["smsbot.store"], app.extensions["smsbot.flows"]
        try:
            for number, text in enumerate(texts, start=1):
                if step := _CLOCK_STEP.fullmatch(text.strip()):
                    now += timedelta(**{_UNITS[step[2]]: int(step[1])})
                    continue
                click.echo(f"> {text}")
                message = Inbound(sid=f"SIM{number:031d}", phone=phone, body=text)
                for reply in receive(store, flows, message, now).replies:
                    click.echo(f"< {reply}")
        finally:
            store.close()


def _redactable_before(now: datetime) -> str:
    """Ledger rows redacted after this time broke the evidence retention."""
    return timestamp(now - timedelta(days=current_app.config["EVIDENCE_RETENTION_DAYS"]))


def _phone_argument(text: str) -> str:
    phone = to_e164(text, current_app.config["DEFAULT_REGION"])
    if phone is None:
        raise click.BadParameter(f"not a phone number: {text!r}", param_hint="PHONE")
    return phone


def _register_commands(app: Flask) -> None:
    ledger_group = AppGroup("ledger", help="The consent ledger.")
    app.cli.add_command(ledger_group)

    @ledger_group.command("verify")
    @click.option("--head", "head_seen", help="an earlier head SEQ:HASH that must still be there")
    def ledger_verify(head_seen: str | None) -> None:
        """Recompute the hash chain; exit 1 naming the first bad event."""
        if head_seen is not None and not _HEAD.fullmatch(head_seen):
            raise click.BadParameter("expected SEQ:HASH, e.g. 42:9f86…", param_hint="--head")
        result = verify(_store().ledger(), _redactable_before(datetime.now(UTC)), head_seen)
        if not result.ok:
            click.echo(f"FAILED: {result.problem}", err=True)
            sys.exit(1)
        click.echo(f"ok {result.events} events")
        click.echo(f"head {result.head}")
        click.echo(f"{result.redacted} redacted")

    subject_group = AppGroup("subject", help="One person's data (GDPR art. 15, 17, 20).")
    app.cli.add_command(subject_group)

    @subject_group.command("export")
    @click.argument("phone")
    def subject_export(phone: str) -> None:
        """Everything held about one number, as JSON."""
        click.echo(
            json.dumps(_store().export(_phone_argument(phone)), indent=2, ensure_ascii=False)
        )

    @subject_group.command("erase")
    @click.argument("phone")
    @click.option("--yes", "confirmed", is_flag=True, help="really erase")
    def subject_erase(phone: str, confirmed: bool) -> None:
        """Erase one number's personal data; keep the pseudonymous ledger and suppress it."""
        number = _phone_argument(phone)
        if not confirmed:
            raise click.UsageError("erasure can't be undone: add --yes to erase " + number)
        event = ConsentEvent("erased", None, "admin", None, {"reason": "data subject request"})
        try:
            removed = _store().erase(number, event, datetime.now(UTC))
        except StoreBusy as busy:
            click.echo(f"not finished: {busy}; run the same command again", err=True)
            sys.exit(1)
        click.echo(f"erased {number}")
        for what, count in removed.items():
            click.echo(f"  {count} {what}")
        click.echo("  kept: the pseudonymous ledger rows; the number key is now suppressed")

    retention_group = AppGroup("retention", help="Data retention (GDPR art. 5(1)(e)).")
    app.cli.add_command(retention_group)

    @retention_group.command("run")
    @click.option("--dry-run", is_flag=True, help="count what would change, change nothing")
    def retention_run(dry_run: bool) -> None:
        """Purge old message bodies, expire stale opt-ins, redact ended evidence."""
        store, config, now = _store(), current_app.config, datetime.now(UTC)
        windows = {flow.id: flow.confirm_within for flow in _flows().flows}
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
        flow = _flows().flow(flow_id)
        if flow is None:
            raise click.BadParameter(f"no flow {flow_id!r}", param_hint="--flow")
        raw, now = Path(csv_file).read_bytes(), datetime.now(UTC)
        lines = raw.decode("utf-8-sig", errors="replace").splitlines()
        rows, problems = read_subscribers(lines, current_app.config["DEFAULT_REGION"], now)
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
            result = _store().import_subscriber(row.phone, flow.id, row.consented_at, event, now)
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
        flow = _flows().flow(flow_id)
        if flow is None:
            raise click.BadParameter(f"no flow {flow_id!r}", param_hint="--flow")
        if not text.strip() or len(text) > MAX_TEXT:
            raise click.BadParameter("must be 1 to 1,600 characters", param_hint="--text")
        now = datetime.now(UTC)
        not_before = max(_parse_time(start), now)
        queued, left_out = _store().queue_broadcast(flow.id, text, not_before, now)
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
        config = current_app.config
        for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"):
            if not config[name]:
                click.echo(f"can't send: SMSBOT_{name} is not set", err=True)
                sys.exit(1)
        client = twilio_client(
            config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"], config["TWILIO_API_URL"]
        )
        public = config["PUBLIC_URL"]
        worker = Worker(
            _store(),
            _flows(),
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
        number, store, now = _phone_argument(phone), _store(), datetime.now(UTC)
        key = subject_key(current_app.config["SECRET_KEY"], number)
        rows, messages = store.ledger_for(key), store.messages(number)
        # The whole chain, read after the rows so it covers every event shown, with the
        # same retention cutoff as `ledger verify`, so the two never disagree.
        chain = verify(store.ledger(), _redactable_before(now))
        packet = build_packet(number, store.contact(number), rows, messages, chain, now, key=key)
        if not chain.ok:
            # The packet is still printed: it is the evidence of the break.
            click.echo(f"warning: ledger chain verification FAILED: {chain.problem}", err=True)
        if output == "html":
            click.echo(render_template("evidence.html", packet=packet))
        else:
            click.echo(json.dumps(packet, indent=2, ensure_ascii=False))

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create or migrate the database."""
        _store().migrate()
        click.echo("database ready")
