"""Sweeps in the run store: the ``sweeps``, ``sweep_cells`` and ``sweep_attempts`` tables of
``runs.sqlite`` (schema 2, see ``workbench/stores/db.py``).

A cell is recorded once, when it ends, in one transaction with its last attempt: the UNIQUE
``(sweep_id, cell_key)`` key makes a second record of the same cell impossible (a failed cell can
be replaced by a later successful attempt, a succeeded one never). Attempts are written when they
start, so a sweep process that is killed leaves ``running`` attempts behind; the next run of the
sweep marks them ``abandoned`` (and their runs failed) before it starts.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from ..errors import ConfigError, WorkbenchError
from .db import decode, encode
from .runs import RunStore

__all__ = ["SweepStore", "ABANDONED"]

ABANDONED = "the sweep process ended before the cell finished (killed or interrupted)"

_CELL_COLUMNS = (
    "sweep_id", "cell_key", "axes", "trial", "seed", "status", "run_id", "attempts", "workers", "threads", "rows",
    "seconds", "timings", "metrics", "versions", "faults", "error", "finished_at", "hosts",
)
_CELL_JSON = ("axes", "timings", "metrics", "versions", "faults", "hosts")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class SweepStore:
    """The sweeps recorded in a run store directory."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.runs = RunStore(directory)
        self.db = self.runs.db  # one database: a sweep's cells point at runs in the same file

    @property
    def database(self):
        return self.runs.database

    # ------------------------------------------------------------ sweeps

    def begin(self, sweep_id: str, *, spec: dict, fingerprint: str, planned: int) -> bool:
        """Record the sweep (or check it is the same sweep); True if it was already recorded."""
        with self.db.writing() as conn:
            row = conn.execute("SELECT fingerprint FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
            if row is not None and row[0] != fingerprint:
                self.check(sweep_id, fingerprint)
            now = _now()
            if row is None:
                conn.execute(
                    "INSERT INTO sweeps (id, created_at, updated_at, spec, fingerprint, planned) VALUES (?, ?, ?, ?, ?, ?)",
                    (sweep_id, now, now, encode(spec), fingerprint, planned),
                )
            else:
                conn.execute("UPDATE sweeps SET updated_at = ?, spec = ?, planned = ? WHERE id = ?",
                             (now, encode(spec), planned, sweep_id))
        return row is not None

    def check(self, sweep_id: str, fingerprint: str) -> None:
        """Refuse to continue a recorded sweep with another pipeline or other seeds."""
        rows = self.db.fetch("SELECT fingerprint FROM sweeps WHERE id = ?", (sweep_id,))
        if rows and rows[0][0] != fingerprint:
            raise ConfigError(
                f"sweep {sweep_id!r} in {self.database} was recorded with another pipeline or other seeds",
                "give the changed sweep a new `name:` (or use another --runs-dir)",
            )

    def exists(self, sweep_id: str) -> bool:
        return bool(self.db.fetch("SELECT 1 FROM sweeps WHERE id = ?", (sweep_id,)))

    def get(self, sweep_id: str) -> dict:
        """The sweep with this id, or with the one id that starts with it."""
        ids = [r[0] for r in self.db.fetch("SELECT id FROM sweeps WHERE substr(id, 1, ?) = ? ORDER BY id",
                                               (len(sweep_id), sweep_id))] if sweep_id else []
        if sweep_id in ids:
            ids = [sweep_id]
        if not ids:
            raise WorkbenchError(f"no sweep {sweep_id!r} in {self.database}", "list the recorded sweeps with `workbench sweeps`")
        if len(ids) > 1:
            raise WorkbenchError(f"sweep id {sweep_id!r} is ambiguous: it matches {', '.join(ids[:5])}",
                                 "give more characters of the id")
        return self.list(only=ids[0])[0]

    def list(self, only: str | None = None) -> list[dict]:
        """Every sweep, newest first, with its cell counts."""
        where, params = ("WHERE s.id = ?", (only,)) if only else ("", ())
        rows = self.db.fetch(
            "SELECT s.id, s.created_at, s.updated_at, s.spec, s.planned, "
            "sum(c.status = 'succeeded'), sum(c.status = 'failed') "
            f"FROM sweeps s LEFT JOIN sweep_cells c ON c.sweep_id = s.id {where} "
            "GROUP BY s.id ORDER BY s.updated_at DESC", params,
        )
        return [{"id": r[0], "created_at": r[1], "updated_at": r[2], "spec": decode(r[3]), "planned": r[4],
                 "succeeded": r[5] or 0, "failed": r[6] or 0} for r in rows]

    # ------------------------------------------------------------ cells and attempts

    def recorded(self, sweep_id: str) -> dict[str, str]:
        """cell key -> status of every recorded cell."""
        return dict(self.db.fetch("SELECT cell_key, status FROM sweep_cells WHERE sweep_id = ?", (sweep_id,)))

    def cells(self, sweep_id: str) -> list[dict]:
        rows = self.db.fetch(
            f"SELECT {', '.join(_CELL_COLUMNS)} FROM sweep_cells WHERE sweep_id = ? ORDER BY rowid", (sweep_id,))
        out = []
        for row in rows:
            cell = {key: row[key] for key in row.keys()}
            cell.update({key: decode(cell[key]) for key in _CELL_JSON})
            out.append(cell)
        return out

    def attempts(self, sweep_id: str) -> list[dict]:
        rows = self.db.fetch(
            "SELECT cell_key, attempt, run_id, started_at, finished_at, status, fault FROM sweep_attempts "
            "WHERE sweep_id = ? ORDER BY started_at, attempt", (sweep_id,))
        return [{key: row[key] for key in row.keys()} for row in rows]

    def start_attempt(self, sweep_id: str, cell_key: str) -> int:
        with self.db.writing() as conn:
            (last,) = conn.execute("SELECT coalesce(max(attempt), 0) FROM sweep_attempts WHERE sweep_id = ? AND cell_key = ?",
                                   (sweep_id, cell_key)).fetchone()
            conn.execute("INSERT INTO sweep_attempts (sweep_id, cell_key, attempt, started_at, status) "
                         "VALUES (?, ?, ?, ?, 'running')", (sweep_id, cell_key, last + 1, _now()))
        return last + 1

    def attach_run(self, sweep_id: str, cell_key: str, attempt: int, run_id: str) -> None:
        with self.db.writing() as conn:
            conn.execute("UPDATE sweep_attempts SET run_id = ? WHERE sweep_id = ? AND cell_key = ? AND attempt = ?",
                         (run_id, sweep_id, cell_key, attempt))

    def end_attempt(self, sweep_id: str, cell_key: str, attempt: int, status: str, fault: str | None = None,
                    cell: dict | None = None) -> bool:
        """End an attempt; with ``cell``, also record the cell (False if it was already recorded)."""
        with self.db.writing() as conn:
            conn.execute("UPDATE sweep_attempts SET finished_at = ?, status = ?, fault = ? "
                         "WHERE sweep_id = ? AND cell_key = ? AND attempt = ?",
                         (_now(), status, fault, sweep_id, cell_key, attempt))
            if cell is None:
                return False
            values = {**cell, "sweep_id": sweep_id, "cell_key": cell_key, "finished_at": _now()}
            values.update({key: encode(values[key]) for key in _CELL_JSON})
            columns = ", ".join(_CELL_COLUMNS)
            updates = ", ".join(f"{c} = excluded.{c}" for c in _CELL_COLUMNS[2:])
            changed = conn.execute(
                f"INSERT INTO sweep_cells ({columns}) VALUES ({', '.join('?' * len(_CELL_COLUMNS))}) "
                f"ON CONFLICT (sweep_id, cell_key) DO UPDATE SET {updates} WHERE sweep_cells.status = 'failed'",
                tuple(values[c] for c in _CELL_COLUMNS),
            ).rowcount
        return changed == 1

    def abandon_running(self, sweep_id: str) -> list[dict]:
        """Mark attempts a killed sweep process left ``running`` as abandoned, and their runs failed."""
        with self.db.writing() as conn:
            left = [dict(zip(("cell_key", "attempt", "run_id"), r)) for r in conn.execute(
                "SELECT cell_key, attempt, run_id FROM sweep_attempts WHERE sweep_id = ? AND status = 'running'",
                (sweep_id,)).fetchall()]
            conn.execute("UPDATE sweep_attempts SET status = 'abandoned', finished_at = ?, fault = ? "
                         "WHERE sweep_id = ? AND status = 'running'", (_now(), ABANDONED, sweep_id))
            for attempt in left:
                if attempt["run_id"]:
                    conn.execute("UPDATE runs SET status = 'failed', finished_at = ?, error = ? "
                                 "WHERE id = ? AND status = 'running'", (_now(), ABANDONED, attempt["run_id"]))
        return left

    def table_rows(self, sweep_id: str) -> list[dict[str, Any]]:
        """One flat dict per recorded cell: axes, phase timings (``<phase>_seconds``) and metrics as columns."""
        rows = []
        for cell in self.cells(sweep_id):
            row = {"sweep_id": sweep_id, "cell_key": cell["cell_key"], **cell["axes"], "trial": cell["trial"],
                   "seed": cell["seed"], "status": cell["status"], "run_id": cell["run_id"],
                   "attempts": cell["attempts"], "threads": cell["threads"], "rows": cell["rows"],
                   "seconds": cell["seconds"], "faults": "; ".join(cell["faults"]), "error": cell["error"]}
            row["workers"] = cell["workers"] if cell["workers"] is not None else cell["axes"].get("workers")
            row["hosts"] = ",".join(cell["hosts"])
            if "nodes" not in cell["axes"]:
                row["nodes"] = len(cell["hosts"]) or None
            row.update({f"{phase}_seconds": value for phase, value in cell["timings"].items()})
            timings = cell["timings"]
            if "train" in timings:
                # The fit: building the matrices plus boosting (the single-worker path builds its
                # DMatrix inside the training task, so `train` alone compares unlike work).
                row["fit_seconds"] = timings["train"] + timings.get("dmatrix", 0.0)
            if timings:
                row["pipeline_seconds"] = sum(timings.values())
            row.update(cell["metrics"])
            rows.append(row)
        return rows

    def table(self, sweep_id: str):
        """The recorded cells of a sweep (``sweep_id`` or a unique prefix) as a pandas DataFrame: one
        row per cell as :meth:`table_rows` gives them; ``attrs["sweep"]`` is the sweep's record."""
        import pandas as pd

        record = self.get(sweep_id)
        table = pd.DataFrame(self.table_rows(record["id"]))
        table.attrs["sweep"] = record
        return table
