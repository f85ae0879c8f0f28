"""The workspace database: one SQLite file whose tables belong to the stages that keep them.

The catalog's tables (references, brands, their assets) are versioned by its migrations; the portal's and
the scoring ledger's are each stated by their owner as idempotent DDL (`CREATE ... IF NOT EXISTS`) and
created on first use through `ensure_schema`, so no stage holds another one's schema.

Concurrency model: the database runs in WAL mode (readers never block the writer), every connection waits on
a locked database for `busy_timeout_s` instead of failing at once, and every write runs in `BEGIN IMMEDIATE`
so that a check-then-insert (dedupe, then add) is atomic across threads *and* processes. Each thread gets its
own connection (a `threading.local`), so threads of a web server never share a cursor; a process that was
forked with an open database opens fresh connections instead of reusing its parent's.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from brandsentry.errors import BrandsentryError

_CREATED = re.compile(r"CREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX)\s+IF\s+NOT\s+EXISTS\s+\"?(\w+)\"?", re.I)


class DatabaseError(BrandsentryError, ValueError):
    """A use of the database that its state forbids (closed, schema newer than this code)."""


def split_statements(script: str) -> Iterator[str]:
    """The statements of a SQL script one by one (so a migration can run inside our own transaction)."""
    statement = ""
    for char in script:
        statement += char
        if char == ";" and sqlite3.complete_statement(statement):
            yield statement.strip()
            statement = ""
    if statement.strip():  # a trailing comment, or an unterminated statement that SQLite will refuse
        yield statement.strip()


class Database:
    """Per-thread connections to one SQLite file and its write transactions; see the module docstring."""

    error: type[DatabaseError] = DatabaseError  # what a subclass raises for a closed database

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_s = busy_timeout_s
        self._registry_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._inherited: list[sqlite3.Connection] = []  # a forked child's copies of its parent's connections
        self._local = threading.local()
        self._pid = os.getpid()
        self._closed = False
        self._schemas: set[str] = set()  # owners' DDL already checked through this object

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection; the database cannot be used afterwards."""
        with self._registry_lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit): for reads, and for tables that other stages own.

        Writes go through `write()`, never straight through this connection.
        """
        if self._closed:
            raise self.error(f"catalog {self.path} is closed")
        if os.getpid() != self._pid:  # forked: never use (nor close) the parent's connections here
            with self._registry_lock:
                self._inherited.extend(self._connections)
                self._pid, self._connections, self._local = os.getpid(), [], threading.local()
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA foreign_keys = ON")
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode = WAL")
            self._local.connection = connection
            self._local.depth = 0
            with self._registry_lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (`BEGIN IMMEDIATE`); nested uses join the outermost one.

        Everything read inside sees a state no other writer can change before the commit, which is what
        makes "check for a duplicate, then insert" atomic.
        """
        connection = self.connection()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield connection
            finally:
                self._local.depth -= 1
            return
        connection.execute("BEGIN IMMEDIATE")
        self._local.depth = 1
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                connection.execute("ROLLBACK")
            raise
        finally:
            self._local.depth = 0

    def ensure_schema(self, script: str) -> None:
        """Create the tables and indexes of an owner's `CREATE ... IF NOT EXISTS` script where missing.

        A read finds whether everything the script names exists; only then does it run, in one write
        transaction (a concurrent creator makes it a no-op). Checked once per script and database object.
        """
        if script in self._schemas:
            return
        names = set(_CREATED.findall(script))
        if not names:
            raise ValueError("ensure_schema takes CREATE TABLE/INDEX IF NOT EXISTS statements only")
        held = {
            row[0]
            for row in self.connection().execute(
                "SELECT name FROM sqlite_master WHERE name IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(names)),),
            )
        }
        if names - held:
            with self.write() as connection:
                for statement in split_statements(script):
                    connection.execute(statement)
        self._schemas.add(script)
