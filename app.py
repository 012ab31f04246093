"""smsbot's Flask app: create_app, the HTTP routes and `flask simulate`. The only module
importing flask; the other commands live in commands.py, the settings in settings.py."""

from __future__ import annotations

import hmac
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache

import click
from flask import Flask, Response, current_app, request
from flask.sessions import SessionInterface
from twilio.request_validator import (
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from commands import parse_time, register_commands
from flows.engine import handle, handle_web_optin
from flows.loader import load_flows
from flows.machine import machine_for
from flows.model import FlowError, FlowSet
from flows.outcome import Inbound
from flows.phones import to_e164
from flows.times import parse_duration
from outbox import OPTED_OUT_AT_CARRIER, carrier_opt_out
from settings import DEFAULTS, SettingsError, check
from storage import Processed, Store, StoreBusy, StoreUnavailable, open_store

MAX_BODY = 64 * 1024  # SPEC §3: larger webhook bodies get 413

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


def _settings(app: Flask, config: Mapping[str, object] | None) -> None:
    app.config.update(DEFAULTS)
    # Raw strings (not Flask's default JSON decoding): a token such as "1e51234" must stay
    # text, not become a float; settings.check gives each setting its type.
    app.config.from_prefixed_env("SMSBOT", loads=str)
    if app.config.get("DATABASE_URL") is None and os.environ.get("DATABASE_URL"):
        app.config["DATABASE_URL"] = os.environ["DATABASE_URL"]  # Heroku's add-on sets this
    for key, value in (config or {}).items():
        app.config[key.removeprefix("SMSBOT_")] = value
    check(app.config, app.logger)


def _open_store(app: Flask) -> Store:
    config = app.config
    url = config["DATABASE_URL"]
    if url and not url.startswith(("postgres://", "postgresql://")):
        raise SettingsError("SMSBOT_DATABASE_URL must start with postgres:// or postgresql://")
    store = open_store(config["DATABASE"], config["SECRET_KEY"], config["BUSY_TIMEOUT"], url)
    try:
        store.migrate()
    except StoreUnavailable as error:
        raise SettingsError(str(error)) from None
    return store


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


class _NoSessions(SessionInterface):
    """smsbot keeps no cookie sessions: skip signing one on every webhook."""

    def open_session(self, app: Flask, request: object) -> None:
        return None

    def save_session(self, app: Flask, session: object, response: Response) -> None:
        return None


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """Build the app: settings, flows (refusing to start on an error), storage, routes."""
    app = Flask(__name__)
    app.session_interface = _NoSessions()
    if not app.logger.handlers or app.logger.level == logging.NOTSET:
        app.logger.setLevel(logging.INFO)
    _settings(app, config)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    if app.config["BEHIND_PROXY"]:
        hops = int(app.config["BEHIND_PROXY"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    app.extensions["smsbot.flows"] = _load_flows(app)
    store = _open_store(app)
    app.extensions["smsbot.store"] = store
    _register_routes(app)
    register_commands(app)
    return app


def _store() -> Store:
    return current_app.extensions["smsbot.store"]


def _flows() -> FlowSet:
    return current_app.extensions["smsbot.flows"]


def receive(store: Store, flows: FlowSet, message: Inbound, now: datetime) -> Processed:
    """Run one inbound message through the engine and storage in one transaction."""
    return store.process(message, lambda contact: handle(message, contact, flows, now), now)


@lru_cache(maxsize=1024)
def _render_twiml(replies: tuple[str, ...]) -> str:
    # Replies are the flows' fixed texts: each combination is rendered once per process.
    response = MessagingResponse()
    for text in replies:
        response.message(text)
    return str(response)


def _twiml(replies: Iterable[str]) -> Response:
    return Response(_render_twiml(tuple(replies)), mimetype="application/xml")


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
    validator, url = RequestValidator(token), _signed_url()
    try:
        expected = validator.compute_signature(url, request.form, algorithm)
    except ValueError:  # an algorithm this twilio library doesn't know
        return False
    # One HMAC for the URL as configured; the library's check of both port spellings
    # (Twilio is inconsistent about explicit ports) only when that first one fails.
    return hmac.compare_digest(expected, signature) or validator.validate(
        url, request.form, signature, algorithm
    )


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
        # PostgreSQL text can't hold NUL; replace it so both back ends store the same text.
        sid, sender, body = (
            form.get(name, "").replace("\x00", "\ufffd") for name in ("MessageSid", "From", "Body")
        )
        phone = to_e164(sender)
        if phone is None:
            current_app.logger.info("message %s from non-phone sender logged", sid)
            _store().log_unroutable(sid, sender, body, now)
            return _twiml(())
        message = Inbound(
            sid=sid,
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
    @app.errorhandler(StoreUnavailable)
    def busy(error: Exception) -> Response:
        # Locked past the busy timeout, or the database server gone: nothing was saved,
        # and Twilio's retry will be handled once (dedupe by MessageSid).
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


@click.command("simulate")
@click.option("--from", "sender", required=True, help="the texting phone number")
@click.option("--at", "start", help="ISO-8601 starting clock (no offset means UTC)")
@click.argument("texts", nargs=-1, required=True)
def simulate_cli(sender: str, start: str | None, texts: tuple[str, ...]) -> None:
    """Run texts through the real pipeline on a throwaway database; @25h advances the clock."""
    now = parse_time(start)
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
                step = parse_duration(text.strip()[1:]) if text.strip().startswith("@") else None
                if step is not None:
                    now += step
                    continue
                click.echo(f"> {text}")
                message = Inbound(sid=f"SIM{number:031d}", phone=phone, body=text)
                for reply in receive(store, flows, message, now).replies:
                    click.echo(f"< {reply}")
        finally:
            store.close()
