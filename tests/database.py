"""Raw SQL on a test's database, whichever back end it is, going around the app's store as
an operator's SQL shell would: to tamper with the ledger, age timestamps, count rows or
read columns the store doesn't return. Statements use `?` placeholders on both back ends
(translated to psycopg's `%s`, as storage/postgres.py does) and commit at once.

`settings` is any mapping with the app's DATABASE and DATABASE_URL keys: the `settings`
fixture, or a `Backend`'s config."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

import psycopg

# The app's tables, in the order a dump lists them.
TABLES = ("contacts", "subscriptions", "profile", "messages", "ledger", "suppressions", "outbox")

# One connection per PostgreSQL test schema, reused by every statement of the test (the
# property tests run thousands) and closed by the `backend` fixture with close(url).
_postgres: dict[str, psycopg.Connection] = {}


def _connection(url: str) -> psycopg.Connection:
    conn = _postgres.get(url)
    if conn is None or conn.closed or conn.broken:
        conn = _postgres[url] = psycopg.connect(url, autocommit=True, connect_timeout=5)
    return conn


def close(url: str) -> None:
    """Close the connection kept for `url`, if any."""
    conn = _postgres.pop(url, None)
    if conn is not None:
        conn.close()


def _run(settings: Mapping, sql: str, params: tuple) -> tuple[list[tuple], int]:
    url = settings.get("DATABASE_URL")
    if url:
        # No parameters: psycopg then reads a literal % as itself, not as a placeholder.
        cursor = _connection(url).execute(sql.replace("?", "%s"), params or None)
        return (cursor.fetchall() if cursor.description else []), cursor.rowcount
    with closing(sqlite3.connect(settings["DATABASE"])) as conn, conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall(), cursor.rowcount


def execute(settings: Mapping, sql: str, *params: object) -> int:
    """Run one statement and commit it; returns the number of rows it changed."""
    return _run(settings, sql, params)[1]


def rows(settings: Mapping, sql: str, *params: object) -> list[tuple]:
    """Every row a query returns."""
    return _run(settings, sql, params)[0]


def scalar(settings: Mapping, sql: str, *params: object) -> object:
    """The first column of the first row a query returns (None when there is none)."""
    found = rows(settings, sql, *params)
    return found[0][0] if found else None


def column(settings: Mapping, sql: str, *params: object) -> list:
    """The first column of every row a query returns."""
    return [row[0] for row in rows(settings, sql, *params)]


def count(settings: Mapping, table: str, where: str = "TRUE", *params: object) -> int:
    """How many rows of `table` match `where`."""
    return scalar(settings, f"SELECT count(*) FROM {table} WHERE {where}", *params)


def dump(settings: Mapping) -> dict[str, list[tuple]]:
    """Every row of every table, in a stable order: compare two to see that nothing changed."""
    return {table: sorted(rows(settings, f"SELECT * FROM {table}"), key=repr) for table in TABLES}


def tables_holding(settings: Mapping, text: str) -> list[str]:
    """The tables with a row holding `text` in any column."""
    return [
        table
        for table, table_rows in dump(settings).items()
        if any(text in str(value) for row in table_rows for value in row)
    ]


def files_holding(settings: Mapping, text: str) -> list[str]:
    """The SQLite database files (main and -wal) whose raw bytes hold `text`: where a
    deleted row lingers in free pages or old WAL frames unless it was overwritten."""
    assert not settings.get("DATABASE_URL"), "PostgreSQL's files belong to the server"
    main = Path(settings["DATABASE"])
    files = [path for path in (main, main.with_name(main.name + "-wal")) if path.exists()]
    return [path.name for path in files if text.encode() in path.read_bytes()]


def places_holding(settings: Mapping, text: str) -> list[str]:
    """Where `text` can still be read: any table and, on SQLite, the files' bytes. (On
    PostgreSQL erasure VACUUMs the tables, so dead rows don't linger in their files.)"""
    if settings.get("DATABASE_URL"):
        return tables_holding(settings, text)
    return tables_holding(settings, text) + files_holding(settings, text)
