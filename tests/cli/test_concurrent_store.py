"""Two ``workbench run`` s and one ``workbench sweep`` recording into the same runs directory at once,
each a subprocess of the console script started together (issue 15): every run is recorded once,
every sweep cell points at its own run, and no command fails with "database is locked".

All three connect to the test session's cluster, so their runs overlap in time (checked: the store
holds their start and end times). Each run writes a dozen transactions as it goes (timings, data,
history, artifacts), and the sweep its cells and attempts beside them. The test lists the runs over
and over meanwhile (reads, and the check for abandoned runs every read does).

Not covered here: the store on the shared path of the emulated multi-node SLURM cluster, written
from several nodes.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time

import pytest
import yaml

from workbench.data.synth import synth_bitcoin_export
from workbench.stores.runs import RunStore
from workbench.stores.sweeps import SweepStore

from .helpers import TIMEOUT


def pipeline(name: str) -> dict:
    return {"name": name, "data": {"path": "export/", "target": "is_miner", "drop": ["address"]},
            "split": {"test_size": 0.2, "validation_size": 0.1, "seed": 0}, "sampling": {"ratio": "1:3"},
            "model": {"params": {"max_depth": 3}, "num_boost_round": 15, "early_stopping_rounds": 5}}


@pytest.fixture
def work(tmp_path, client):
    synth_bitcoin_export(tmp_path / "export", 12_000, positive_rate=0.05, rows_per_shard=3_000, seed=0)
    for name in ("first", "second"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(pipeline(name), sort_keys=False))
    sweep = {"name": "beside", "pipeline": pipeline("cell"), "axes": {"sampling.ratio": ["1:1", "1:3"]}, "trials": 1,
             "timeout": 240, "retries": 0}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    return tmp_path


def test_two_runs_and_a_sweep_record_into_one_store_at_once(work, client):
    runs = work / "R"
    address = client.scheduler.address
    commands = {
        "first": ["workbench", "run", "first.yaml", "--connect", address, "--runs-dir", str(runs)],
        "second": ["workbench", "run", "second.yaml", "--connect", address, "--runs-dir", str(runs)],
        "sweep": ["workbench", "sweep", "sweep.yaml", "--connect", address, "--runs-dir", str(runs)],
    }
    procs = {name: subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, command in commands.items()}
    reads = 0
    try:
        while any(proc.poll() is None for proc in procs.values()):
            RunStore(runs).list()
            reads += 1
            time.sleep(0.1)
        done = {name: proc.communicate(timeout=TIMEOUT) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    for name, (out, err) in done.items():
        assert procs[name].returncode == 0, (name, err)
        assert "locked" not in out + err and "Traceback" not in out + err, (name, err)
    assert reads >= 2  # the listing ran while they did

    records = RunStore(runs).list()
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids)) == 4
    assert sorted(r.name for r in records) == ["beside:cell", "beside:cell", "first", "second"]
    assert {r.status for r in records} == {"succeeded"}
    with sqlite3.connect(runs / "runs.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 4  # nothing half-inserted either
    cells = SweepStore(runs).cells("beside")
    assert len(cells) == 2 and {c["status"] for c in cells} == {"succeeded"}
    assert sorted(c["run_id"] for c in cells) == sorted(r.id for r in records if r.name == "beside:cell")

    # they did run at the same time: the two runs overlap each other and a cell of the sweep
    span = {r.id: (r.created_at, r.finished_at) for r in records}
    first, second = (next(r.id for r in records if r.name == name) for name in ("first", "second"))

    def overlap(a, b) -> bool:
        return span[a][0] < span[b][1] and span[b][0] < span[a][1]

    assert overlap(first, second), span
    cell_runs = [c["run_id"] for c in cells]
    assert [c for c in cell_runs if overlap(c, first)], span
    assert [c for c in cell_runs if overlap(c, second)], span
