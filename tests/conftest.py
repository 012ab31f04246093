"""Shared fixtures: an app on each storage back end (a temporary SQLite file, a fresh
PostgreSQL schema), and a signed-webhook sender."""

from __future__ import annotations

import itertools
import os
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from twilio.request_validator import RequestValidator

from app import create_app
from storage.postgres import describe
from tests import database

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_FLOWS = ROOT / "flows" / "definitions"
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
PUBLIC_URL = "https://smsbot.example"
BUSINESS_NUMBER = "+15555550199"
PHONE = "+15555550100"
# The PostgreSQL server the `postgres` runs use; each test gets its own schema in it.
POSTGRES_URL = (
    os.environ.get("SMSBOT_TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update",
        action="store_true",
        help="rewrite the expected replies of tests/transcripts/*.txt from the engine",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): about SQLite itself; the postgres run is skipped with the reason",
    )


@dataclass(frozen=True)
class Backend:
    """One storage back end for one test: `sqlite` (a file) or `postgres` (a schema)."""

    name: str
    database: str  # the SQLite file (unused, but set, on postgres)
    url: str | None  # the PostgreSQL URL, landing every connection in the test's schema

    @property
    def config(self) -> dict[str, object]:
        """The app settings that select this back end."""
        return {"DATABASE": self.database, "DATABASE_URL": self.url}

    @property
    def env(self) -> dict[str, str]:
        """The same as SMSBOT_* settings for a subprocess (see tests/live.py)."""
        return {"DATABASE": self.database, **({"DATABASE_URL": self.url} if self.url else {})}


def in_ci() -> bool:
    """CI (.ci/run) sets CI=true: there the PostgreSQL tests must run, not be skipped."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def postgres_problem() -> str:
    """Why the test PostgreSQL server can't be used ("" when it can); asked once a session."""
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        # libpq may quote a malformed URL whole: name it without its password.
        return " ".join(str(error).split()).replace(POSTGRES_URL, describe(POSTGRES_URL))
    return ""


@contextmanager
def fresh_schema(base_url: str) -> Iterator[str]:
    """A new, empty schema; yields a URL whose connections all land in it (search_path),
    tagged with its name (application_name). Dropped afterwards with everything in it."""
    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    joiner = "&" if "?" in base_url else "?"
    url = f"{base_url}{joiner}options=-csearch_path%3D{name}&application_name={name}"
    try:
        yield url
    finally:
        database.close(url)
        with psycopg.connect(base_url, autocommit=True) as admin:
            # A connection the test leaked (a thread's, a killed process's) must not keep
            # locks that would make the DROP wait.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each storage test runs on both back ends. PostgreSQL is required in CI; elsewhere,
    without a server, its runs are skipped saying why."""
    sqlite_file = str(tmp_path / "smsbot.db")
    if request.param == "sqlite":
        yield Backend("sqlite", sqlite_file, None)
        return
    marker = request.node.get_closest_marker("sqlite_only")
    if marker is not None:
        pytest.skip(f"SQLite-specific: {marker.args[0]}")
    problem = request.getfixturevalue("postgres_problem")
    if problem:
        reason = f"PostgreSQL not reachable at {describe(POSTGRES_URL)}: {problem}"
        if in_ci():
            pytest.fail(f"{reason} (CI is set: these tests are required)", pytrace=False)
        pytest.skip(reason)
    with fresh_schema(POSTGRES_URL) as url:
        yield Backend("postgres", sqlite_file, url)


@pytest.fixture
def settings(backend: Backend) -> dict[str, object]:
    """The test configuration; a test may change it before asking for `app`."""
    return {
        **backend.config,
        "FLOWS_DIR": str(SHIPPED_FLOWS),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "PUBLIC_URL": PUBLIC_URL,
        "SECRET_KEY": "test-secret-key",
    }


@pytest.fixture
def app(settings: dict[str, object]):
    app = create_app(settings)
    yield app
    app.extensions["smsbot.store"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def store(app):
    return app.extensions["smsbot.store"]


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    """The X-Twilio-Signature Twilio would send for this URL and form."""
    return RequestValidator(token).compute_signature(url, params)


def replies(response) -> list[str]:
    """The <Message> texts of a TwiML response."""
    root = ET.fromstring(response.data)
    assert root.tag == "Response"
    return [message.text or "" for message in root.iter("Message")]


class Twilio:
    """Sends webhooks the way Twilio does: form-encoded, signed with the auth token."""

    def __init__(self, client):
        self.client = client
        self._sids = itertools.count(1)

    def next_sid(self) -> str:
        return f"SM{next(self._sids):032x}"

    def post(self, path: str, params: dict[str, str], signature: str | None = "sign"):
        headers = {}
        if signature == "sign":
            headers["X-Twilio-Signature"] = sign(PUBLIC_URL + path, params)
        elif signature is not None:
            headers["X-Twilio-Signature"] = signature
        return self.client.post(path, data=params, headers=headers)

    def text(self, body: str, phone: str = PHONE, sid: str | None = None, **extra: str):
        """Text `body` from `phone` to the business number; returns the response."""
        params = {
            "MessageSid": sid or self.next_sid(),
            "AccountSid": "AC" + "0" * 32,
            "From": phone,
            "To": BUSINESS_NUMBER,
            "Body": body,
            "NumMedia": "0",
            **extra,
        }
        return self.post("/sms", params)

    def say(self, body: str, phone: str = PHONE, **extra: str) -> list[str]:
        """Text `body` and return the reply texts (asserting a 200)."""
        response = self.text(body, phone, **extra)
        assert response.status_code == 200, response.data
        return replies(response)


@pytest.fixture
def twilio(client) -> Twilio:
    return Twilio(client)
