"""The baseline for bench/inbound.py: only the unavoidable work of an inbound webhook.

Parse the form, verify the Twilio signature once, insert one row in WAL-mode SQLite in a
transaction, answer constant TwiML. Served by gunicorn exactly like smsbot:
    BASELINE_DATABASE=... BASELINE_TOKEN=... BASELINE_PUBLIC_URL=... \\
    gunicorn 'bench.baseline:create_app()' --worker-class sync --workers 2
"""

from __future__ import annotations

import os
import sqlite3

from flask import Flask, Response, request
from twilio.request_validator import RequestValidator

TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Message>ok</Message></Response>'


def create_app() -> Flask:
    """A Flask app with one route, POST /sms."""
    app = Flask(__name__)
    database, public = os.environ["BASELINE_DATABASE"], os.environ["BASELINE_PUBLIC_URL"]
    validator = RequestValidator(os.environ["BASELINE_TOKEN"])
    connections: dict[int, sqlite3.Connection] = {}

    def connection() -> sqlite3.Connection:
        pid = os.getpid()
        if pid not in connections:
            conn = sqlite3.connect(database, timeout=5, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS messages"
                " (sid TEXT PRIMARY KEY, phone TEXT, body TEXT, created_at TEXT)"
            )
            connections[pid] = conn
        return connections[pid]

    @app.post("/sms")
    def sms() -> Response:
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validator.validate(public + "/sms", request.form, signature):
            return Response("forbidden", status=403)
        conn = connection()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, datetime('now'))",
            (request.form["MessageSid"], request.form["From"], request.form.get("Body", "")),
        )
        conn.execute("COMMIT")
        return Response(TWIML, mimetype="application/xml")

    return app
