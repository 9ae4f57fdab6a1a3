"""The run store: every pipeline run recorded in one SQLite file, ``runs.sqlite``, under a runs
directory that also holds one directory of artifacts per run. A run is inserted as ``running`` by
:meth:`RunStore.start`; its :class:`Run` handle writes timings, data counts, history and artifacts
through as they happen and ends it as ``succeeded`` or ``failed``. The database itself (schema,
connections, transactions, JSON columns) is :mod:`workbench.stores.db`, shared with the sweep store.

A failed run keeps no artifacts (no model file of a run that did not finish). A run stopped by
Ctrl-C or SIGTERM fails with an error that starts with ``interrupted``. A run records the process
that runs it (pid, host, start time); one left ``running`` by a process that was killed (SIGKILL, a
crash) is marked failed, its error starting with ``abandoned``, by the next command on the same host
that reads or writes the store (:meth:`RunStore.abandon_dead`).
"""

from __future__ import annotations

import builtins
import os
import platform
import secrets
import shutil
import socket
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

from ..errors import WorkbenchError, free_space, is_disk_full
from .db import DATABASE_NAME, SCHEMA_VERSION, Database, decode, encode

__all__ = ["RunStore", "Run", "RunRecord", "DEFAULT_DIR", "DATABASE_NAME", "SCHEMA_VERSION", "STATUSES",
           "describe_error", "versions"]

DEFAULT_DIR = "runs"
STATUSES = ("running", "succeeded", "failed")

_JSON_FIELDS = (
    "spec", "seeds", "versions", "cluster", "timings", "metrics", "data", "history", "artifacts", "process",
)
# every column, so that a store written by an older workbench (no `process` column yet) still reads
_SELECT = "SELECT * FROM runs"

_PACKAGES = ("workbench", "dask", "distributed", "dask-ml", "xgboost-cpu", "xgboost", "scikit-learn",
             "pandas", "pyarrow", "numpy")


def versions() -> dict[str, str]:
    """Python's and the stack's installed versions, as recorded with every run."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


@dataclass(frozen=True)
class RunRecord:
    """One recorded run, as read from the store."""

    id: str
    name: str
    status: str
    created_at: str
    finished_at: str | None
    spec: dict
    seeds: dict
    versions: dict
    cluster: dict
    timings: dict
    metrics: dict
    data: dict
    history: dict
    error: str | None
    artifacts: dict
    path: str
    process: dict = field(default_factory=dict)  # pid, host and start time of the process that ran it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunStore:
    """The runs recorded in ``<directory>/runs.sqlite``, created by a first write, never a read."""

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        if directory is None:
            import dask.config

            directory = dask.config.get("workbench.runs.dir", default=DEFAULT_DIR)
        self.directory = Path(directory)
        self._root = self.directory.absolute()
        self.db = Database(self._root, shown=self.database)

    def __repr__(self) -> str:
        return f"RunStore({str(self.directory)!r})"

    @property
    def database(self) -> Path:
        return self.directory / DATABASE_NAME

    def start(
        self, name: str, *, spec: dict, seeds: dict, versions: dict, cluster: dict
    ) -> Run:
        """Insert a new ``running`` run, create its directory and return its handle."""
        self.abandon_dead()
        values = {"spec": spec, "seeds": seeds, "versions": versions, "cluster": cluster, "process": _this_process()}
        encoded = {key: encode(value) for key, value in values.items()}
        empty = {key: "{}" for key in ("timings", "metrics", "data", "history", "artifacts")}
        now = _utcnow()
        while True:
            run_id = _new_id(now)
            run_dir = self._root / run_id
            run = Run(self, run_id, name)
            _UNFINISHED[run_id] = run  # before the row exists: no moment when a signal could orphan it
            try:
                self._insert(run_dir, name=name, created_at=now.isoformat(), **encoded, **empty)
            except BaseException as exc:
                if not isinstance(exc, KeyboardInterrupt):  # an interrupted insert may have committed
                    _UNFINISHED.pop(run_id, None)
                if isinstance(exc, (FileExistsError, _IdTaken)):
                    continue
                raise
            return run

    def list(
        self, *, status: str | None = None, limit: int | None = None
    ) -> builtins.list[RunRecord]:
        """The recorded runs, newest first, optionally only those with ``status``."""
        if status is not None and status not in STATUSES:
            raise WorkbenchError(
                f"unknown run status '{status}'", f"use one of {', '.join(STATUSES)}"
            )
        if limit is not None and limit < 0:
            raise WorkbenchError(f"run limit must be 0 or more, got {limit}")
        self.abandon_dead()
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        sql = f"{_SELECT} {where} ORDER BY created_at DESC, rowid DESC LIMIT ?"
        rows = self.db.fetch(sql, (*params, -1 if limit is None else limit))
        return [self._record(row) for row in rows]

    def get(self, run_id: str) -> RunRecord:
        """The run with this id, or with the one id that starts with it."""
        self.abandon_dead()
        ids = self._ids_starting(run_id)
        if run_id in ids:
            ids = [run_id]
        if not ids:
            raise WorkbenchError(
                f"no run '{run_id}' in {self.database}",
                "list the recorded runs with `workbench runs`",
            )
        if len(ids) > 1:
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            raise WorkbenchError(
                f"run id '{run_id}' is ambiguous: it matches {shown}",
                "give more characters of the id",
            )
        return self._record(self.db.fetch(f"{_SELECT} WHERE id = ?", (ids[0],))[0])

    def abandon_dead(self) -> builtins.list[str]:
        """Mark failed, as abandoned, the runs left ``running`` by a process of this host that is gone
        (killed, or crashed), and remove what they had written; returns their ids.

        A run recorded on another host, or by a workbench that did not record its process, is left
        as it is: whether its process lives cannot be told from here."""
        host = socket.gethostname()
        rows = self.db.fetch("SELECT * FROM runs WHERE status = 'running'", ())
        dead = {}
        for row in rows:
            process = decode(row["process"]) if "process" in row.keys() else {}
            if process.get("host") == host and not _alive(process):
                dead[row["id"]] = (f"abandoned: process {process.get('pid')} on {host} ended without finishing "
                                   "the run (killed, or crashed)")
        if not dead:
            return []
        try:
            with self.db.writing() as conn:
                ended = [run_id for run_id, error in dead.items() if conn.execute(
                    "UPDATE runs SET status = 'failed', finished_at = ?, error = ?, artifacts = '{}' "
                    "WHERE id = ? AND status = 'running'", (_utcnow().isoformat(), error, run_id)).rowcount]
        except sqlite3.OperationalError:  # a store this process may read but not write: left for one that can
            return []
        for run_id in ended:
            _discard(self._root / run_id)
        return ended

    def __len__(self) -> int:
        rows = self.db.fetch("SELECT count(*) FROM runs", ())
        return rows[0][0] if rows else 0

    def _ids_starting(self, prefix: str) -> builtins.list[str]:
        if not prefix:
            return []
        sql = "SELECT id FROM runs WHERE substr(id, 1, ?) = ? ORDER BY id"
        return [row[0] for row in self.db.fetch(sql, (len(prefix), prefix))]

    def _insert(self, run_dir: Path, **row: Any) -> None:
        self.db.ensure_schema()
        run_dir.mkdir()
        try:
            with self.db.writing() as conn:
                columns = ", ".join(["id", "status", *row])
                marks = ", ".join("?" * (len(row) + 2))
                conn.execute(
                    f"INSERT INTO runs ({columns}) VALUES ({marks})",
                    (run_dir.name, "running", *row.values()),
                )
        except BaseException as exc:
            run_dir.rmdir()
            if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
                raise _IdTaken from exc
            raise

    def _record(self, row: sqlite3.Row) -> RunRecord:
        fields = {key: row[key] for key in row.keys()}
        fields.update({key: decode(fields[key]) for key in _JSON_FIELDS if key in fields})
        return RunRecord(**fields, path=str(self._root / row["id"]))


class Run:
    """A handle on one run being recorded; every call writes through to the store."""

    def __init__(self, store: RunStore, run_id: str, name: str):
        self.store = store
        self.id = run_id
        self.name = name
        self.path = store._root / run_id
        self._ended = False

    def __repr__(self) -> str:
        return f"Run({self.id!r}, name={self.name!r})"

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or SIGTERM/SIGHUP through the command's handler
            self.fail(interrupted_error(exc.args[0] if exc.args else "SIGINT (Ctrl-C)"))
        elif exc is not None:
            self.fail(describe_error(exc))
        elif not self._ended:
            self.fail("run ended without a result")

    def log_timing(self, phase: str, seconds: float) -> None:
        self._merge("timings", {phase: float(seconds)})

    def log_data(self, **values: Any) -> None:
        self._merge("data", values)

    def log_history(self, history: dict) -> None:
        with self.store.db.writing() as conn:
            conn.execute("UPDATE runs SET history = ? WHERE id = ?", (encode(history), self.id))

    def save_artifact(self, name: str, filename: str, write: Callable[[Path], None]) -> Path:
        """Have ``write`` fill a temporary path, then move it to ``filename`` in one step.

        A write cut short leaves nothing behind; a full disk is a one-line WorkbenchError."""
        relative = PurePath(filename)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(
                f"artifact filename {filename!r} must be a path inside the run directory"
            )
        final = self.path / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.with_name(f".{final.stem}.{secrets.token_hex(4)}.tmp{final.suffix}")
        try:
            write(temporary)
            os.replace(temporary, final)
        except BaseException as exc:
            _remove(temporary)
            if is_disk_full(exc):
                raise WorkbenchError(
                    f"no space left in {self.path} for the run's {filename} ({free_space(self.path)} free "
                    "after removing the partial file)",
                    "free space there, or record runs on a larger disk (--runs-dir, or runs_dir: in the pipeline file)",
                ) from None
            raise
        self._merge("artifacts", {name: relative.as_posix()})
        return final

    def succeed(self, metrics: dict) -> RunRecord:
        """Mark the run succeeded with its metrics; only a running run can succeed."""
        with self.store.db.writing() as conn:
            status = self._status(conn)
            if status != "running":
                raise RuntimeError(
                    f"run {self.id} is already {status}; only a running run can succeed"
                )
            conn.execute(
                "UPDATE runs SET status = 'succeeded', finished_at = ?, metrics = ? WHERE id = ?",
                (_utcnow().isoformat(), encode(metrics), self.id),
            )
            record = self._read(conn)
        self._ended = True
        _UNFINISHED.pop(self.id, None)
        return record

    def fail(self, error: str) -> RunRecord:
        """Mark the run failed with ``error`` and remove its artifacts (a failed run keeps no model
        file); a run that already failed keeps its first error."""
        with self.store.db.writing() as conn:
            if self._status(conn) != "failed":
                conn.execute(
                    "UPDATE runs SET status = 'failed', finished_at = ?, error = ?, artifacts = '{}' WHERE id = ?",
                    (_utcnow().isoformat(), str(error), self.id),
                )
            record = self._read(conn)
        _discard(self.path)
        self._ended = True
        _UNFINISHED.pop(self.id, None)
        return record

    def _merge(self, column: str, values: dict) -> None:
        with self.store.db.writing() as conn:
            row = conn.execute(f"SELECT {column} FROM runs WHERE id = ?", (self.id,)).fetchone()
            merged = {**decode(row[0]), **values}
            conn.execute(f"UPDATE runs SET {column} = ? WHERE id = ?", (encode(merged), self.id))

    def _status(self, conn: sqlite3.Connection) -> str:
        return conn.execute("SELECT status FROM runs WHERE id = ?", (self.id,)).fetchone()[0]

    def _read(self, conn: sqlite3.Connection) -> RunRecord:
        return self.store._record(conn.execute(f"{_SELECT} WHERE id = ?", (self.id,)).fetchone())


# The runs this process started and has not ended. A signal can land between the row's insert and
# the ``with`` that would record its end; the command's handler ends these (fail_unfinished).
_UNFINISHED: dict[str, Run] = {}


def fail_unfinished(error: str) -> builtins.list[str]:
    """Mark failed with ``error`` every run this process started and has not ended; their ids."""
    ended = []
    for run in builtins.list(_UNFINISHED.values()):
        _UNFINISHED.pop(run.id, None)
        try:
            if run.store.db.fetch("SELECT 1 FROM runs WHERE id = ?", (run.id,)):
                run.fail(error)
                ended.append(run.id)
        except (WorkbenchError, sqlite3.Error, OSError):  # a store gone or unwritable: left to abandon_dead
            continue
    return ended


def interrupted_error(by: str) -> str:
    """The error recorded for a run stopped by a signal (``by``: "SIGINT (Ctrl-C)", "SIGTERM")."""
    return f"interrupted by {by} before the run finished"


class _IdTaken(Exception):
    """A freshly drawn run id is already in the database."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _new_id(created_at: datetime) -> str:
    return f"{created_at:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def describe_error(exc: BaseException) -> str:
    """The one line a failed run (or sweep cell) records for ``exc``: a workbench error's own
    message, anything else prefixed with its type (``KeyError: 'x'``)."""
    lines = str(exc).strip().splitlines()
    message = lines[0].strip() if lines else ""
    if isinstance(exc, WorkbenchError):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _this_process() -> dict[str, Any]:
    import psutil

    return {"pid": os.getpid(), "host": socket.gethostname(), "started": psutil.Process().create_time()}


def _alive(process: dict) -> bool:
    """Whether the process a run recorded still runs (the same pid started at the same time: not a
    new process that was given the pid of a dead one)."""
    import psutil

    try:
        found = psutil.Process(int(process["pid"]))
        return found.status() != psutil.STATUS_ZOMBIE and abs(found.create_time() - float(process["started"])) < 1
    except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True


def _discard(run_dir: Path) -> None:
    """Empty a run directory that is not a succeeded run's: its artifacts and any half-written file."""
    if run_dir.is_dir():
        for path in run_dir.iterdir():
            _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
