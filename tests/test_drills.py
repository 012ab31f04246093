"""The fault drills of bench/faults.py at tiny size (seconds each), so they cannot rot; and
proof that their storage checks can fail."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from bench.audit import DrillResult, check_storage
from bench.client import Client, webhooks
from bench.faults import drill_duplicate_sid, drill_held_lock, drill_kill_workers
from bench.server import serve
from bench.workload import BUSINESS
from tests.conftest import Backend


def assert_passed(result: DrillResult) -> None:
    assert result.failed == 0, result.report()
    assert result.passed, result.report()


def test_killed_workers_lose_no_answered_message(backend: Backend, tmp_path: Path) -> None:
    # 60 webhooks over 2 s: one worker SIGKILLed at 1 s (and at 2 s if the burst runs on).
    result = drill_kill_workers(60, seconds=2.0, database_url=backend.url, scratch=tmp_path)
    assert_passed(result)
    assert result.requests == 60


def test_a_held_write_lock_means_waits_and_503s_never_500s(tmp_path: Path) -> None:
    # The lock outlasts the 1 s busy timeout: some requests get 503, later ones wait.
    result = drill_held_lock(60, seconds=3.0, hold=2.0, busy_timeout=1.0, scratch=tmp_path)
    assert_passed(result)
    assert result.busy > 0 and result.retried_ok == result.busy


def test_a_worker_replaced_while_the_lock_is_held_boots(tmp_path: Path) -> None:
    # Regression: a worker booting while another process held SQLite's write lock past the
    # busy timeout got StoreBusy from create_app's migrate(), and gunicorn's arbiter halted
    # the whole server ("Worker failed to boot").
    # Killed as the 3 s hold starts; its replacement has 2.5 s to boot before the 0.5 s
    # busy timeout can no longer run out inside the hold.
    result = drill_held_lock(
        40, seconds=4.0, hold=3.0, busy_timeout=0.5, kill_worker=True, scratch=tmp_path
    )
    assert_passed(result)


def test_a_messagesid_posted_20_times_at_once_has_one_effect(
    backend: Backend, tmp_path: Path
) -> None:
    result = drill_duplicate_sid(60, copies=20, database_url=backend.url, scratch=tmp_path)
    assert_passed(result)
    assert (result.requests, result.ok) == (60, 60)


def test_the_storage_checks_catch_half_written_state(tmp_path: Path) -> None:
    # The checks must be able to fail. A conversation is answered, then rows are removed as
    # a crash between writes would leave them; `ledger verify` alone can't see either (a
    # chain cut at its end still verifies), the replay and the answered-sid checks do.
    forms = [
        {"MessageSid": f"SMcheck{n:027d}", "From": phone, "To": BUSINESS, "Body": body}
        for n, (phone, body) in enumerate(
            [("+12025550101", "JOIN"), ("+12025550101", "YES"), ("+12025550102", "JOIN")]
        )
    ]
    with serve(tmp_path) as server:
        client = Client(server.port)
        answers = [[client.post(hook)] for hook in webhooks(forms, server.url)]
    assert [tries[0].status for tries in answers] == [200, 200, 200]
    with closing(sqlite3.connect(server.env["SMSBOT_DATABASE"])) as conn, conn:
        conn.execute("DELETE FROM ledger WHERE seq = (SELECT max(seq) FROM ledger)")
        conn.execute("DELETE FROM messages WHERE sid = ?", (forms[1]["MessageSid"],))
    result = DrillResult("tampered", "")
    check_storage(result, server, forms, answers)
    failing = {check.name.split(":")[0] for check in result.checks if not check.ok}
    assert failing == {
        "every 200-answered MessageSid is stored once as an inbound message",
        "every 200 answer carries exactly the stored replies of its MessageSid",
        "no half-written state",
        "no ledger event without its inbound message",
    }, result.report()
