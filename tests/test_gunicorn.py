"""The app as a Procfile host runs it: gunicorn from the `web:` line, and the `flask` CLI."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flows.loader import load_flows
from tests import database
from tests.conftest import PHONE, ROOT, SHIPPED_FLOWS, Backend
from tests.live import BOOT_LIMIT, Gunicorn, smsbot_env

FLOWS = load_flows(SHIPPED_FLOWS)
VIP = FLOWS.flow("vip")
PROMPT = (
    "Acme Broken Deals: reply YES for up to 4 msgs/month. Msg & data rates may apply."
    " Reply HELP for help, STOP to cancel."
)
BROKEN_FLOW = f"""\
flow: broken
keywords: [BROKEN]
program: Acme Broken Deals
frequncy: 4/month
replies:
  prompt: "{PROMPT}"
  welcome: "Welcome to Acme Broken Deals! Reply HELP for help, STOP to cancel."
"""
BROKEN_LINE = "broken.yaml: frequncy: unknown key (expected one of: "


@pytest.fixture
def broken_flows(tmp_path: Path) -> Path:
    """The shipped flows plus one file with an unknown key (a typo of `frequency`)."""
    folder = tmp_path / "flows"
    shutil.copytree(SHIPPED_FLOWS, folder)
    (folder / "broken.yaml").write_text(BROKEN_FLOW)
    return folder


def flask(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    """Run `flask ARGS` from the repo root (FLASK_APP comes from .flaskenv), as an operator does."""
    return subprocess.run(
        ["flask", *args],
        cwd=ROOT,
        env=smsbot_env(tmp_path, **settings),
        capture_output=True,
        text=True,
        timeout=BOOT_LIMIT,
    )


def tables(backend: Backend) -> set[str]:
    """The tables the back end's database holds (none: the database isn't there)."""
    if backend.url:  # the test's own schema, where every connection of the test lands
        query = "SELECT table_name FROM information_schema.tables"
        return set(
            database.column(backend.config, query + " WHERE table_schema = current_schema()")
        )
    if not Path(backend.database).exists():
        return set()
    return set(database.column(backend.config, "SELECT name FROM sqlite_master"))


def test_gunicorn_serves_a_signed_keyword_over_http(tmp_path: Path, backend: Backend) -> None:
    with Gunicorn(tmp_path, **backend.env) as server:
        response = server.text("JOIN", PHONE, "SM" + "1" * 32)
        assert response.status == 200, server.output()
        assert response.content_type == "application/xml"
        root = ET.fromstring(response.body)
        assert root.tag == "Response"
        assert [m.text for m in root.iter("Message")] == [VIP.replies.prompt]
    assert database.count(backend.config, "ledger") == 1


def test_gunicorn_exits_instead_of_respawning_on_a_broken_flow(
    tmp_path: Path, broken_flows: Path
) -> None:
    server = Gunicorn(tmp_path, FLOWS_DIR=str(broken_flows)).start()
    status = server.wait_for_exit()
    output = server.output()
    assert status is not None, f"gunicorn still running after {BOOT_LIMIT}s:\n{output}"
    assert status != 0
    assert BROKEN_LINE in output


def test_flows_check_passes_the_shipped_flows(tmp_path: Path) -> None:
    result = flask(tmp_path, "flows", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "vip.yaml: replies.prompt: 1 segment (GSM-7, 117 chars)" in result.stdout
    assert result.stdout.splitlines()[-1] == "2 flows, 0 errors, 0 warnings"


def test_flows_check_fails_on_the_configured_broken_flows(
    tmp_path: Path, broken_flows: Path
) -> None:
    # The configured flows stop create_app; the check must still run and name the problem.
    result = flask(tmp_path, "flows", "check", FLOWS_DIR=str(broken_flows))
    assert result.returncode == 1, result.stdout + result.stderr
    assert any(line.startswith(BROKEN_LINE) for line in result.stdout.splitlines())
    assert result.stdout.splitlines()[-1] == "3 flows, 1 error, 0 warnings"


def test_flows_check_takes_a_folder_argument(tmp_path: Path, broken_flows: Path) -> None:
    result = flask(tmp_path, "flows", "check", str(broken_flows))
    assert result.returncode == 1
    assert BROKEN_LINE in result.stdout


def test_simulate_prints_the_conversation(tmp_path: Path) -> None:
    result = flask(tmp_path, "simulate", "--from", PHONE, "JOIN", "YES", "STOP")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "> JOIN",
        f"< {VIP.replies.prompt}",
        "> YES",
        f"< {VIP.replies.welcome}",
        f"< {VIP.questions[0].ask}",
        "> STOP",
        f"< {FLOWS.gateway.stop}",
    ]
    assert result.stdout.splitlines()[1].startswith("< Acme VIP Deals: reply YES")


def test_simulate_never_touches_the_configured_database(tmp_path: Path, backend: Backend) -> None:
    result = flask(
        tmp_path, "simulate", "--from", "(555) 555-0100", "JOIN", "YES", "STOP", **backend.env
    )
    assert result.returncode == 0, result.stderr
    # Best: the configured database is never opened. If start-up migrated it, it stays empty.
    if "messages" in tables(backend):
        for table in ("messages", "contacts", "subscriptions", "ledger"):
            assert database.count(backend.config, table) == 0, table
    # ... and its throwaway database is gone afterwards.
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    "step, reply",
    [
        pytest.param("@25h", VIP.replies.expired, id="hours-past-the-window"),
        pytest.param("@1439m", VIP.replies.welcome, id="minutes-inside-the-window"),
        pytest.param("@2d", VIP.replies.expired, id="days-past-the-window"),
    ],
)
def test_simulate_clock_steps(tmp_path: Path, step: str, reply: str) -> None:
    result = flask(
        tmp_path, "simulate", "--from", PHONE, "--at", "2026-01-01T10:00:00", "JOIN", step, "YES"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"> {step}" not in lines  # a clock step sends nothing
    assert lines[lines.index("> YES") + 1] == f"< {reply}"


def test_init_db_creates_the_tables(tmp_path: Path, backend: Backend) -> None:
    fresh = Backend(backend.name, str(tmp_path / "fresh" / "smsbot.db"), backend.url)
    assert tables(fresh) == set()
    result = flask(tmp_path, "init-db", **fresh.env)
    assert result.returncode == 0, result.stderr
    assert "database ready" in result.stdout
    assert {"contacts", "subscriptions", "profile", "messages", "ledger", "outbox"} <= tables(fresh)
    assert flask(tmp_path, "init-db", **fresh.env).returncode == 0  # idempotent
