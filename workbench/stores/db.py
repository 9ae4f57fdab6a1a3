"""The one SQLite database of a runs directory, ``runs.sqlite``, shared by the run and sweep stores.

:class:`Database` creates the file and its schema on the first write (never on a read), refuses a
schema newer than this workbench's, reads through a read-only connection and writes in a
``BEGIN IMMEDIATE`` transaction. Every operation opens its own connection (WAL journal, busy
timeout), so threads and processes can record side by side. :func:`encode` and :func:`decode` turn
the JSON columns into text and back. A file that is not a database (garbage, cut short) and a full
disk are one-line :class:`~workbench.errors.WorkbenchError` s naming the file and what to do.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

from ..errors import WorkbenchError, free_space

__all__ = ["Database", "DATABASE_NAME", "SCHEMA_VERSION", "connect", "transaction", "encode", "decode",
           "check_version", "store_error"]

DATABASE_NAME = "runs.sqlite"
BUSY_TIMEOUT_SECONDS = 30.0

# MIGRATIONS[v] takes the schema from user_version v to v + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # Runs (workbench/stores/runs.py): one row per pipeline run.
    (
        """
        CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
            created_at TEXT NOT NULL,
            finished_at TEXT,
            spec TEXT NOT NULL,
            seeds TEXT NOT NULL,
            versions TEXT NOT NULL,
            cluster TEXT NOT NULL,
            timings TEXT NOT NULL,
            metrics TEXT NOT NULL,
            data TEXT NOT NULL,
            history TEXT NOT NULL,
            error TEXT,
            artifacts TEXT NOT NULL,
            CHECK ((status = 'running') = (finished_at IS NULL)),
            CHECK ((status = 'failed') = (error IS NOT NULL))
        )
        """,
        "CREATE INDEX IF NOT EXISTS runs_by_created_at ON runs (created_at)",
        "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_at)",
    ),
    # Sweeps (workbench/stores/sweeps.py): one row per sweep, one per recorded cell (never two: the
    # UNIQUE key), and one per attempt at a cell, with the fault that ended it.
    (
        """
        CREATE TABLE IF NOT EXISTS sweeps (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            spec TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            planned INTEGER NOT NULL
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS sweep_cells (
            sweep_id TEXT NOT NULL REFERENCES sweeps (id),
            cell_key TEXT NOT NULL,
            axes TEXT NOT NULL,
            trial INTEGER NOT NULL,
            seed INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
            run_id TEXT,
            attempts INTEGER NOT NULL,
            workers INTEGER,
            threads INTEGER,
            rows INTEGER,
            seconds REAL NOT NULL,
            timings TEXT NOT NULL,
            metrics TEXT NOT NULL,
            versions TEXT NOT NULL,
            faults TEXT NOT NULL,
            error TEXT,
            finished_at TEXT NOT NULL,
            UNIQUE (sweep_id, cell_key)
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS sweep_attempts (
            sweep_id TEXT NOT NULL REFERENCES sweeps (id),
            cell_key TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            run_id TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned')),
            fault TEXT,
            PRIMARY KEY (sweep_id, cell_key, attempt)
        )
        """,
    ),
    # The hostnames of the nodes a cell's workers ran on (the nodes axis; issue 12).
    ("ALTER TABLE sweep_cells ADD COLUMN hosts TEXT NOT NULL DEFAULT '[]'",),
    # The process that records a run (pid, host, start time): a run it left `running` when it was
    # killed is found and marked abandoned by the next command (issue 15; stores/runs.py).
    ("ALTER TABLE runs ADD COLUMN process TEXT NOT NULL DEFAULT '{}'",),
)
SCHEMA_VERSION = len(MIGRATIONS)

_SCHEMA_LOCK = threading.Lock()


def connect(target: str, *, uri: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) whose rows read by column name."""
    conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, uri=uri)
    conn.row_factory = sqlite3.Row
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` (the write lock up front, so two writers never deadlock), then commit or roll back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def check_version(version: int, shown: str | PurePath) -> None:
    """Refuse a database written by a newer workbench."""
    if version > SCHEMA_VERSION:
        raise WorkbenchError(
            f"{shown} has run-store schema {version}, newer than this workbench's {SCHEMA_VERSION}",
            "upgrade workbench to read or write it",
        )


def store_error(exc: sqlite3.Error, shown: str | PurePath) -> WorkbenchError | None:
    """The one line for a database error the user can act on (a corrupt file, a full disk), else None."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        return WorkbenchError(f"{shown} is not a readable run store ({exc})",
                              f"move it aside (e.g. mv {shown} {shown}.broken) to start a new store there, "
                              "or give another --runs-dir")
    if name == "SQLITE_FULL":
        return WorkbenchError(f"the disk holding {shown} is full ({free_space(Path(shown).parent)} free)",
                              "free space there, or record runs elsewhere with --runs-dir")
    return None


@contextmanager
def _known_errors(shown: str | PurePath) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as exc:
        known = store_error(exc, shown)
        if known is None:
            raise
        raise known from None


class Database:
    """``runs.sqlite`` in ``directory``; ``shown`` is how error messages name it."""

    def __init__(self, directory: str | PurePath, shown: str | PurePath | None = None):
        self.directory = Path(directory)
        self.path = self.directory / DATABASE_NAME
        self.shown = shown if shown is not None else self.path
        self._ready = False

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"

    def fetch(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        """Rows of a query, read-only; no rows (and no file created) if nothing was written yet."""
        if not self.path.is_file():
            return []
        conn = connect(f"file:{quote(str(self.path))}?mode=ro", uri=True)
        try:
            with _known_errors(self.shown):
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    return []
                check_version(version, self.shown)
                return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one write transaction (the file and schema are created first if needed)."""
        self.ensure_schema()
        conn = connect(str(self.path))
        try:
            with _known_errors(self.shown):
                conn.execute("PRAGMA synchronous = NORMAL")
                with transaction(conn):
                    yield conn
        finally:
            conn.close()

    def ensure_schema(self) -> None:
        """Create the directory and the file, and migrate the schema to :data:`SCHEMA_VERSION`."""
        if self._ready:
            return
        with _SCHEMA_LOCK:
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = connect(str(self.path))
            try:
                with _known_errors(self.shown):
                    conn.execute("PRAGMA journal_mode = WAL")
                    with transaction(conn):
                        version = conn.execute("PRAGMA user_version").fetchone()[0]
                        check_version(version, self.shown)
                        for statement in (s for step in MIGRATIONS[version:] for s in step):
                            conn.execute(statement)
                        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            finally:
                conn.close()
            self._ready = True


# ---------------------------------------------------------------- JSON columns


def encode(value: Any) -> str:
    """``value`` as JSON text: NaN and infinities become null; numpy values and paths plain values."""
    return json.dumps(_finite(value), default=_json_default, allow_nan=False)


def decode(text: str | None) -> Any:
    """A JSON column back to its value."""
    return None if text is None else json.loads(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    raise TypeError(f"a {type(value).__name__} cannot be recorded as JSON")


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None and numpy or path dict keys as plain keys."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_plain_key(key): _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _plain_key(key: Any) -> Any:
    if isinstance(key, PurePath):
        return str(key)
    return key.tolist() if hasattr(key, "tolist") else key
