"""The MLflow export (docs/mlflow.md), read back through MLflow's own client, ``MlflowClient``.

Real runs made by the real commands on a 6,000-row export: one ``workbench run`` of an XGBoost
pipeline (8 boosting rounds) whose ``tracking:`` section exports it when it ends, and one
``workbench sweep`` of two cells of an incremental SGD pipeline (3 epochs). ``workbench runs export``
writes them into a SQLite tracking store, and every field is read back: the parameters, the
per-round and per-epoch metric histories with their steps, the final metrics and their intervals,
the tags, the artifacts with their sizes and bytes, the sweep's parent run and its children, and a
second export that adds nothing. A real ``mlflow server`` on loopback takes an export over HTTP, and
headless Chromium opens the run's page in MLflow's UI. Bad input through the real command: one
``error:`` line, exit 2, no traceback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from workbench.stores.mlflow_fields import run_metrics
from workbench.stores.runs import RunStore
from workbench.stores.sweeps import SweepStore

from ..cli.helpers import RUN_ID, assert_one_line_error, in_process, pipeline_text, workbench
from ..data.remote_servers import free_port
from ..test_dashboard import chromium
from ..train.test_xgb import _write_export

ROUNDS, EPOCHS = 8, 3
SERVER_START = 240  # seconds for `mlflow server` to answer /health on a busy 2-core machine


def sweep_spec(export: Path) -> dict:
    """Two cells (ratios 1:1 and 1:4) of an incremental SGD pipeline: exact test AUCs after every epoch."""
    return {
        "name": "mini",
        "pipeline": {
            "name": "cell",
            "data": {"path": str(export), "target": "is_miner", "drop": ["address"]},
            "split": {"test_size": 0.2, "validation_size": 0, "seed": 0},
            "sampling": {"ratio": "1:1"},
            "model": {"type": "incremental", "estimator": "SGDClassifier", "params": {"loss": "log_loss"},
                      "epochs": EPOCHS},
        },
        "axes": {"workers": [1], "sampling.ratio": ["1:1", "1:4"]},
        "trials": 1,
        "timeout": 120,
        "retries": 0,
        "cluster": {"type": "local", "threads_per_worker": 1, "memory_limit": "2GiB"},
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One tracked XGBoost run and a two-cell sweep, recorded in one run store."""
    cwd = tmp_path_factory.mktemp("mlflow-export")
    export = _write_export(cwd / "export", shards=2, rows=3_000, positive_rate=0.05)
    runs = cwd / "runs"
    tracked = f"sqlite:///{cwd / 'tracked.db'}"
    (cwd / "tracked.yaml").write_text(pipeline_text(export, name="mlx", ratio="1:3", rounds=ROUNDS)
                                      + f"tracking:\n  mlflow: {tracked}\n  experiment: tracked-runs\n")
    run = workbench("run", "tracked.yaml", "--runs-dir", runs, cwd=cwd)
    assert run.returncode == 0, run.stderr[-3000:]
    run_id = re.match(rf"run ({RUN_ID}) \(mlx\) succeeded", run.stdout).group(1)
    (cwd / "mini.yaml").write_text(yaml.safe_dump(sweep_spec(export), sort_keys=False))
    sweep = workbench("sweep", "mini.yaml", "--runs-dir", runs, cwd=cwd)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    return SimpleNamespace(cwd=cwd, runs=runs, run=run, run_id=run_id, tracked=tracked,
                           record=RunStore(runs).get(run_id))


@pytest.fixture(scope="module")
def exported(work):
    """``runs export --sweep mini`` then ``runs export RUN_ID`` into one SQLite tracking store."""
    uri = f"sqlite:///{work.cwd / 'mlflow.db'}"
    sweep = workbench("runs", "export", "--sweep", "mini", "--mlflow", uri, "--runs-dir", work.runs, cwd=work.cwd)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    run = workbench("runs", "export", work.run_id, "--mlflow", uri, "--runs-dir", work.runs, cwd=work.cwd)
    assert run.returncode == 0, run.stderr[-3000:]
    client = MlflowClient(uri)
    (mlrun,) = client.search_runs([client.get_experiment_by_name("mlx").experiment_id])  # the run, once
    return SimpleNamespace(uri=uri, client=client, sweep=sweep, run=run, mlrun=mlrun,
                           histories=histories(client, mlrun))


def histories(client: MlflowClient, run) -> dict[str, list[tuple[int, float]]]:
    """Every metric of the MLflow run as its (step, value) pairs, by step."""
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics}


def listed(client: MlflowClient, run_id: str, directory: str | None = None) -> dict[str, int]:
    """Every artifact file of the MLflow run and its size, as MLflow lists them."""
    out = {}
    for entry in client.list_artifacts(run_id, directory):
        out.update(listed(client, run_id, entry.path) if entry.is_dir else {entry.path: entry.file_size})
    return out


def on_disk(record) -> dict[str, int]:
    """Every file of the run's artifacts (a directory artifact: each file in it) and its size."""
    root, out = Path(record.path), {}
    for relative in set(record.artifacts.values()):
        path = root / relative
        for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
            out[file.relative_to(root).as_posix()] = file.stat().st_size
    return out


def leaves(tree: dict, prefix: str = ""):
    """The pipeline file as dotted keys and the text MLflow keeps of each value: lists and empty
    sections as JSON, the rest as ``str`` gives it."""
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{key}.")
        else:
            yield key, json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def millis(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp() * 1000)


# ---------------------------------------------------------------- one run, every field


def test_the_export_prints_one_line_per_run(work, exported):
    run = exported.mlrun
    line = (rf"run {work.run_id} -> MLflow run {run.info.run_id}, new \((\d+) params, (\d+) metric values, "
            rf"(\d+) artifacts\), experiment 'mlx': {re.escape(exported.uri)}")
    assert re.fullmatch(line, exported.run.stdout.strip()), exported.run.stdout
    params, values, artifacts = map(int, re.fullmatch(line, exported.run.stdout.strip()).groups())
    assert params == len(run.data.params)
    assert values == sum(len(points) for points in exported.histories.values())
    assert artifacts == len(on_disk(work.record))


def test_the_parameters_are_the_pipeline_file(work, exported):
    params = exported.mlrun.data.params
    spec = {key: value for key, value in work.record.spec.items() if key != "name"}
    assert params == dict(leaves(spec))
    assert (params["model.params.max_depth"], params["model.params.eta"], params["model.num_boost_round"],
            params["model.early_stopping_rounds"], params["model.seed"]) == ("4", "0.3", str(ROUNDS), "5", "0")
    assert (params["sampling.ratio"], params["sampling.seed"], params["split.test_size"], params["split.seed"]) \
        == ("1:3", "0", "0.2", "0")
    assert (params["data.target"], params["data.drop"], params["metrics.at_k"]) == ("is_miner", '["address"]',
                                                                                   "[100, 0.01]")
    assert (params["tracking.mlflow"], params["tracking.experiment"]) == (work.tracked, "tracked-runs")


def test_the_per_round_metrics_keep_their_rounds_as_steps(work, exported):
    valid = work.record.history["valid"]
    assert sorted(valid) == ["auc", "aucpr", "logloss"] and len(valid["auc"]) == ROUNDS
    for name, values in valid.items():
        assert exported.histories[f"valid.{name}"] == list(enumerate(values)), name


def test_the_final_metrics_and_their_intervals(work, exported):
    m, timings = work.record.metrics, work.record.timings
    final = {
        "roc_auc": m["roc_auc"], "roc_auc_ci_low": m["roc_auc_ci"][0], "roc_auc_ci_high": m["roc_auc_ci"][1],
        "roc_auc_se": m["roc_auc_se"], "pr_auc": m["pr_auc"], "pr_auc_ci_low": m["pr_auc_ci"][0],
        "pr_auc_ci_high": m["pr_auc_ci"][1], "level": 0.95, "threshold": 0.5, "precision": m["precision"],
        "recall": m["recall"], "f1": m["f1"], "brier": m["brier"], "log_loss": m["log_loss"], "tn": m["tn"],
        "fp": m["fp"], "fn": m["fn"], "tp": m["tp"], "n": m["n"], "n_positive": m["n_positive"],
        "corrected.precision": m["corrected"]["precision"], "corrected.tp": m["corrected"]["tp"],
        "at_k.0.k": 100, "at_k.0.precision": m["at_k"][0]["precision"], "at_k.1.recall": m["at_k"][1]["recall"],
        "seconds.train": timings["train"], "seconds.read": timings["read"],
    }
    for key, value in final.items():
        assert exported.histories[key] == [(0, float(value))], key
    low, high = exported.mlrun.data.metrics["roc_auc_ci_low"], exported.mlrun.data.metrics["roc_auc_ci_high"]
    assert low < exported.mlrun.data.metrics["roc_auc"] < high
    curves = m["curves"]  # a curve: one metric, its points as steps
    assert exported.histories["curves.roc.fpr"] == list(enumerate(curves["roc"]["fpr"]))
    assert exported.histories["curves.pr.precision"] == list(enumerate(curves["pr"]["precision"]))
    # and nothing but what the record holds: every metric MLflow has is one of the record's, with its steps
    assert exported.histories == {key: sorted(points) for key, points in run_metrics(work.record).items()}


def test_the_tags_name_the_run_its_versions_seeds_cluster_and_hosts(work, exported):
    record, run = work.record, exported.mlrun
    tags = run.data.tags
    assert (tags["workbench.run_id"], tags["workbench.kind"], tags["workbench.name"], tags["workbench.status"]) \
        == (work.run_id, "run", "mlx", "succeeded")
    assert run.info.run_name == tags["mlflow.runName"] == work.run_id
    assert (tags["workbench.created_at"], tags["workbench.finished_at"], tags["workbench.path"]) \
        == (record.created_at, record.finished_at, record.path)
    assert tags["workbench.model_type"] == "xgboost" and "workbench.error" not in tags
    assert tags["workbench.host"] == record.process["host"] == socket.gethostname()
    assert {"python", "workbench", "dask", "distributed", "xgboost-cpu", "scikit-learn"} <= set(record.versions)
    for name, version in record.versions.items():
        assert tags[f"version.{name}"] == str(version), name
    assert (tags["seed.split"], tags["seed.sampling"], tags["seed.model"]) == ("0", "0", "0")
    assert tags["cluster.hosts"] == ",".join(record.cluster["hosts"]) and record.cluster["hosts"]
    assert (tags["cluster.profile"], tags["cluster.workers"], tags["cluster.threads"]) \
        == ("local", str(record.cluster["workers"]), str(record.cluster["threads"]))
    assert (run.info.status, run.info.start_time, run.info.end_time) \
        == ("FINISHED", millis(record.created_at), millis(record.finished_at))


def test_the_artifacts_are_every_file_of_the_run_at_its_size(work, exported, tmp_path):
    files = on_disk(work.record)
    assert {"model.json", "importances.csv", "importances.png", "roc.png", "pr.png", "calibration.png",
            "confusion.png"} <= set(files)
    assert [name for name in files if name.startswith("test_scores/")]
    assert listed(exported.client, exported.mlrun.info.run_id) == files
    for name in ("model.json", "importances.csv"):
        downloaded = exported.client.download_artifacts(exported.mlrun.info.run_id, name, str(tmp_path))
        assert Path(downloaded).read_bytes() == (Path(work.record.path) / name).read_bytes()


def test_the_tracking_section_of_a_pipeline_file_exports_the_run_when_it_ends(work, exported):
    said = re.search(rf"mlflow: run {work.run_id} -> MLflow run ([0-9a-f]{{32}}), new \(\d+ params, \d+ metric "
                     rf"values, \d+ artifacts\), experiment 'tracked-runs': {re.escape(work.tracked)}$",
                     work.run.stderr, re.MULTILINE)
    assert said, work.run.stderr[-3000:]
    client = MlflowClient(work.tracked)
    (run,) = client.search_runs([client.get_experiment_by_name("tracked-runs").experiment_id])
    assert run.info.run_id == said.group(1)
    # the same run as `workbench runs export` writes later: the record was complete when it was exported
    assert run.data.params == exported.mlrun.data.params
    assert histories(client, run) == exported.histories
    strip = lambda tags: {k: v for k, v in tags.items() if not k.startswith("mlflow.")}  # noqa: E731
    assert strip(run.data.tags) == strip(exported.mlrun.data.tags)
    assert listed(client, run.info.run_id) == on_disk(work.record)
    assert (run.info.status, run.info.end_time) == ("FINISHED", millis(work.record.finished_at))


def test_a_tracked_run_that_fails_is_exported_failed_with_its_error(work):
    text = pipeline_text(work.cwd / "export", name="broken", target="no_such_column", rounds=ROUNDS)
    (work.cwd / "broken.yaml").write_text(text + f"tracking:\n  mlflow: {work.tracked}\n")
    runs = work.cwd / "broken-runs"  # a store of its own: the export of everything below sees only the others
    proc = workbench("run", "broken.yaml", "--runs-dir", runs, cwd=work.cwd)
    error = assert_one_line_error(proc)
    assert error.startswith("error: target column 'no_such_column' is not in the export")
    (record,) = RunStore(runs).list()
    assert record.status == "failed"
    assert re.search(rf"mlflow: run {record.id} -> MLflow run [0-9a-f]{{32}}, new \(\d+ params\), experiment "
                     rf"'broken': ", proc.stderr), proc.stderr[-3000:]
    client = MlflowClient(work.tracked)
    (run,) = client.search_runs([client.get_experiment_by_name("broken").experiment_id])
    assert (run.info.status, run.info.end_time) == ("FAILED", millis(record.finished_at))
    assert (run.data.tags["workbench.run_id"], run.data.tags["workbench.status"]) == (record.id, "failed")
    assert f"error: {run.data.tags['workbench.error']}" == error
    assert run.data.params["data.target"] == "no_such_column" and run.data.metrics == {}


# ---------------------------------------------------------------- a sweep: a parent run and its cells


def test_a_sweep_is_a_parent_run_with_one_child_per_cell(work, exported, tmp_path):
    client = exported.client
    runs = client.search_runs([client.get_experiment_by_name("cell").experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get("workbench.kind") == "sweep"]
    children = [run for run in runs if run.info.run_id != parent.info.run_id]
    cells = SweepStore(work.runs).cells("mini")
    assert len(cells) == len(children) == 2
    tags = parent.data.tags
    assert (parent.info.run_name, tags["workbench.sweep_id"], parent.info.status) == ("mini", "mini", "FINISHED")
    assert (tags["workbench.cells.planned"], tags["workbench.cells.succeeded"], tags["workbench.cells.failed"]) \
        == ("2", "2", "0")
    assert (parent.data.params["trials"], parent.data.params["axes.sampling.ratio"],
            parent.data.params["pipeline.model.epochs"]) == ("1", '["1:1", "1:4"]', str(EPOCHS))
    assert "mlflow.parentRunId" not in tags
    table = pd.read_csv(client.download_artifacts(parent.info.run_id, "cells.csv", str(tmp_path)))
    assert sorted(table["run_id"]) == sorted(cell["run_id"] for cell in cells)

    by_run = {run.data.tags["workbench.run_id"]: run for run in children}
    assert sorted(by_run) == sorted(cell["run_id"] for cell in cells)
    for cell in cells:
        child = by_run[cell["run_id"]]
        ratio = cell["axes"]["sampling.ratio"]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.run_name == f"workers=1 ratio={ratio} trial=0"
        assert (child.data.tags["workbench.sweep_id"], child.data.params["sampling.ratio"]) == ("mini", ratio)
        assert child.data.metrics["roc_auc"] == cell["metrics"]["roc_auc"]

    lines = exported.sweep.stdout.splitlines()
    assert re.fullmatch(rf"sweep mini -> MLflow run {parent.info.run_id}, new \(\d+ params, 1 artifacts\), "
                        rf"experiment 'cell': {re.escape(exported.uri)}", lines[0]), lines
    assert [re.match(r"run (\S+) -> MLflow run (\S+) \(child of the sweep's run\), new ", line).groups()
            for line in lines[1:]] == [(cell["run_id"], by_run[cell["run_id"]].info.run_id) for cell in cells]


def test_the_per_epoch_metrics_of_an_incremental_model_keep_their_epochs_as_steps(work, exported):
    client, store = exported.client, RunStore(work.runs)
    for cell in SweepStore(work.runs).cells("mini"):
        record = store.get(cell["run_id"])
        (child,) = client.search_runs([client.get_experiment_by_name("cell").experiment_id],
                                      f"attributes.run_name = 'workers=1 ratio={cell['axes']['sampling.ratio']} "
                                      "trial=0'")
        per_epoch = record.history["test (per epoch)"]
        assert sorted(per_epoch) == ["pr_auc", "roc_auc"] and len(per_epoch["roc_auc"]) == EPOCHS
        for name, values in per_epoch.items():
            points = sorted((m.step, m.value) for m in client.get_metric_history(child.info.run_id,
                                                                                 f"test_per_epoch.{name}"))
            assert points == list(enumerate(values)), name


# ---------------------------------------------------------------- again: nothing twice


def snapshot(client: MlflowClient) -> dict:
    """Every MLflow run of the store: status, times, parameters, tags, metric histories, artifacts."""
    ids = [experiment.experiment_id for experiment in client.search_experiments()]
    return {run.info.run_id: (run.info.experiment_id, run.info.status, run.info.start_time, run.info.end_time,
                              run.data.params, run.data.tags, histories(client, run), listed(client, run.info.run_id))
            for run in client.search_runs(ids, max_results=1000)}


def test_exporting_again_adds_nothing(work, exported):
    before = snapshot(exported.client)
    assert len(before) == 4  # the sweep's parent, its two cells, the run
    again = workbench("runs", "export", "--mlflow", exported.uri, "--runs-dir", work.runs, cwd=work.cwd)  # everything
    assert again.returncode == 0, again.stderr[-3000:]
    lines = again.stdout.splitlines()
    assert len(lines) == 4 and all(", unchanged, experiment " in line for line in lines), again.stdout
    assert {re.search(r"-> MLflow run ([0-9a-f]{32})", line).group(1) for line in lines} == set(before)
    assert snapshot(exported.client) == before


# ---------------------------------------------------------------- bad input: one line


def test_a_tracking_server_that_is_not_there_is_one_line(work):
    port = free_port()
    proc = workbench("runs", "export", work.run_id, "--mlflow", f"http://127.0.0.1:{port}", "--runs-dir", work.runs,
                     cwd=work.cwd)
    assert assert_one_line_error(proc) == (
        f"error: no MLflow tracking server answers at http://127.0.0.1:{port} (Connection refused); "
        "start it (mlflow server --host 127.0.0.1 --port 5000) or give another --mlflow URI")


@pytest.mark.parametrize("args, error", [
    (["20000101-000000-dead"], "error: no run '20000101-000000-dead' in "),
    (["--sweep", "no-such-sweep"], "error: no sweep 'no-such-sweep' in "),
])
def test_an_unknown_run_or_sweep_is_one_line_and_nothing_is_written(work, args, error):
    database = work.cwd / "unknown.db"
    proc = workbench("runs", "export", work.run_id, *args, "--mlflow", f"sqlite:///{database}",
                     "--runs-dir", work.runs, cwd=work.cwd)
    assert assert_one_line_error(proc).startswith(error), proc.stderr
    assert not database.exists()  # every id is resolved before anything is written, the known run's neither


def test_a_tracking_uri_mlflow_refuses_stops_the_run_before_its_cluster_starts(work, capsys, monkeypatch):
    text = (work.cwd / "tracked.yaml").read_text().replace(f"mlflow: {work.tracked}", "mlflow: nosuch://tracker")
    (work.cwd / "refused.yaml").write_text(text)
    before = len(RunStore(work.runs).list())
    proc = in_process(capsys, monkeypatch, work.cwd)("run", "refused.yaml", "--runs-dir", work.runs)
    assert assert_one_line_error(proc).startswith("error: MLflow refuses the tracking URI 'nosuch://tracker': ")
    assert "cluster:" not in proc.stderr and len(RunStore(work.runs).list()) == before


def test_without_mlflow_the_export_and_the_tracking_say_how_to_install_it(work, capsys, monkeypatch):
    for name in [name for name in sys.modules if name == "mlflow" or name.startswith("mlflow.")] + ["mlflow"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import mlflow...` raises ImportError, as without it
    cli = in_process(capsys, monkeypatch, work.cwd)
    missing = "error: MLflow is not installed; install it with pip install 'workbench[mlflow]'"
    assert assert_one_line_error(cli("runs", "export", work.run_id, "--runs-dir", work.runs)) == missing
    before = len(RunStore(work.runs).list())
    proc = cli("run", "tracked.yaml", "--runs-dir", work.runs)
    assert assert_one_line_error(proc) == missing
    assert "cluster:" not in proc.stderr and len(RunStore(work.runs).list()) == before


# ---------------------------------------------------------------- a tracking server, and its UI in a browser


def wait_for_health(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START
    while True:
        assert server.poll() is None, f"mlflow server exited ({server.returncode}):\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as answer:
                if answer.read().strip() == b"OK":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        assert time.monotonic() < deadline, f"mlflow server did not answer /health:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def test_a_tracking_server_takes_the_export_and_shows_the_run_in_a_browser(work, tmp_path):
    binary = chromium()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            ["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
             "--artifacts-destination", str(tmp_path / "artifacts")],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job runners: tracking only
        )
    try:
        wait_for_health(base, server, log)
        proc = workbench("runs", "export", work.run_id, "--mlflow", base, "--experiment", "served",
                         "--runs-dir", work.runs, cwd=work.cwd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        client = MlflowClient(base)
        experiment = client.get_experiment_by_name("served")
        (run,) = client.search_runs([experiment.experiment_id])
        page = f"{base}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
        assert re.fullmatch(rf"run {work.run_id} -> MLflow run {run.info.run_id}, new \(\d+ params, \d+ metric "
                            rf"values, \d+ artifacts\), experiment 'served': {re.escape(page)}",
                            proc.stdout.strip()), proc.stdout  # MLflow's own "View run" lines are not printed
        assert run.data.tags["workbench.run_id"] == work.run_id
        assert run.data.metrics["roc_auc"] == work.record.metrics["roc_auc"]
        assert listed(client, run.info.run_id) == on_disk(work.record)  # through the server's artifact proxy
        assert sorted(p.relative_to(tmp_path / "artifacts").as_posix().split("/artifacts/", 1)[1]
                      for p in (tmp_path / "artifacts").rglob("*") if p.is_file()) == sorted(on_disk(work.record))

        with urllib.request.urlopen(f"{base}/", timeout=30) as answer:
            if "index.html) not found" in answer.read().decode():
                pytest.fail("MLflow's UI is not installed (mlflow-skinny ships none): tests/run installs it with "
                            "pip install --no-deps mlflow==<the installed mlflow-skinny's version>")
        dom = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000", "--dump-dom", page],
            capture_output=True, text=True, timeout=180,
        )
        assert dom.returncode == 0, dom.stderr[-2000:]
        # what only the rendered run page holds: the run's name (the workbench run id) and its tags
        assert f">{work.run_id}<" in dom.stdout, dom.stdout[-3000:]
        assert "workbench.run_id" in dom.stdout and "version.xgboost-cpu" in dom.stdout, dom.stdout[-3000:]
        assert run.info.run_id in dom.stdout
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
