"""The SQLite back end: sqlite-utils for the schema, WAL mode, one writer at a time."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from sqlite_utils import Database

from storage import StoreBusy
from storage.migrations import migrations
from storage.sql import SQLStore

CHECKPOINT_BYTES = 40 * 1024 * 1024


class SQLiteStore(SQLStore):
    """A SQLite file in WAL mode: the zero-setup default."""

    def __init__(self, path: str, secret_key: str, busy_timeout: float = 5.0):
        super().__init__(secret_key)
        self.path = path
        self.busy_timeout = busy_timeout

    def _connect(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # Checkpoints run after the writer's turn, not inside COMMIT (see _checkpoint); the
        # WAL file is truncated when it restarts, so its size tells when one is due.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("PRAGMA journal_size_limit=0")
        conn.execute("PRAGMA foreign_keys=ON")
        # GDPR art. 17: erased numbers must not linger in free pages of the file.
        conn.execute("PRAGMA secure_delete=ON")
        # Each connection queues for the write lock through its own open file (see _turn);
        # one inherited across a fork is closed, or it would outlive its process's lock.
        if (inherited := getattr(self._local, "lock", None)) is not None:
            os.close(inherited)
        self._local.lock = os.open(self.path + "-writer", os.O_RDWR | os.O_CREAT, 0o600)
        return conn

    @contextmanager
    def _write(self, phone: str | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction. BEGIN IMMEDIATE takes SQLite's single write lock up front,
        so the reads inside see the state the writes change: every number is serialised,
        and the ledger chain with it."""
        conn = self._conn()
        with self._turn():
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                raise StoreBusy(str(error)) from error
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        self._checkpoint(conn)

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL back into the database once it holds ~40 MB of pages.

        SQLite's automatic checkpoint runs inside COMMIT, so the next writer would wait
        tens of milliseconds for it; this one runs after the turn is passed on, and PASSIVE
        never waits for, or blocks, other writers. 40 MB rather than SQLite's 4 MB: pages
        written by many messages (index and ledger tails) are copied back once, not once
        per 4 MB."""
        try:
            size = os.stat(self.path + "-wal").st_size
        except FileNotFoundError:
            return
        # The message is committed, so its answer must not fail here: a checkpoint that
        # can't run now (another is running) is left to the next writer.
        if size > CHECKPOINT_BYTES:
            with suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """Wait for this connection's turn to write, queued on a lock file by the database.

        SQLite's busy handler sleeps 1, 2, 5 ... ms between tries, so a writer that finds
        the lock taken idles long after a 0.2 ms transaction has ended. This store's writers
        queue on flock(2) first, trying again every 0.1 ms for up to the busy timeout;
        SQLite's own lock still guards the data, from other programs too. The kernel
        releases the lock of a process that dies."""
        lock, deadline = self._local.lock, None
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                deadline = deadline or time.monotonic() + self.busy_timeout
                if time.monotonic() > deadline:
                    raise StoreBusy("another writer held the database too long") from None
                time.sleep(0.0001)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

    def migrate(self) -> None:
        """Apply pending migrations, holding the write lock so two processes can't race."""
        # Look first, without the lock: a worker (re)booting while another process holds
        # the write lock (a long import, a sqlite3 shell) must not fail to start when
        # there is nothing to migrate; gunicorn halts the whole server on a failed boot.
        if not migrations.pending(Database(self._conn())):
            return
        with self._write() as conn:
            migrations.apply(Database(conn))

    def _after_erase(self) -> None:
        # Old copies of the deleted pages live on in the WAL until a checkpoint; one that
        # another reader blocks must fail loudly, not report an erasure that isn't done.
        busy, _, _ = self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise StoreBusy("another connection is reading: the WAL could not be cleared")

    def close(self) -> None:
        """Close this thread's connection and its lock file."""
        super().close()
        if (lock := getattr(self._local, "lock", None)) is not None:
            os.close(lock)
            self._local.lock = None

    def ping(self) -> bool:
        """True when the database answers a query."""
        try:
            return self._conn().execute("SELECT 1").fetchone() == (1,)
        except sqlite3.Error:
            return False
