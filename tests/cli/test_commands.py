"""Every branch of the commands the cli package owns, through the real entry point: ``run`` (own
cluster, --cluster/--workers, --connect to an address and to `serve`'s connection file), ``predict``
(run id, model file, --target, --drop, --overwrite, its errors), ``data synth``, ``runs`` (list,
--status, --limit, show, unknown and ambiguous ids), ``cluster show/script`` (local and slurm),
``serve`` until Ctrl-C, ``--help`` of every command, an unknown command.

Commands that start no cluster run in this process through ``workbench.cli.main``; the others are
real subprocesses of the console script, on a 20,000-row export the first run generates.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest
import typer

from workbench.cli import app
from workbench.stores.runs import RunStore

from .helpers import RUN_ID, SAY_LINE, SMALL_PROFILE, assert_one_line_error, in_process, small_pipeline_text, wait_for, workbench

REPO = Path(__file__).resolve().parents[2]
SHARD = "data/small/btc_addresses-{:012d}.parquet"


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """``workbench ARGS`` in this process, from ``tmp_path`` (or ``cwd=``): its exit code, stdout and stderr."""
    return in_process(capsys, monkeypatch, tmp_path)


# ---------------------------------------------------------------- the command tree


def command_paths(command=None, path=()) -> list[tuple[str, ...]]:
    command = command or typer.main.get_command(app)
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*path, name))
    return paths


def test_every_command_has_help(cli):
    paths = command_paths()
    assert {("run",), ("predict",), ("serve",), ("data", "synth"), ("runs", "show"), ("cluster", "show"),
            ("cluster", "script")} <= set(paths)
    for path in paths:
        proc = cli(*path, "--help")
        assert proc.returncode == 0, (path, proc.stderr)
        assert re.search(rf"Usage: {' '.join(('workbench', *path))} \[OPTIONS\]", proc.stdout), (path, proc.stdout)
        assert proc.stderr == ""


@pytest.mark.parametrize("group", [(), ("data",), ("cluster",)])
def test_a_group_without_a_command_shows_its_help_as_a_usage_error(cli, group):
    proc = cli(*group)
    assert proc.returncode == 2
    assert re.search(rf"Usage: {' '.join(('workbench', *group))} \[OPTIONS\] COMMAND", proc.stdout), proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (("nosuch",), "No such command 'nosuch'"),
    (("runs", "nosuch"), "No such command 'nosuch'"),
    (("run", "x.yaml", "--nosuch"), "No such option: --nosuch"),
    (("cluster", "show", "local", "--workers", "many"), "Invalid value for '--workers' / '-w'"),
])
def test_usage_errors_exit_2_with_click_s_message(cli, args, message):
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert "run with --debug" not in proc.stderr


# ---------------------------------------------------------------- cluster show / script


def test_cluster_show_defaults_to_local_and_takes_workers(cli):
    shown = json.loads(cli("cluster", "show").stdout)
    assert shown["type"] == "local"
    proc = cli("cluster", "show", "local", "--workers", "3")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_workers"] == 3


def test_cluster_show_a_slurm_profile_by_name_and_by_path(cli, tmp_path):
    by_name = cli("cluster", "show", "slurm", cwd=REPO)  # a name in ./clusters/
    assert by_name.returncode == 0, by_name.stderr
    shown = json.loads(by_name.stdout)
    assert (shown["type"], shown["queue"], shown["n_workers"]) == ("slurm", "debug", 2)
    by_path = cli("cluster", "show", REPO / "clusters" / "slurm.yaml", "-w", "4")
    assert by_path.returncode == 0, by_path.stderr
    assert json.loads(by_path.stdout) == {**shown, "n_workers": 4}


def test_cluster_script_of_a_slurm_profile(cli):
    proc = cli("cluster", "script", "slurm", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("#!/usr/bin/env bash")
    assert "#SBATCH -p debug" in proc.stdout and "#SBATCH --mem=2G" in proc.stdout
    assert "distributed.cli.dask_worker" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (("cluster", "script", "local"), "error: a local profile submits no job script; give a slurm, pbs, sge or lsf profile"),
    (("cluster", "show", "nosuch"), "error: unknown cluster profile 'nosuch'; give a profile file path or one of: local"),
    (("data", "synth", "out", "--workers", "0"), "error: --workers 0 is not a positive number; ask for 1 or more workers"),
    (("cluster", "script", "nosuch.yaml"), "error: "),
])
def test_cluster_errors_are_one_line(cli, args, message):
    proc = cli(*args)
    assert assert_one_line_error(proc).startswith(message)
    assert proc.stdout == ""


# ---------------------------------------------------------------- runs on an empty store


def test_runs_on_an_empty_store(cli, tmp_path):
    proc = cli("runs", "--runs-dir", "empty")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"no runs recorded in {Path('empty') / 'runs.sqlite'}\n"
    line = assert_one_line_error(cli("runs", "show", "2024", "--runs-dir", "empty"))
    assert line.startswith("error: no run '2024' in ") and line.endswith("; list the recorded runs with `workbench runs`")


# ---------------------------------------------------------------- runs recorded by the console script


@pytest.fixture(scope="module")
def store(tmp_path_factory, client):
    """Three runs in R, oldest first: ``run --cluster local --workers 1`` (which generates the export),
    then ``run --connect ADDRESS`` twice at once: one succeeds, one fails (no such target)."""
    cwd = tmp_path_factory.mktemp("cli-runs")
    (cwd / "small.yaml").write_text(small_pipeline_text())
    (cwd / "bad.yaml").write_text(small_pipeline_text("bad", target="is_whale"))
    (cwd / "one-worker.yaml").write_text(SMALL_PROFILE)
    own = workbench("run", "small.yaml", "--cluster", "local", "--workers", 1, "--runs-dir", "R", cwd=cwd)
    assert own.returncode == 0, own.stderr
    connect = ("--connect", client.scheduler.address, "--runs-dir", "R")
    with ThreadPoolExecutor(max_workers=2) as pool:
        connected = pool.submit(workbench, "run", "small.yaml", *connect, cwd=cwd)
        failed = pool.submit(workbench, "run", "bad.yaml", *connect, cwd=cwd)
        connected, failed = connected.result(), failed.result()
    assert connected.returncode == 0, connected.stderr
    records = {r.name + ("-connected" if r.cluster.get("workers") == 2 else ""): r for r in RunStore(cwd / "R").list()}
    return SimpleNamespace(cwd=cwd, runs=cwd / "R", own=own, connected=connected, failed=failed,
                           records=records, address=client.scheduler.address)


def first_line_id(proc) -> str:
    return re.match(rf"run ({RUN_ID}) \(small\) succeeded$", proc.stdout.splitlines()[0]).group(1)


def test_run_on_its_own_cluster_with_cluster_and_workers_options(store):
    record = RunStore(store.runs).get(first_line_id(store.own))
    assert record.status == "succeeded"
    assert record.cluster["profile"] == "local" and record.cluster["workers"] == 1
    log = store.own.stderr
    assert re.search(rf"^{SAY_LINE}pipeline small \(small\.yaml\)$", log, re.MULTILINE), log
    assert re.search(rf"^{SAY_LINE}.*generating a synthetic export of 20,000 rows", log, re.MULTILINE), log
    assert re.search(rf"^{SAY_LINE}cluster: 1 worker\(s\)", log, re.MULTILINE), log
    assert sorted(p.name for p in (store.cwd / "data" / "small").glob("*.parquet")) == [
        Path(SHARD.format(i)).name for i in range(4)]


def test_run_on_a_threads_only_local_profile(store):
    """processes: false runs the workers as threads of the command itself, still on loopback TCP."""
    (store.cwd / "threads.yaml").write_text("type: local\nn_workers: 1\nprocesses: false\n")
    done = workbench("run", "small.yaml", "--cluster", "threads.yaml", "--runs-dir", "T", cwd=store.cwd)
    assert done.returncode == 0, done.stderr
    [record] = RunStore(store.cwd / "T").list()
    assert record.status == "succeeded" and record.cluster["workers"] == 1
    assert record.metrics["roc_auc"] == RunStore(store.runs).get(first_line_id(store.own)).metrics["roc_auc"]


def test_run_connects_to_a_running_scheduler(store):
    record = RunStore(store.runs).get(first_line_id(store.connected))
    assert record.status == "succeeded"
    assert record.cluster["workers"] == 2  # the test session's cluster, not one of its own
    assert "generating" not in store.connected.stderr  # the first run's export is reused
    assert re.search(rf"^{SAY_LINE}cluster: 2 worker\(s\)", store.connected.stderr, re.MULTILINE)


def test_a_failed_run_is_one_line_and_recorded(store):
    line = assert_one_line_error(store.failed)
    assert line.startswith("error: target column 'is_whale' is not in the export")
    [record] = RunStore(store.runs).list(status="failed")
    assert record.name == "bad" and record.error == line[len("error: "):]


def listed(proc) -> list[list[str]]:
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split()[:3] == ["id", "name", "status"]
    return [row.split()[:3] for row in rows]


def test_runs_lists_newest_first_and_filters(cli, store):
    everything = RunStore(store.runs).list()
    assert len(everything) == 3
    rows = listed(cli("runs", "--runs-dir", store.runs))
    assert rows == [[r.id, r.name, r.status] for r in everything]
    assert sorted(status for _, _, status in rows) == ["failed", "succeeded", "succeeded"]
    assert listed(cli("runs", "--runs-dir", store.runs, "--status", "failed")) == [
        [r.id, "bad", "failed"] for r in everything if r.status == "failed"]
    assert listed(cli("runs", "--runs-dir", store.runs, "--limit", "1")) == [rows[0]]
    assert cli("runs", "--runs-dir", store.runs, "--status", "running").stdout.startswith("no runs recorded in ")


def test_runs_show_a_failed_run_with_the_store_given_to_the_group(cli, store):
    [failed] = RunStore(store.runs).list(status="failed")
    proc = cli("runs", "--runs-dir", store.runs, "show", failed.id)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"run {failed.id} (bad) failed: {failed.error}"
    assert re.search(r"^  created +\S+  finished \S+", proc.stdout, re.MULTILINE), proc.stdout
    assert "ROC AUC" not in proc.stdout


def test_runs_show_an_ambiguous_prefix_is_one_line(cli, store):
    prefix = RunStore(store.runs).list()[0].id[:2]  # the century: every run has it
    line = assert_one_line_error(cli("runs", "show", prefix, "--runs-dir", store.runs))
    assert line.startswith(f"error: run id '{prefix}' is ambiguous: it matches ")
    assert line.endswith("; give more characters of the id")


# ---------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def predictions(store):
    """``workbench predict`` in every form, each on the one-worker cluster of a profile file, two at a time."""
    cwd, run_id = store.cwd, first_line_id(store.own)
    model = RunStore(store.runs).get(run_id)
    model_file = Path(model.path) / model.artifacts["model"]
    [failed] = RunStore(store.runs).list(status="failed")
    pq.write_table(pq.read_table(cwd / SHARD.format(1)).drop(["is_miner"]), cwd / "unlabelled.parquet")
    common = ("--runs-dir", "R", "--cluster", "one-worker.yaml")
    cases = {
        "by_id": ("predict", run_id[:17], SHARD.format(0), "--out", "by-id", *common),
        "unlabelled": ("predict", model_file, "unlabelled.parquet", "--drop", "address", "-o", "unlabelled", *common),
        "by_file": ("predict", model_file, SHARD.format(0), "--target", "is_miner", "--drop", "address",
                   "-o", "by-file", *common),
        "failed": ("predict", failed.id, SHARD.format(0), "-o", "failed", *common),
        "wrong_width": ("predict", model_file, SHARD.format(0), "-o", "wide", *common),
        "no_data": ("predict", run_id, "nothere/*.parquet", "-o", "none", *common),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(workbench, *args, cwd=cwd) for name, args in cases.items()}
        done = {name: future.result() for name, future in futures.items()}
    # the same OUT again: refused without --overwrite, replaced with it
    done["again"] = workbench(*cases["by_id"], cwd=cwd)
    done["overwrite"] = workbench(*cases["by_id"], "--overwrite", cwd=cwd)
    return SimpleNamespace(cwd=cwd, id=run_id, model=model_file, failed_record=failed, **done)


def auc(proc) -> float:
    return float(re.search(r"^  ROC AUC +(0\.\d{4})  PR AUC 0\.\d{4}  \(exact, the data has labels\)$",
                           proc.stdout, re.MULTILINE).group(1))


def test_predict_by_run_id_prefix(predictions):
    proc = predictions.by_id
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"scored 5,000 rows with run {predictions.id} ({predictions.model})"
    assert lines[1] == "  written to    by-id/  (columns: row, score, is_miner)"
    scores = pd.read_parquet(predictions.cwd / "by-id")
    assert len(scores) == 5_000 and list(scores.columns) == ["score", "is_miner"]
    assert 0.5 < auc(proc) <= 1
    assert re.search(rf"^{SAY_LINE}scoring {re.escape(SHARD.format(0))} with {predictions.id[:17]}$",
                     proc.stderr, re.MULTILINE), proc.stderr


def test_predict_with_a_model_file_on_unlabelled_data(predictions):
    proc = predictions.unlabelled
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"scored 5,000 rows with {predictions.model}",
        "  written to    unlabelled/  (columns: row, score)",
    ]
    assert list(pd.read_parquet(predictions.cwd / "unlabelled").columns) == ["score"]


def test_predict_with_a_model_file_target_and_drop_scores_like_the_run(predictions):
    proc = predictions.by_file
    assert proc.returncode == 0, proc.stderr
    assert "  written to    by-file/  (columns: row, score, is_miner)" in proc.stdout.splitlines()
    assert auc(proc) == auc(predictions.by_id)
    by_file, by_id = (pd.read_parquet(predictions.cwd / d) for d in ("by-file", "by-id"))
    assert (by_file["score"].to_numpy() == by_id["score"].to_numpy()).all()


def test_predict_into_a_used_directory_needs_overwrite(predictions):
    assert "--overwrite" in assert_one_line_error(predictions.again)
    proc = predictions.overwrite
    assert proc.returncode == 0, proc.stderr
    assert auc(proc) == auc(predictions.by_id)
    assert len(pd.read_parquet(predictions.cwd / "by-id")) == 5_000


def test_predict_errors_are_one_line(predictions):
    failed = assert_one_line_error(predictions.failed)
    assert failed == (f"error: run {predictions.failed_record.id} failed: it has no trained model; "
                      "name a run that succeeded (workbench runs)")
    wide = assert_one_line_error(predictions.wrong_width)
    assert re.match(rf"error: {re.escape(str(predictions.model))} takes \d+ features but the data has \d+ ", wide)
    assert "--drop the extra columns" in wide
    assert assert_one_line_error(predictions.no_data).startswith("error: no Parquet files found at 'nothere/*.parquet'")
    for name in ("failed", "wide", "none"):
        assert not list((predictions.cwd / name).glob("*.parquet"))


# ---------------------------------------------------------------- data synth


def test_data_synth_options_and_overwrite(tmp_path):
    (tmp_path / "one-worker.yaml").write_text(SMALL_PROFILE)
    args = ("data", "synth", "out", "--positive-rate", "0.1", "--signal", "0", "--table", "t",
            "--cluster", "one-worker.yaml")
    first = workbench(*args, "-n", "6000", "--rows-per-shard", "2000", "--seed", "3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert re.fullmatch(r"3 shards in out/ \(\S*out/t-000000000000\.parquet … t-000000000002\.parquet\)\n", first.stdout)
    assert re.search(rf"^{SAY_LINE}generating 6,000 rows into out/$", first.stderr, re.MULTILINE), first.stderr
    frame = pd.read_parquet(tmp_path / "out")
    assert len(frame) == 6_000 and frame["is_miner"].mean() == pytest.approx(0.1, abs=0.02)
    again = workbench(*args, "-n", "4000", "--rows-per-shard", "2000", "--seed", "4", "--overwrite", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.parquet")) == ["t-000000000000.parquet", "t-000000000001.parquet"]
    replaced = pd.read_parquet(tmp_path / "out")
    assert len(replaced) == 4_000
    assert set(replaced["address"]).isdisjoint(frame["address"])  # another seed, other rows


# ---------------------------------------------------------------- serve




def test_serve_a_run_through_its_connection_file_then_ctrl_c(store, tmp_path):
    out, err, connection = tmp_path / "serve.out", tmp_path / "serve.err", tmp_path / "conn" / "serve.json"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            ["workbench", "serve", "--cluster", "local", "--workers", "1", "--runs-dir", str(tmp_path / "S"),
             "--connection-file", str(connection)],
            stdout=stdout, stderr=stderr, cwd=tmp_path,
        )
    try:
        banner = wait_for(out, "press Ctrl-C", proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        info = json.loads(connection.read_text())
        assert re.search(rf"^scheduler +{re.escape(info['address'])}$", banner, re.MULTILINE), banner
        assert f"--connect {connection}" in banner
        assert connection.stat().st_mode & 0o777 == 0o600
        run = workbench("run", "small.yaml", "--connect", connection, "--runs-dir", tmp_path / "R", cwd=store.cwd)
        assert run.returncode == 0, run.stderr
        record = RunStore(tmp_path / "R").get(first_line_id(run))
        assert record.cluster["workers"] == 1  # serve's one worker
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "shutting down: closing the cluster" in out.read_text()
    log = err.read_text()
    assert re.search(rf"^{SAY_LINE}starting the local cluster with 1 worker\(s\)$", log, re.MULTILINE), log
    assert re.search(rf"^{SAY_LINE}stopped$", log, re.MULTILINE), log
    assert "Traceback" not in log
    assert not connection.exists()
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"processes left behind: {alive}"
