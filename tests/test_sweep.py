"""Sweeps on real local Dask clusters: the grid, scaling to each worker count, cells recorded once,
resume after the real `workbench sweep` process is killed, a worker killed during a cell, and the
watchdog. Cells are tiny (a 30k-row export, a few boosting rounds)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from distributed import Client, LocalCluster

from workbench import analysis as A
from workbench.cluster import close_cluster
from workbench.data.synth import synth_bitcoin_export
from workbench.errors import ConfigError
from workbench.report import write_report
from workbench.stores.runs import RunStore
from workbench.sweep import Cell, cell_pipeline, load_sweep, plan_cells, run_sweep, sweep_table
from workbench.stores.sweeps import ABANDONED, SweepStore

PHASES = {"read", "split", "rus", "dmatrix", "train", "predict", "metrics"}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep-export")
    synth_bitcoin_export(path, 30_000, positive_rate=0.02, rows_per_shard=10_000, seed=0)
    return path


def sweep_file(directory: Path, export: Path, *, name="small", axes=None, trials=2, rounds=15, timeout=120,
               retries=1, cluster=None, **extra) -> Path:
    spec = {
        "name": name,
        "pipeline": {
            "name": "cell",
            "data": {"path": str(export / "btc_addresses-*.parquet"), "target": "is_miner", "drop": ["address"]},
            "split": {"test_size": 0.2, "validation_size": 0.1, "seed": 0},
            "sampling": {"ratio": "1:1"},
            "model": {"params": {"max_depth": 3}, "num_boost_round": rounds, "early_stopping_rounds": 5},
        },
        "axes": axes or {"workers": [1, 2], "sampling.ratio": ["1:1", "1:4"]},
        "trials": trials,
        "timeout": timeout,
        "retries": retries,
        "cluster": cluster or {"type": "local", "threads_per_worker": 1, "memory_limit": "2GiB"},
        **extra,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# ---------------------------------------------------------------- the sweep file and its cells


def test_the_grid_and_one_at_a_time(tmp_path, export):
    path = sweep_file(tmp_path, export, axes={"sampling.ratio": ["1:1", "1:4"], "workers": [1, 2],
                                              "model.params.max_depth": [3, 5]}, trials=2, seeds=[7, 9])
    loaded = load_sweep(path)
    cells = plan_cells(loaded.spec)
    assert len(cells) == 2 * 2 * 2 * 2 and len({c.key for c in cells}) == len(cells)
    assert [c.workers for c in cells] == [1] * 8 + [2] * 8  # grouped by worker count: one scaling each
    assert list(cells[0].axes) == ["sampling.ratio", "workers", "model.params.max_depth"]  # the file's order
    assert {c.seed for c in cells if c.trial == 0} == {7} and {c.seed for c in cells if c.trial == 1} == {9}
    variant = cell_pipeline(loaded, cells[-1])
    assert (variant.sampling.ratio, variant.model.params["max_depth"], variant.sampling.seed, variant.model.seed) \
        == ("1:4", 5, 9, 9)
    assert variant.split.seed == 0 and variant.model.params == {"max_depth": 5}

    ofat = load_sweep(path, overrides={"design": "one-at-a-time", "baseline": {"workers": 1, "sampling.ratio": "1:1"}})
    combos = {tuple(c.axes.values()) for c in plan_cells(ofat.spec)}
    assert combos == {("1:1", 1, 3), ("1:4", 1, 3), ("1:1", 2, 3), ("1:1", 1, 5)}


def test_a_sweep_axis_registered_from_outside_the_package(tmp_path, export):
    from workbench.sweep import SWEEP_AXES, SweepAxis
    from workbench.sweep.plan import deep_set

    rounds = {"short": 5, "long": 50}

    def check(key, values):
        unknown = [v for v in values if v not in rounds]
        if unknown:
            raise ValueError(f"{key} is short or long, not {unknown[0]!r}")

    SWEEP_AXES.register("budget", SweepAxis(
        order=0, check=check, into_pipeline=lambda data, key, value: deep_set(data, "model.num_boost_round", rounds[value])))
    try:
        path = sweep_file(tmp_path, export, axes={"workers": [1, 2], "budget": ["short", "long"]}, trials=1)
        loaded = load_sweep(path)
        cells = plan_cells(loaded.spec)
        assert [(c.axes["budget"], c.workers) for c in cells] == [("short", 1), ("short", 2), ("long", 1), ("long", 2)]
        assert [cell_pipeline(loaded, c).model.num_boost_round for c in cells] == [5, 5, 50, 50]
        with pytest.raises(ConfigError) as info:
            load_sweep(path, overrides={"axes.budget": ["short", "huge"]})
        assert "budget is short or long, not 'huge'" in str(info.value) and "\n" not in str(info.value)
    finally:
        SWEEP_AXES.unregister("budget")
    assert "budget" not in SWEEP_AXES


def test_the_shipped_sweep_file_and_the_full_study_it_documents():
    from workbench.cli.sweep import _values

    repo = Path(__file__).resolve().parents[1]
    shipped = load_sweep(repo / "pipelines" / "rus_sweep.yaml")
    assert len(plan_cells(shipped.spec)) == 24 and shipped.pipeline.data.synth.rows == 500_000
    ratios = "1:1,1:5,1:10,1:25,1:50,1:100,1:500,1:1000,1:1500,1:2000"
    full = load_sweep(repo / "pipelines" / "rus_sweep.yaml", overrides={
        "axes.workers": _values("1,2,4,8,16", "--workers"), "axes.sampling.ratio": ratios.split(","), "trials": 20})
    cells = plan_cells(full.spec)
    assert len(cells) == 1000 and len({c.key for c in cells}) == 1000
    assert full.spec.baseline_cell() == {"workers": 1, "sampling.ratio": "1:1"}
    assert {c.seed for c in cells} == set(range(20))
    assert _values("4,6.5,x", "--axis") == [4, 6.5, "x"]


def test_cluster_axes_get_a_cluster_each_and_are_checked_against_the_machine(tmp_path, export):
    from workbench.errors import ClusterError
    from workbench.sweep.plan import cell_profile, cluster_key, groups

    from workbench import load_profile

    cores = os.cpu_count()
    path = sweep_file(tmp_path, export, axes={"workers": [1, 2], "cluster.threads_per_worker": [1, cores]}, trials=1)
    loaded = load_sweep(path)
    cells = plan_cells(loaded.spec)
    clusters = groups(cells, key=cluster_key)
    assert [len(g) for _, g in clusters] == [2, 2]  # one cluster per threads_per_worker, scaled 1 -> 2 in each
    profile = load_profile(cell_profile(loaded.spec.cluster, clusters[1][1][0]))
    assert profile.threads_per_worker == cores and profile.memory_limit == "2GiB"
    with pytest.raises(ClusterError, match=rf"workers 2 × {cores} thread\(s\) is more than this machine's"):
        run_sweep(path, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # refused before anything was written


@pytest.mark.parametrize("change, words", [
    ({"trails": 3}, "trails: unknown key (did you mean 'trials'?)"),
    ({"axes": {"sampling.ration": ["1:1"]}}, "axes.sampling.ration[0]: pipeline key sampling.ration: unknown key (did you mean 'ratio'?)"),
    ({"axes": {"sampling.ratio": ["1:1", "10:1"]}}, "axes.sampling.ratio[1]: pipeline key sampling.ratio: ratio '10:1'"),
    ({"axes": {"workers": [1, 1]}}, "axis 'workers' lists a value twice"),
    ({"axes": {"workers": [0, 2]}}, "workers must be whole numbers of at least 1"),
    ({"baseline": {"workers": 4}}, "baseline workers: 4 is not one of the axis values [1, 2]"),
    ({"seeds": [1, 2, 3]}, "seeds lists 3 seeds for 2 trials"),
    ({"timeout": "soon"}, "timeout 'soon' is not a positive duration"),
    ({"metrics": ["auc"]}, "unknown metric 'auc'"),
    ({"axes": {"workers": [1], "nodes": [1, 2]}}, "axes workers and nodes both size the cluster; keep one"),
    ({"axes": {"nodes": [0, 2]}}, "nodes must be whole numbers of at least 1"),
    ({"workers_per_node": 0}, "workers_per_node: Input should be greater than or equal to 1"),
])
def test_a_bad_sweep_file_is_one_line_naming_the_key(tmp_path, export, change, words):
    path = sweep_file(tmp_path, export)
    data = yaml.safe_load(path.read_text())
    data.update(change)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"{path}:")


def test_the_command_refuses_bad_input_before_writing_anything(tmp_path, export):
    path = sweep_file(tmp_path, export, axes={"workers": [1, 64]})
    proc = subprocess.run(["workbench", "sweep", str(path), "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: workers 64 × 1 thread(s) is more than this machine's")
    proc = subprocess.run(["workbench", "sweep", str(sweep_file(tmp_path, export, name="fresh")), "--resume",
                           "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "error: there is no sweep 'fresh' to resume" in proc.stderr, proc.stderr
    assert not (tmp_path / "runs").exists() or not SweepStore(tmp_path / "runs").list()


def test_nodes_replace_the_workers_axis_and_size_each_cell(tmp_path, export):
    path = sweep_file(tmp_path, export)
    loaded = load_sweep(path, overrides={"axes.nodes": [1, 3], "workers_per_node": 2})
    assert "workers" not in loaded.spec.axes and loaded.spec.axes["nodes"] == [1, 3]
    assert "workers" not in loaded.spec.baseline  # the replaced axis's baseline goes with it
    cells = plan_cells(loaded.spec)
    assert [c.size(loaded.spec.workers_per_node) for c in cells] == [2] * 4 + [6] * 4  # nodes × workers per node
    assert cells[0].label() == "ratio=1:1 nodes=1 trial=0" and cells[-1].label() == "ratio=1:4 nodes=3 trial=1"
    back = load_sweep(path, overrides={"axes.nodes": [1, 3], "axes.workers": [2]})
    assert back.spec.axes == {"sampling.ratio": ["1:1", "1:4"], "workers": [2]}


def test_a_nodes_sweep_on_a_local_cluster_is_refused_in_one_line(tmp_path, export):
    path = sweep_file(tmp_path, export)
    proc = subprocess.run(["workbench", "sweep", str(path), "--nodes", "1,2", "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: the nodes axis needs a batch-system profile, not local: a local cluster is one machine; "
        "give --cluster clusters/slurm.yaml (or sweep --workers instead)")
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- end to end on a local cluster


def test_a_small_sweep_end_to_end_on_the_local_cluster(tmp_path, export):
    path = sweep_file(tmp_path, export, baseline={"workers": 1, "sampling.ratio": "1:1"})
    runs = tmp_path / "runs"
    messages: list[str] = []
    seen_workers: list[int] = []

    def on_cell(cell, row):
        seen_workers.append(row["workers"])

    result = run_sweep(path, runs_dir=runs, progress=messages.append, on_cell=on_cell)
    assert (result.planned, result.succeeded, result.failed, result.skipped) == (8, 8, 0, 0)
    assert seen_workers == [1, 1, 1, 1, 2, 2, 2, 2]  # scaled to exactly each count before its cells
    assert any("cluster: 2 worker(s)" in m for m in messages)
    assert any("8 done, 0 running, 0 failed, 0 left" in m for m in messages)
    assert any("ETA" in m for m in messages if "1 done" in m)

    table = sweep_table("small", runs)
    assert len(table) == 8 and table["cell_key"].is_unique and (table["status"] == "succeeded").all()
    assert set(table["workers"]) == {1, 2} and set(table["sampling.ratio"]) == {"1:1", "1:4"}
    for phase in PHASES - {"read", "split"}:
        assert (table[f"{phase}_seconds"] > 0).all(), phase
    # reuse (the default): the first cell of each worker count reads and splits, the others reuse its split
    built = table["trial"].eq(0) & table["sampling.ratio"].eq("1:1")
    for phase in ("read", "split"):
        assert (table.loc[built, f"{phase}_seconds"] > 0).all() and (table.loc[~built, f"{phase}_seconds"] == 0).all()
    assert table["roc_auc"].between(0.6, 1).all() and table["pr_auc"].between(0, 1).all()
    rows = table.groupby("sampling.ratio")["rows"].agg(["min", "max"])
    assert (rows["min"] == rows["max"]).all() and rows.loc["1:4", "min"] > 2 * rows.loc["1:1", "min"]
    assert table.groupby("trial")["seed"].nunique().eq(1).all() and set(table["seed"]) == {0, 1}

    cells = SweepStore(runs).cells("small")
    store = RunStore(runs)
    for cell in cells:
        run = store.get(cell["run_id"])
        assert run.status == "succeeded" and run.data["sweep"]["cell"] == cell["cell_key"]
        assert run.cluster["workers"] == cell["workers"] and run.seeds["sampling"] == cell["seed"]
        assert cell["versions"] == run.versions and cell["versions"]["dask"] and cell["attempts"] == 1
        assert cell["versions"].get("xgboost") or cell["versions"].get("xgboost-cpu")

    # the same command again: nothing to run, nothing recorded twice
    again = run_sweep(path, runs_dir=runs)
    assert (again.skipped, again.succeeded, again.failed) == (8, 0, 0)
    assert len(SweepStore(runs).cells("small")) == 8 and len(store) == 8

    # one more trial adds only its cells
    more = run_sweep(path, runs_dir=runs, overrides={"trials": 3, "axes.workers": [2]})
    assert (more.planned, more.skipped, more.succeeded) == (6, 4, 2)
    recorded = SweepStore(runs).get("small")
    assert recorded["planned"] == 12 and recorded["spec"]["axes"]["workers"] == [1, 2]  # the union of the runs
    assert recorded["spec"]["baseline"] == {"workers": 1, "sampling.ratio": "1:1"}

    report = write_report("small", tmp_path / "report", runs_dir=runs)
    assert {p.name for p in report.figures} >= {"time_vs_size.png", "boxplots.png", "ernest_fit.png"}
    assert all(p.stat().st_size > 10_000 for p in report.figures)
    page = report.html.read_text()
    assert "Failed cells and faults" in page and "Every cell succeeded" in page and "workers = 1" in page

    proc = subprocess.run(["workbench", "recommend", "--rows", "5000", "--runs-dir", str(runs), "-w", "1,2,4"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Ernest model from sweep small: 10 cells" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("recommend: ")
    proc = subprocess.run(["workbench", "sweeps", "--runs-dir", str(runs)], capture_output=True, text=True, timeout=60)
    assert "small" in proc.stdout and " 10 " in proc.stdout


def test_a_changed_pipeline_under_the_same_name_is_refused(tmp_path, export):
    runs = tmp_path / "runs"
    path = sweep_file(tmp_path, export, axes={"workers": [1]}, trials=1)
    run_sweep(path, runs_dir=runs)
    changed = sweep_file(tmp_path, export, axes={"workers": [1]}, trials=1, rounds=30)
    with pytest.raises(ConfigError, match="was recorded with another pipeline or other seeds; give the changed sweep a new"):
        run_sweep(changed, runs_dir=runs)


# ---------------------------------------------------------------- killed sweep process, resumed


def recorded_cells(runs: Path) -> list[tuple]:
    if not (runs / "runs.sqlite").exists():
        return []
    with sqlite3.connect(runs / "runs.sqlite", timeout=30) as conn:
        try:
            return conn.execute("SELECT cell_key, run_id FROM sweep_cells").fetchall()
        except sqlite3.OperationalError:
            return []


def running_attempts(runs: Path) -> int:
    with sqlite3.connect(runs / "runs.sqlite", timeout=30) as conn:
        return conn.execute("SELECT count(*) FROM sweep_attempts WHERE status = 'running'").fetchone()[0]


def cell_in_flight(runs: Path) -> bool:
    """Exactly one attempt is running and its pipeline run is still running: the sweep process is
    inside the cell (waiting on its watchdog), not between two cells."""
    if not (runs / "runs.sqlite").exists():
        return False
    with sqlite3.connect(runs / "runs.sqlite", timeout=30) as conn:
        try:
            attempts = conn.execute("SELECT run_id FROM sweep_attempts WHERE status = 'running'").fetchall()
            if len(attempts) != 1 or attempts[0][0] is None:
                return False
            (status,) = conn.execute("SELECT status FROM runs WHERE id = ?", attempts[0]).fetchone()
        except sqlite3.OperationalError:
            return False
    return status == "running"


def freeze_inside_a_cell(proc: subprocess.Popen, runs: Path, *, recorded: int, log=lambda: "") -> None:
    """Stop ``proc`` (SIGSTOP) at a moment it is inside a cell, after ``recorded`` cells were recorded.

    The store is read while the process is stopped, so what it says is what a signal sent now finds
    (a transaction the process had not committed is rolled back if it is killed)."""
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, log()
        if len(recorded_cells(runs)) >= recorded and cell_in_flight(runs):
            proc.send_signal(signal.SIGSTOP)
            while psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED:
                time.sleep(0.01)
            if len(recorded_cells(runs)) >= recorded and cell_in_flight(runs):
                return
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)


def test_resume_after_the_sweep_process_is_killed_mid_way(tmp_path, export):
    path = sweep_file(tmp_path, export, name="killed", axes={"workers": [1], "sampling.ratio": ["1:1", "1:3"]}, trials=3)
    runs = tmp_path / "runs"
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(["workbench", "sweep", str(path), "--runs-dir", str(runs)], stdout=log,
                            stderr=subprocess.STDOUT, cwd=tmp_path)
    children: list[psutil.Process] = []
    try:
        freeze_inside_a_cell(proc, runs, recorded=2, log=(tmp_path / "first.log").read_text)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)  # no unwinding: the cell in flight is left running in the store
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = dict(recorded_cells(runs))
    assert 2 <= len(before) < 6
    assert running_attempts(runs) == 1
    gone, alive = psutil.wait_procs(children, timeout=30)  # the cluster's worker processes go with it
    assert not alive, alive

    resumed = subprocess.run(["workbench", "sweep", str(path), "--resume", "--runs-dir", str(runs)],
                             capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(before)} of 6 cells recorded before; 1 attempt(s) left running by a stopped sweep marked " \
           f"abandoned; {6 - len(before)} to run" in resumed.stderr, resumed.stderr
    after = recorded_cells(runs)
    keys = [key for key, _ in after]
    assert len(keys) == 6 and len(set(keys)) == 6  # none missing, none twice
    assert {key: run for key, run in after if key in before} == before  # recorded cells were not run again
    attempts = SweepStore(runs).attempts("killed")
    [abandoned] = [a for a in attempts if a["status"] == "abandoned"]
    assert abandoned["fault"] == ABANDONED and abandoned["cell_key"] not in before
    left = RunStore(runs).get(abandoned["run_id"])
    assert left.status == "failed" and left.error == ABANDONED
    assert not RunStore(runs).list(status="running")
    assert "6 cells; " in resumed.stdout and "recorded before" in resumed.stdout


def test_sigterm_stops_the_sweep_cleanly_and_closes_the_cell_in_flight(tmp_path, export):
    path = sweep_file(tmp_path, export, name="stopped", axes={"workers": [1]}, trials=4)
    runs = tmp_path / "runs"
    proc = subprocess.Popen(["workbench", "sweep", str(path), "--runs-dir", str(runs)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        freeze_inside_a_cell(proc, runs, recorded=1)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)  # scancel, kill: unwinds like Ctrl-C, once the process runs again
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert not psutil.wait_procs(children, timeout=30)[1]
    attempts = SweepStore(runs).attempts("stopped")
    statuses = [a["status"] for a in attempts]
    assert statuses.count("abandoned") == 1 and set(statuses) == {"succeeded", "abandoned"}, statuses
    [stopped] = [a for a in attempts if a["status"] == "abandoned"]
    assert stopped["fault"] == ABANDONED and stopped["cell_key"] not in dict(recorded_cells(runs))
    run = RunStore(runs).get(stopped["run_id"])
    assert run.status == "failed" and run.error.startswith("interrupted: the sweep was stopped")
    assert not RunStore(runs).list(status="running")


# ---------------------------------------------------------------- faults: a killed worker, the watchdog


@pytest.fixture(scope="module")
def two_workers():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="2GiB", host="127.0.0.1",
                           dashboard_address="127.0.0.1:0")
    try:
        with Client(cluster) as client:
            yield client
    finally:  # its tests kill workers: closed the way the workbench closes its own clusters
        close_cluster(cluster)


def test_a_worker_killed_during_a_cell_is_recorded_and_the_sweep_completes(tmp_path, export, two_workers):
    client = two_workers
    path = sweep_file(tmp_path, export, name="lost-worker", axes={"workers": [2], "model.num_boost_round": [1500, 10]},
                      trials=1, timeout=180)
    data = yaml.safe_load(path.read_text())
    data["pipeline"]["model"].update(early_stopping_rounds=None, params={"max_depth": 6, "eta": 0.01})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    killed: list[int] = []

    def kill_a_worker():
        pids = client.run(os.getpid)
        pid = sorted(pids.values())[0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    def progress(message: str) -> None:
        if "num_boost_round=1500 trial=0: running" in message and not killed:
            threading.Timer(2.0, kill_a_worker).start()

    result = run_sweep(path, client=client, runs_dir=tmp_path / "runs", progress=progress)
    assert killed
    assert (result.succeeded, result.failed) == (2, 0)
    [first, second] = SweepStore(tmp_path / "runs").cells("lost-worker")
    assert first["status"] == "succeeded" and first["faults"], first
    assert any("lost" in fault for fault in first["faults"]), first["faults"]
    assert second["status"] == "succeeded" and not second["faults"]
    assert len(client.scheduler_info()["workers"]) == 2
    table = A.load_results("lost-worker", runs_dir=tmp_path / "runs")
    assert "lost" in table.attrs["all_cells"]["faults"].iloc[0]


def test_the_watchdog_cancels_a_cell_that_runs_too_long_and_the_sweep_goes_on(tmp_path, export, two_workers):
    client = two_workers
    path = sweep_file(tmp_path, export, name="watchdog",
                      axes={"workers": [2], "model.num_boost_round": [100000, 5]}, trials=1, timeout=25, retries=0)
    data = yaml.safe_load(path.read_text())
    data["pipeline"]["model"]["early_stopping_rounds"] = None
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    started = time.monotonic()
    result = run_sweep(path, client=client, runs_dir=tmp_path / "runs")
    assert time.monotonic() - started < 120  # 100,000 rounds would take far longer
    assert (result.succeeded, result.failed) == (1, 1)
    slow, quick = SweepStore(tmp_path / "runs").cells("watchdog")
    assert slow["status"] == "failed" and slow["error"].startswith("timed out after 25s (watchdog)")
    assert quick["status"] == "succeeded" and quick["metrics"]["roc_auc"] > 0.5
    run = RunStore(tmp_path / "runs").get(slow["run_id"])
    assert run.status == "failed" and "timed out after 25s" in run.error
    [attempt] = [a for a in SweepStore(tmp_path / "runs").attempts("watchdog") if a["cell_key"] == slow["cell_key"]]
    assert attempt["status"] == "failed" and "watchdog" in attempt["fault"]
    assert len(client.scheduler_info()["workers"]) == 2
    # a resumed sweep leaves the failed cell alone
    assert run_sweep(path, client=client, runs_dir=tmp_path / "runs").skipped == 2


def test_bad_input_in_a_cell_fails_it_without_retries_and_retry_failed_replaces_it(tmp_path, export, two_workers):
    path = sweep_file(tmp_path, export, name="impossible", axes={"workers": [2], "sampling.ratio": ["1:1", "1:100000"]},
                      trials=1, retries=2)
    runs = tmp_path / "runs"
    result = run_sweep(path, client=two_workers, runs_dir=runs)
    assert (result.succeeded, result.failed) == (1, 1)
    failed = [c for c in SweepStore(runs).cells("impossible") if c["status"] == "failed"][0]
    assert failed["attempts"] == 1 and "choose a ratio of at most" in failed["error"]  # a SamplingError: no retry
    again = run_sweep(path, client=two_workers, runs_dir=runs, retry_failed=True)
    assert (again.skipped, again.succeeded, again.failed) == (1, 0, 1)
    cells = SweepStore(runs).cells("impossible")
    assert len(cells) == 2 and len({c["cell_key"] for c in cells}) == 2
    attempts = [a for a in SweepStore(runs).attempts("impossible") if a["cell_key"] == failed["cell_key"]]
    assert [a["attempt"] for a in attempts] == [1, 2] and {a["status"] for a in attempts} == {"failed"}
    assert Cell({"workers": 2}, 0, 0).key == "workers=2;trial=0"
