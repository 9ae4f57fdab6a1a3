"""A sweep on the real single-node SLURM: `workbench sweep --cluster <slurm profile>` scales the
jobqueue cluster to each worker count (jobs submitted and cancelled through sbatch/scancel), and
every cell is recorded. Fails (never skips) without SLURM; see conftest.py."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from workbench.data.synth import synth_bitcoin_export
from workbench.stores.sweeps import SweepStore
from workbench.sweep import sweep_table

from ..test_sweep import sweep_file
from .conftest import squeue, wait_queue_empty, write_profile

pytestmark = pytest.mark.usefixtures("slurm")


def test_a_small_sweep_end_to_end_on_slurm(tmp_path):
    export = tmp_path / "export"
    synth_bitcoin_export(export, 30_000, positive_rate=0.02, rows_per_shard=10_000, seed=0)
    profile = write_profile(tmp_path, job_name="wb-sweep")
    path = sweep_file(tmp_path, export, name="on-slurm", axes={"workers": [1, 2], "sampling.ratio": ["1:1", "1:4"]},
                      trials=2, cluster={"type": "local"})  # --cluster replaces it
    seen: list[list[str]] = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.append([job for job in squeue() if "wb-sweep" in job])
            time.sleep(0.3)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        proc = subprocess.run(["workbench", "sweep", str(path), "--cluster", str(profile),
                               "--runs-dir", str(tmp_path / "runs")],
                              capture_output=True, text=True, timeout=400, cwd=tmp_path)
    finally:
        done.set()
        watcher.join()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "8 succeeded and 0 failed in this run" in proc.stdout
    assert "cluster: 2 worker(s)" in proc.stderr
    running = [sum("RUNNING" in job for job in jobs) for jobs in seen]
    assert max(running) == 2  # two worker jobs for the 2-worker cells, never more
    assert wait_queue_empty(), squeue()

    table = sweep_table("on-slurm", tmp_path / "runs")
    assert len(table) == 8 and table["cell_key"].is_unique and (table["status"] == "succeeded").all()
    assert sorted(table["workers"].tolist()) == [1] * 4 + [2] * 4
    assert table["roc_auc"].between(0.6, 1).all() and (table["train_seconds"] > 0).all()
    cells = SweepStore(tmp_path / "runs").cells("on-slurm")
    from workbench.stores.runs import RunStore

    runs = RunStore(tmp_path / "runs")
    for cell in cells:
        record = runs.get(cell["run_id"])
        assert record.cluster["scheduler"].startswith("tls://") and record.cluster["workers"] == cell["workers"]

    # the same command again records nothing twice and submits no job
    again = subprocess.run(["workbench", "sweep", str(path), "--cluster", str(profile), "--runs-dir", str(tmp_path / "runs")],
                           capture_output=True, text=True, timeout=200, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "8 of 8 cells recorded before; 0 to run" in again.stderr
    assert len(SweepStore(tmp_path / "runs").cells("on-slurm")) == 8
    assert wait_queue_empty(), squeue()


def test_the_sweep_scales_a_slurm_cluster_down_and_the_cancelled_job_leaves(tmp_path):
    from workbench.sweep import run_sweep

    export = tmp_path / "export"
    synth_bitcoin_export(export, 20_000, positive_rate=0.03, rows_per_shard=10_000, seed=1)
    profile = write_profile(tmp_path, job_name="wb-down")
    path = sweep_file(tmp_path, export, name="down", axes={"workers": [2, 1]}, trials=1)
    counts: list[int] = []

    def on_cell(cell, row):
        counts.append(sum("wb-down RUNNING" in job for job in squeue()))

    result = run_sweep(path, cluster=profile, runs_dir=tmp_path / "runs", on_cell=on_cell)
    assert (result.succeeded, result.failed) == (2, 0)
    assert counts == [2, 1]  # the second job was cancelled before the 1-worker cell ran
    assert [c["workers"] for c in SweepStore(tmp_path / "runs").cells("down")] == [2, 1]
    assert wait_queue_empty(), squeue()

