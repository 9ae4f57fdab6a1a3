"""Signals sent to a plain ``workbench run`` (the console script, a subprocess) during the read, during
training and while the artifacts are written (issue 15).

- SIGINT (Ctrl-C: sent to the whole process group, as a terminal does) and SIGTERM (``kill``) unwind:
  exit status 130, "interrupted" on stderr, no traceback, and the run is recorded ``failed`` with an
  error that starts with ``interrupted by SIGINT`` / ``interrupted by SIGTERM``.
- SIGKILL leaves the run ``running``; the next command on the runs directory (``workbench runs``, or
  the next ``workbench run``) finds that its process is gone and records it ``failed``, its error
  starting with ``abandoned``.
- In every case the run's directory is left empty: no model file, no plot, no ``*.tmp`` file.

Each phase is hit by watching the run store: the process is stopped (SIGSTOP) as soon as the store
shows it in the phase, the store is read again while it is stopped, and only then is the signal
sent and the process continued (SIGCONT). The runs connect to the test session's cluster, except
one that starts its own and whose worker processes must go with it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from workbench.data.synth import synth_bitcoin_export
from workbench.stores.runs import RunStore

from .helpers import SMALL_PROFILE, workbench


def pipeline(name: str, rounds: int, eta: float, path: str = "export/") -> str:
    return (f"name: {name}\ndata:\n  path: {path}\n  target: is_miner\n  drop: [address]\n"
            "split: {test_size: 0.2, validation_size: 0.1}\nsampling: {ratio: \"1:4\"}\n"
            f"model:\n  params: {{max_depth: 6, eta: {eta}}}\n  num_boost_round: {rounds}\n"
            f"  early_stopping_rounds: {rounds}\n")


@pytest.fixture(scope="module")
def work(tmp_path_factory, client):
    """An export of 50 shards (200,000 rows: the read lasts about a second) and a pipeline whose
    training lasts several seconds more; a small export and a pipeline that reaches its artifacts in a
    moment."""
    root = tmp_path_factory.mktemp("signals")
    synth_bitcoin_export(root / "export", 200_000, positive_rate=0.02, rows_per_shard=4_000, seed=0)
    synth_bitcoin_export(root / "small", 20_000, positive_rate=0.05, rows_per_shard=10_000, seed=1)
    (root / "long.yaml").write_text(pipeline("long", 400, 0.01))
    (root / "short.yaml").write_text(pipeline("short", 20, 0.3, path="small/"))
    (root / "one-worker.yaml").write_text(SMALL_PROFILE)
    return SimpleNamespace(root=root, address=client.scheduler.address)


# What the store shows in each phase (the timings are logged as each phase ends; the model type
# just before the first artifact is written).
PHASES = {
    "read": lambda row: "read" not in row["timings"],
    "train": lambda row: "rus" in row["timings"] and "train" not in row["timings"],
    "artifacts": lambda row: "model_type" in row["data"],
}


def running_row(runs: Path) -> dict | None:
    """The one running run of ``runs``, read straight from the file (nothing of the workbench that
    might mark it abandoned), or None."""
    if not (runs / "runs.sqlite").exists():
        return None
    import json

    conn = sqlite3.connect(f"file:{runs / 'runs.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT id, status, timings, data, process FROM runs").fetchall()
    except sqlite3.OperationalError:  # the schema is being created
        return None
    finally:
        conn.close()
    running = [r for r in rows if r[1] == "running"]
    if not running:
        return None
    (run_id, status, timings, data, process), = running
    return {"id": run_id, "status": status, "timings": json.loads(timings), "data": json.loads(data),
            "process": json.loads(process)}


def start_run(work, name: str, runs: Path, log: Path, *cluster) -> subprocess.Popen:
    cluster = cluster or ("--connect", work.address)
    with log.open("w") as out:
        return subprocess.Popen(["workbench", "run", name, *cluster, "--runs-dir", str(runs)], cwd=work.root,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_in(proc: subprocess.Popen, runs: Path, phase: str, log: Path) -> dict | None:
    """SIGSTOP ``proc`` while the store shows its run in ``phase``; the run's row, read while it is
    stopped, or None if the run left the phase before the stop took effect."""
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        row = running_row(runs)
        if row is not None and PHASES[phase](row):
            proc.send_signal(signal.SIGSTOP)
            while psutil.Process(proc.pid).status() not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE):
                time.sleep(0.01)
            row = running_row(runs)
            return row if row is not None and PHASES[phase](row) else None
        time.sleep(0.02)


def started_and_stopped_in(work, runs: Path, phase: str, log: Path, attempts: int = 3):
    """A run stopped (SIGSTOP) in ``phase`` and its row; the short artifacts phase can slip past the
    stop, so each miss starts a fresh run in a fresh runs directory, up to ``attempts`` runs."""
    for attempt in range(attempts):
        where = runs if attempt == 0 else runs.with_name(f"{runs.name}-{attempt}")
        proc = start_run(work, "short.yaml" if phase == "artifacts" else "long.yaml", where, log)
        try:
            row = stop_in(proc, where, phase, log)
        except BaseException:
            proc.kill()
            raise
        if row is not None:
            return proc, where, row
        os.killpg(proc.pid, signal.SIGCONT)
        proc.wait(timeout=120)
    pytest.fail(f"the run left the {phase} phase before it was stopped, {attempts} times")


def send(proc: subprocess.Popen, sig: signal.Signals) -> None:
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C in a terminal: the whole foreground process group
    else:
        proc.send_signal(sig)
    if sig != signal.SIGKILL:
        os.killpg(proc.pid, signal.SIGCONT)


def assert_nothing_kept(runs: Path, run_id: str) -> None:
    """No artifact of the run, nothing half-written anywhere in the runs directory."""
    assert sorted(p.name for p in (runs / run_id).iterdir()) == []
    assert {p.name for p in runs.iterdir() if p.is_file()} <= {"runs.sqlite", "runs.sqlite-shm", "runs.sqlite-wal"}
    assert [str(p) for p in runs.rglob("*") if ".tmp" in p.name] == []
    assert RunStore(runs).get(run_id).artifacts == {}


CASES = [(sig, phase) for sig in (signal.SIGINT, signal.SIGTERM) for phase in PHASES]


@pytest.mark.parametrize(("sig", "phase"), CASES, ids=[f"{s.name}-{p}" for s, p in CASES])
def test_an_interrupted_run_is_recorded_interrupted_and_keeps_nothing(work, tmp_path, sig, phase):
    runs, log = tmp_path / "R", tmp_path / "run.log"
    proc, runs, row = started_and_stopped_in(work, runs, phase, log)
    try:
        send(proc, sig)
        assert proc.wait(timeout=120) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "Traceback" not in text, text
    assert text.rstrip("\n").splitlines()[-1] == "interrupted", text
    record = RunStore(runs).get(row["id"])
    assert record.status == "failed", record
    by = "SIGINT (Ctrl-C)" if sig == signal.SIGINT else "SIGTERM"
    assert record.error == f"interrupted by {by} before the run finished"
    assert_nothing_kept(runs, row["id"])


@pytest.mark.parametrize("phase", list(PHASES))
def test_a_killed_run_is_marked_abandoned_by_the_next_command(work, tmp_path, phase):
    runs, log = tmp_path / "R", tmp_path / "run.log"
    proc, runs, row = started_and_stopped_in(work, runs, phase, log)
    try:
        send(proc, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert running_row(runs)["id"] == row["id"]  # nothing could record its end
    assert row["process"]["pid"] == proc.pid
    if phase == "train":  # the next run finds it
        after = workbench("run", "short.yaml", "--connect", work.address, "--runs-dir", runs, cwd=work.root)
        assert after.returncode == 0, after.stderr
        [kept] = RunStore(runs).list(status="succeeded")
        assert (Path(kept.path) / "model.json").is_file()
    else:  # listing the runs finds it
        after = workbench("runs", "--runs-dir", runs, cwd=work.root)
        assert after.returncode == 0, after.stderr
        line = next(line for line in after.stdout.splitlines() if line.startswith(row["id"]))
        assert line.split()[2] == "failed", after.stdout
    record = RunStore(runs).get(row["id"])
    assert record.status == "failed" and record.finished_at is not None
    assert record.error == (f"abandoned: process {proc.pid} on {os.uname().nodename} ended without finishing the run "
                            "(killed, or crashed)")
    assert_nothing_kept(runs, row["id"])


def test_ctrl_c_on_a_run_with_its_own_cluster_stops_its_workers(work, tmp_path):
    runs, log = tmp_path / "R", tmp_path / "run.log"
    proc = start_run(work, "long.yaml", runs, log, "--cluster", "one-worker.yaml")
    try:
        row = stop_in(proc, runs, "train", log)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children  # the cluster's nanny and worker
        send(proc, signal.SIGINT)
        assert proc.wait(timeout=120) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "Traceback" not in text and " - distributed." not in text, text  # no worker of its own took Ctrl-C
    assert text.rstrip("\n").splitlines()[-1] == "interrupted", text
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"processes left behind: {alive}"
    record = RunStore(runs).get(row["id"])
    assert (record.status, record.error) == ("failed", "interrupted by SIGINT (Ctrl-C) before the run finished")
    assert_nothing_kept(runs, row["id"])
