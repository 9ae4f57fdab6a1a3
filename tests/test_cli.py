"""The ``workbench`` command through its installed console script, as a user runs it.

Every end-to-end run is a real subprocess. The runs that exercise the default path start their own
local cluster (``workbench run <file>``); the many error cases that need a cluster reuse the test
session's cluster through ``--connect`` and run a few at a time, so the module stays fast.
"""

from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost
import yaml
from sklearn.metrics import roc_auc_score

from workbench import read_bigquery_export, split
from workbench.data.synth import synth_bitcoin_export
from workbench.stores.runs import RunStore
from workbench.train import DEFAULT_PARAMS

from .cli.helpers import RUN_ID, SAY_LINE, assert_one_line_error, pipeline_text, workbench

REPO = Path(__file__).resolve().parents[1]
PHASES = {"read", "split", "rus", "dmatrix", "train", "predict", "metrics"}
EXPORT_ROWS, EXPORT_SHARD_ROWS = 200_000, 25_000


def succeeded(runs_dir: Path) -> list:
    return RunStore(runs_dir).list(status="succeeded")


# ---------------------------------------------------------------- shared data and runs


@pytest.fixture(scope="module")
def export(tmp_path_factory, client) -> Path:
    """One synthetic BigQuery-shaped export for the whole module: 200k rows in 8 shards of 25k."""
    path = tmp_path_factory.mktemp("cli-export") / "export"
    files = synth_bitcoin_export(
        path, EXPORT_ROWS, positive_rate=0.02, signal=1.0, seed=0, rows_per_shard=EXPORT_SHARD_ROWS, client=client
    )
    assert len(files) == EXPORT_ROWS // EXPORT_SHARD_ROWS
    return path


@pytest.fixture(scope="module")
def happy(tmp_path_factory, export):
    """``workbench run happy.yaml --runs-dir R`` on its own local cluster."""
    cwd = tmp_path_factory.mktemp("cli-happy")
    (cwd / "happy.yaml").write_text(pipeline_text(export / "btc_addresses-*.parquet"))
    proc = workbench("run", "happy.yaml", "--runs-dir", "R", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    match = re.search(rf"^run ({RUN_ID}) \(happy\) succeeded$", proc.stdout, re.MULTILINE)
    assert match, proc.stdout
    return {"proc": proc, "cwd": cwd, "runs": cwd / "R", "id": match.group(1)}


@pytest.fixture(scope="module")
def happy_views(happy):
    """``workbench runs``, ``runs show`` and ``runs show --json`` on the happy run, side by side."""
    cwd, run_id = happy["cwd"], happy["id"]
    commands = {
        "list": ("runs", "--runs-dir", "R"),
        "show": ("runs", "show", run_id[:17], "--runs-dir", "R"),
        "json": ("runs", "show", run_id, "--json", "--runs-dir", "R"),
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(workbench, *args, cwd=cwd) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """The shipped quickstart with fewer rows, run twice from a fresh directory."""
    cwd = tmp_path_factory.mktemp("cli-quickstart")
    text = (REPO / "pipelines" / "quickstart.yaml").read_text()
    text, n = re.subn(r"^(\s+)rows: \d+\n", r"\1rows: 60000\n\1rows_per_shard: 20000\n", text, flags=re.MULTILINE)
    assert n == 1
    (cwd / "quickstart.yaml").write_text(text)
    spec = yaml.safe_load(text)
    assert spec["data"]["synth"]["rows"] == 60_000 and spec["data"]["synth"]["rows_per_shard"] == 20_000
    first = workbench("run", "quickstart.yaml", cwd=cwd)
    assert first.returncode == 0, first.stderr
    shards = sorted((cwd / "data" / "quickstart").glob("*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in shards]
    second = workbench("run", "quickstart.yaml", cwd=cwd)
    assert second.returncode == 0, second.stderr
    return {"cwd": cwd, "first": first, "second": second, "shards": shards, "mtimes": mtimes}


# ---------------------------------------------------------------- the happy path


def test_run_prints_a_summary(happy):
    out = happy["proc"].stdout
    lines = out.splitlines()
    assert lines[0] == f"run {happy['id']} (happy) succeeded"
    assert re.search(r"^  rows +200,000 in files; train [\d,]+ \([\d,]+ positive\) -> [\d,]+ after RUS; "
                     r"test 40,000 \([\d,]+ positive\)$", out, re.MULTILINE), out
    assert re.search(r"^  class ratio +1:4\d\.\d before RUS -> 1:5\.0 after$", out, re.MULTILINE), out
    assert re.search(r"^  model +xgboost: \d+ trees kept \(best validation round\) of \d+ trained$", out, re.MULTILINE), out
    timings = re.search(r"^  timings +(.*)$", out, re.MULTILINE).group(1)
    assert set(re.findall(r"(\w+) \d+(?:\.\d+)? (?:us|ms|s)\b", timings)) == PHASES  # dask.utils.format_time
    assert re.search(r"^  ROC AUC +0\.\d{4}  95% CI 0\.\d{4}–0\.\d{4} \(DeLong\)  \(exact, on 40,000 held-out test rows\)$",
                     out, re.MULTILINE), out
    assert re.search(r"^  PR AUC +0\.\d{4}  95% CI 0\.\d{4}–0\.\d{4} \(bootstrap\)  \(average precision\)$",
                     out, re.MULTILINE), out
    assert re.search(r"^  threshold +0\.5000, as the pipeline file gives it$", out, re.MULTILINE), out
    assert re.search(r"^  confusion +at threshold 0\.5: tn [\d,]+  fp [\d,]+  fn [\d,]+  tp [\d,]+  "
                     r"\(precision \d\.\d{3}, recall \d\.\d{3}\)$", out, re.MULTILINE), out
    assert re.search(r"^  corrected +for RUS", out, re.MULTILINE), out
    assert f"{happy['id']}/model.json" in out
    assert "Traceback" not in happy["proc"].stderr
    assert "pipeline happy (happy.yaml)" in happy["proc"].stderr


def test_a_run_s_log_is_timed_lines_without_bars(happy):
    """stderr is not a terminal here: no bars and no escape codes, only ``[   1.2s] ...`` and warning lines."""
    log = happy["proc"].stderr
    assert "\x1b[" not in log and "\r" not in log
    assert all(re.match(rf"{SAY_LINE}|warning: ", line) for line in log.splitlines()), log
    assert re.search(rf"^{SAY_LINE}pipeline happy \(happy\.yaml\)$", log, re.MULTILINE), log


def test_runs_lists_the_run_as_succeeded(happy, happy_views):
    auc = re.search(r"ROC AUC +(0\.\d{4})", happy["proc"].stdout).group(1)
    pr = re.search(r"PR AUC +(0\.\d{4})", happy["proc"].stdout).group(1)
    proc = happy_views["list"]
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split()[:3] == ["id", "name", "status"]
    assert len(rows) == 1
    assert rows[0].split()[:5] == [happy["id"], "happy", "succeeded", auc, pr]
    assert [r.id for r in succeeded(happy["runs"])] == [happy["id"]]


def test_runs_show_by_prefix(happy, happy_views):
    proc = happy_views["show"]
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.splitlines()[0] == f"run {happy['id']} (happy) succeeded"
    assert re.search(r"ROC AUC +0\.\d{4}", out)
    assert re.search(r'^  seeds +\{"split": 0, "sampling": 0, "model": 0\}$', out, re.MULTILINE), out
    assert re.search(r"^  versions +.*xgboost", out, re.MULTILINE), out
    assert re.search(r"^  history +valid auc: \d+ rounds, first 0\.\d{4}, last 0\.\d{4}$", out, re.MULTILINE), out


def test_runs_show_json(happy, happy_views):
    proc = happy_views["json"]
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert (record["id"], record["name"], record["status"], record["error"]) == (happy["id"], "happy", "succeeded", None)
    assert record["seeds"] == {"split": 0, "sampling": 0, "model": 0}
    assert {"python", "workbench", "dask", "distributed", "xgboost-cpu", "pandas", "pyarrow"} <= set(record["versions"])
    assert record["versions"]["xgboost-cpu"] == xgboost.__version__
    assert set(record["timings"]) == PHASES
    assert all(seconds >= 0 for seconds in record["timings"].values())
    assert {"roc_auc", "pr_auc", "n", "n_positive", "threshold", "tn", "fp", "fn", "tp", "precision", "recall",
            "f1", "brier", "corrected"} <= set(record["metrics"])
    assert record["spec"]["sampling"]["ratio"] == "1:5"
    assert record["cluster"]["profile"] == "local" and record["cluster"]["workers"] >= 1
    data = record["data"]
    assert data["rows_in_files"] == EXPORT_ROWS
    assert data["class_ratio"]["after"] == "1:5.0"
    assert data["sampled"]["rows"] == 6 * data["sampled"]["positive"]
    rounds = data["boosted_rounds"]
    assert data["best_iteration"] < rounds <= 40
    assert set(record["history"]) == {"valid"}  # the training set is not scored every round by default
    assert set(record["history"]["valid"]) == {"auc", "aucpr", "logloss"}
    assert all(len(values) == rounds for values in record["history"]["valid"].values())
    assert all(0.5 < auc <= 1 for auc in record["history"]["valid"]["auc"])
    stopped_on = record["history"]["valid"][DEFAULT_PARAMS["eval_metric"][-1]]
    assert stopped_on[data["best_iteration"]] == max(stopped_on)
    model = Path(record["path"]) / record["artifacts"]["model"]
    assert model.is_file() and model.parent == happy["runs"].absolute() / happy["id"]
    booster = xgboost.Booster(model_file=str(model))
    assert booster.num_boosted_rounds() == data["best_iteration"] + 1  # the trees up to the best round
    assert booster.num_features() == len(data["features"])


def test_recorded_metrics_are_consistent_and_exact(happy, happy_views, export, client):
    record = json.loads(happy_views["json"].stdout)
    m, data = record["metrics"], record["data"]
    assert m["tn"] + m["fp"] + m["fn"] + m["tp"] == m["n"] == data["test"]["rows"] == 40_000
    assert m["fn"] + m["tp"] == m["n_positive"] == data["test"]["positive"]
    c = m["corrected"]
    assert c["tn"] + c["fp"] + c["fn"] + c["tp"] == m["n"]
    # Score the same test split in this process with the saved model as it is: sklearn agrees exactly.
    dataset = read_bigquery_export(str(export / "btc_addresses-*.parquet"), "is_miner", drop=["address"])
    assert list(dataset.features) == data["features"]
    _, test = split(dataset, 0.2, seed=0)
    frame = test.frame.compute()
    assert len(frame) == m["n"]
    booster = xgboost.Booster(model_file=str(Path(record["path"]) / "model.json"))
    scores = booster.inplace_predict(frame[list(dataset.features)])
    assert m["roc_auc"] == pytest.approx(roc_auc_score(frame["is_miner"], scores), rel=1e-12, abs=1e-12)
    predicted = np.asarray(scores) >= m["threshold"]
    assert int((predicted & (frame["is_miner"] == 1)).sum()) == m["tp"]
    assert int((predicted & (frame["is_miner"] == 0)).sum()) == m["fp"]


# ---------------------------------------------------------------- the quickstart


def test_quickstart_generates_its_data_then_reuses_it(quickstart):
    first, second = quickstart["first"], quickstart["second"]
    assert "generating a synthetic export of 60,000 rows" in first.stderr + first.stdout
    assert "generating" not in second.stderr + second.stdout
    assert [p.name for p in quickstart["shards"]] == [f"btc_addresses-{i:012d}.parquet" for i in range(3)]
    assert [p.stat().st_mtime_ns for p in quickstart["shards"]] == quickstart["mtimes"]  # not rewritten
    auc = [re.search(r"ROC AUC +(0\.\d{4})", p.stdout).group(1) for p in (first, second)]
    assert auc[0] == auc[1]
    assert (quickstart["cwd"] / "runs" / "runs.sqlite").is_file()  # the default ./runs


def test_the_quickstart_shows_its_intervals_and_the_validation_chosen_threshold(quickstart):
    out = quickstart["first"].stdout
    assert re.search(r"^  ROC AUC +0\.\d{4}  95% CI 0\.\d{4}–[01]\.\d{4} \(DeLong\)", out, re.MULTILINE), out
    threshold = re.search(r"^  threshold +(0\.\d{4}), F1 best on the validation set \(F1 0\.\d{3} there\)", out, re.MULTILINE)
    assert threshold, out
    assert re.search(rf"^  confusion +at threshold {threshold.group(1).rstrip('0')}: tn [\d,]+  fp [\d,]+  fn [\d,]+  tp [\d,]+",
                     out, re.MULTILINE), out
    assert "corrected " not in out  # a confusion matrix at 0.5 "corrected for RUS" is shown only for a given number
    assert re.search(r"^  at k +top 100: precision \d\.\d{3}, recall \d\.\d{3}; top 1\.00% \(\d+\): ", out, re.MULTILINE), out


def test_same_seeds_give_the_same_metrics(quickstart):
    records = RunStore(quickstart["cwd"] / "runs").list()
    assert [r.status for r in records] == ["succeeded", "succeeded"]
    newer, older = records
    assert newer.id != older.id
    assert newer.metrics == older.metrics
    assert newer.history == older.history
    assert newer.data == older.data
    assert newer.seeds == older.seeds == {"split": 0, "sampling": 0, "model": 0}


# ---------------------------------------------------------------- errors


def _corrupt_export(export: Path, directory: Path, how: str) -> Path:
    directory.mkdir()
    for shard in sorted(export.glob("*.parquet"))[:2]:
        shutil.copy(shard, directory / shard.name)
    bad = directory / "btc_addresses-000000000099.parquet"
    if how == "random":
        bad.write_bytes(np.random.default_rng(0).bytes(50_000))
    else:
        whole = (export / "btc_addresses-000000000002.parquet").read_bytes()
        bad.write_bytes(whole[: len(whole) // 2])
    return directory


def _constant_export(directory: Path) -> Path:
    directory.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        pd.DataFrame(
            {"address": [f"a{i}-{j}" for j in range(500)], "x": rng.normal(size=500), "is_miner": False}
        ).to_parquet(directory / f"btc_addresses-{i:012d}.parquet", index=False)
    return directory


@pytest.fixture(scope="module")
def failures(tmp_path_factory, export, client):
    """Every error case as its own subprocess with its own runs directory, a few at a time."""
    root = tmp_path_factory.mktemp("cli-errors")
    connect = ("--connect", client.scheduler.address)
    glob = export / "btc_addresses-*.parquet"
    cases = {}

    def case(name, text, *extra, pipeline="pipeline.yaml", run=True):
        cwd = root / name
        cwd.mkdir()
        if text is not None:
            (cwd / pipeline).write_text(text)
        args = ("run", pipeline, "--runs-dir", "R", *extra) if run else extra
        cases[name] = (cwd, args)

    # Data problems, found once a cluster is up. The first starts its own local cluster.
    case("missing_data", pipeline_text("nothere/btc_addresses-*.parquet"))
    case("corrupt_file", pipeline_text(_corrupt_export(export, root / "corrupt-data", "random")), *connect)
    case("truncated_file", pipeline_text(_corrupt_export(export, root / "truncated-data", "truncate")), *connect)
    case("missing_target", pipeline_text(glob, target="is_whale"), *connect)
    case("constant_target", pipeline_text(_constant_export(root / "constant-data")), *connect)
    case("impossible_ratio", pipeline_text(glob, ratio="1:1000"), *connect)
    # Problems with the files and options, found before any cluster starts.
    case("bad_yaml", "name: broken\ndata:\n  path: a.parquet\n  target: is_miner\n   drop: [address]\nsplit:\n"
         "  seed: 0\n", pipeline="broken.yaml")
    case("unknown_key", pipeline_text(glob, model_extra="  num_boost_rounds: 10\n"))
    case("bad_value", pipeline_text(glob, split_block="split:\n  test_size: 2\n"))
    case("unknown_cluster", pipeline_text(glob), "--cluster", "nosuch")
    case("missing_pipeline", None, pipeline="nosuch.yaml")
    case("debug", None, "--debug", "run", "nosuch.yaml", "--runs-dir", "R", run=False)
    case("usage", None, "run", run=False)
    case("version", None, "--version", run=False)
    case("cluster_show", None, "cluster", "show", "local", run=False)

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(workbench, *args, cwd=cwd) for name, (cwd, args) in cases.items()}
        return {name: (future.result(), cases[name][0] / "R") for name, future in futures.items()}


DATA_ERRORS = {
    "missing_data": r"no Parquet files found at 'nothere/btc_addresses-\*\.parquet'; check the path",
    "corrupt_file": r"btc_addresses-000000000099\.parquet is not a readable Parquet file \(.+\); re-export or remove",
    "truncated_file": r"btc_addresses-000000000099\.parquet is not a readable Parquet file \(.+\); re-export or remove",
    "missing_target": r"target column 'is_whale' is not in the export; .*columns are: .*is_miner",
    "constant_target": r"target 'is_miner' has one class only: all 1,000 rows are negative",
    "impossible_ratio": r"ratio 1:1000 needs [\d,]+ majority rows but only [\d,]+ are available .*; "
                        r"choose a ratio of at most 1:4\d$",
}


@pytest.mark.parametrize("name", sorted(DATA_ERRORS))
def test_data_errors_are_one_line_and_recorded_as_failed(failures, name):
    proc, runs = failures[name]
    line = assert_one_line_error(proc)
    assert re.match("error: " + DATA_ERRORS[name], line), line
    assert proc.stdout == ""
    assert succeeded(runs) == []
    [failed] = RunStore(runs).list()
    assert failed.status == "failed"
    assert failed.error == line[len("error: "):]


CONFIG_ERRORS = {
    "bad_yaml": r"broken\.yaml:5: invalid YAML \(mapping values are not allowed here\); fix the syntax at that line$",
    "unknown_key": r"pipeline\.yaml:\d+: model\.num_boost_rounds: unknown key \(did you mean 'num_boost_round'\?\)",
    "bad_value": r"pipeline\.yaml:8: split\.test_size: Input should be less than 1",
    "unknown_cluster": r"unknown cluster profile 'nosuch'; give a profile file path or one of: local",
    "missing_pipeline": r"pipeline file 'nosuch\.yaml' does not exist; check the path",
}


@pytest.mark.parametrize("name", sorted(CONFIG_ERRORS))
def test_config_errors_are_one_line_and_record_nothing(failures, name):
    proc, runs = failures[name]
    line = assert_one_line_error(proc)
    assert re.match("error: " + CONFIG_ERRORS[name], line), line
    assert proc.stdout == ""
    assert succeeded(runs) == []
    assert not (runs / "runs.sqlite").exists()


def test_unknown_key_error_names_the_line_of_the_key(failures):
    proc, _ = failures["unknown_key"]
    line = int(re.search(r"pipeline\.yaml:(\d+):", proc.stderr).group(1))
    text = (failures["unknown_key"][1].parent / "pipeline.yaml").read_text().splitlines()
    assert text[line - 1].strip() == "num_boost_rounds: 10"


def test_debug_shows_the_traceback(failures):
    proc, _ = failures["debug"]
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ConfigError" in proc.stderr
    assert proc.stderr.rstrip("\n").splitlines()[-1].startswith("error: pipeline file 'nosuch.yaml' does not exist")


def test_a_usage_error_exits_2_with_click_s_message(failures):
    """A missing argument is bad input too: click's usage message, exit status 2, no traceback."""
    proc, _ = failures["usage"]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "missing argument 'pipeline'" in proc.stderr.lower() or "missing parameter: pipeline" in proc.stderr.lower()
    assert "run with --debug for the traceback" not in proc.stderr  # not reported as an unexpected crash


def test_version(failures):
    proc, _ = failures["version"]
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"\bworkbench \d+\.\d+\.\d+\b", proc.stdout), proc.stdout
    assert "xgboost" in proc.stdout


def test_cluster_show_local(failures):
    proc, _ = failures["cluster_show"]
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["type"] == "local"
    assert shown["host"] == "127.0.0.1"
    assert shown["dashboard_address"].startswith("127.0.0.1:")
    assert shown["n_workers"] >= 1 and shown["threads_per_worker"] >= 1


def test_data_synth_writes_bigquery_shards_and_refuses_to_overwrite(tmp_path):
    """`workbench data synth` on a running cluster; a second call into the same place is bad input."""
    out = tmp_path / "export"
    args = ["data", "synth", out, "--rows", "30000", "--rows-per-shard", "10000", "--positive-rate", "0.05"]
    proc = workbench(*args, "--cluster", "local", "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shards = sorted(p.name for p in out.glob("*.parquet"))
    assert shards == [f"btc_addresses-{i:012d}.parquet" for i in range(3)]
    assert "3 shards" in proc.stdout
    again = workbench(*args, cwd=tmp_path)
    assert "already holds 3 Parquet files" in assert_one_line_error(again)
    assert sorted(p.name for p in out.glob("*.parquet")) == shards
