"""XGBoost from external memory (``memory="external"``) on real local clusters: the AUC of in-memory
training, cache pages in each worker's local directory and gone afterwards, the same model whether
the set is streamed from Parquet or held in memory, ``auto``, a lost worker retried, and a local
directory too small for the pages named in one line by the real ``workbench`` command."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster

from workbench import read_bigquery_export, split, undersample
from workbench.cluster import close_cluster
from workbench.errors import WorkbenchError, WorkbenchWarning
from workbench.train import train_xgboost
from workbench.train.xgb import DEFAULT_PARAMS, memory_mode

from ..cli.helpers import assert_one_line_error, pipeline_text
from ..cli.helpers import workbench as run_workbench
from .test_xgb import _write_export

PARAMS = {"max_depth": 4, "eta": 0.2}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return _write_export(tmp_path_factory.mktemp("extmem") / "export", shards=6, rows=6_000)


@pytest.fixture(scope="module")
def parts(export, client):
    data = read_bigquery_export(str(export), "is_miner", drop=["address"])
    train, test = split(data, 0.25, seed=0)
    train, valid = split(train, 0.2, seed=0)
    return {"train": undersample(train, "1:3", seed=0), "valid": valid, "test": test}


def fit(parts, memory, client, **kwargs):
    options = {"num_boost_round": 60, "early_stopping_rounds": 10, **kwargs}
    return train_xgboost(parts["train"], parts["test"], valid=parts["valid"], params=PARAMS, memory=memory,
                         client=client, **options)


@pytest.fixture(scope="module")
def in_memory(parts, client):
    return fit(parts, "in-memory", client)


@pytest.fixture(scope="module")
def external(parts, client):
    return fit(parts, "external", client)


def test_external_training_matches_in_memory_training(in_memory, external):
    assert (in_memory.memory, external.memory) == ("in-memory", "external")
    assert (external.metrics.n, external.metrics.n_positive) == (in_memory.metrics.n, in_memory.metrics.n_positive)
    assert 0.8 < in_memory.metrics.roc_auc < 1
    assert abs(external.metrics.roc_auc - in_memory.metrics.roc_auc) <= 0.002
    assert abs(external.metrics.pr_auc - in_memory.metrics.pr_auc) <= 0.01


def test_external_training_stops_early_on_the_validation_set(external):
    rounds = external.num_boosted_rounds
    assert len(external.history["valid"]["aucpr"]) == rounds
    assert external.best_iteration == max(range(rounds), key=lambda i: external.history["valid"]["aucpr"][i])
    assert external.booster.num_boosted_rounds() == external.best_iteration + 1
    assert {"dmatrix", "train", "predict", "metrics"} <= set(external.timings)


def _pages(dask_worker) -> list[str]:
    return glob.glob(os.path.join(dask_worker.local_directory, "xgboost-extmem-*"))


def test_cache_pages_live_in_each_workers_local_directory_and_are_removed(parts, client):
    seen: dict[str, set] = {}
    done = threading.Event()

    def watch():
        while not done.is_set():
            for address, pages in client.run(_pages).items():
                seen.setdefault(address, set()).update(os.path.basename(page) for page in pages)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        fit(parts, "external", client, num_boost_round=400, early_stopping_rounds=None)
    finally:
        done.set()
        watcher.join()
    workers = set(client.scheduler_info(n_workers=-1)["workers"])
    assert set(seen) == workers
    for pages in seen.values():
        assert any(page.endswith(".gradient_index.page") and "-train" in page for page in pages), pages
    assert client.run(_pages) == {address: [] for address in workers}


def test_the_same_model_whether_streamed_from_parquet_or_held_in_memory(parts, client, external):
    held = {**parts, "train": parts["train"].persist(client), "valid": parts["valid"].persist(client)}
    again = fit(held, "external", client)
    assert bytes(again.booster.save_raw("ubj")) == bytes(external.booster.save_raw("ubj"))
    assert again.metrics.roc_auc == external.metrics.roc_auc


def test_auto_trains_from_external_memory_above_the_memory_fraction(parts, client):
    train = parts["train"]
    assert memory_mode("auto", train, client) == "in-memory"  # 6 MiB of 6 GiB
    float32_bytes = train.n_rows * len(train.features) * 4
    memory = sum(w["memory_limit"] for w in client.scheduler_info(n_workers=-1)["workers"].values())
    with dask.config.set({"workbench.train.external_memory_fraction": float32_bytes / memory * 0.99}):
        assert memory_mode("auto", train, client) == "external"
    with dask.config.set({"workbench.train.external_memory_fraction": float32_bytes / memory * 1.01}):
        assert memory_mode("auto", train, client) == "in-memory"
    assert memory_mode("in-memory", train, client) == "in-memory"


def test_an_unknown_memory_mode_is_refused(parts, client):
    with pytest.raises(WorkbenchError, match="memory 'disk' is not one of auto, in-memory, external"):
        train_xgboost(parts["train"], memory="disk", client=client)


@contextmanager
def closing_cluster(cluster):
    """Closed the way the workbench closes its own clusters (a killed worker may race the close)."""
    try:
        yield cluster
    finally:
        close_cluster(cluster)


def test_a_worker_killed_during_external_training_is_retried(export):
    data = read_bigquery_export(str(export), "is_miner", drop=["address"])
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="2GiB", host="127.0.0.1",
                           dashboard_address="127.0.0.1:0")
    with closing_cluster(cluster), Client(cluster) as client, \
            dask.config.set({"workbench.train.collective_timeout": "20s"}):
        train, test = split(data, 0.25, seed=0)
        killed: list[int] = []

        def kill_when_training():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                pages = client.run(_pages)
                if any(pages.values()):
                    time.sleep(0.5)
                    pid = sorted(client.run(os.getpid).values())[-1]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_training)
        killer.start()
        with pytest.warns(WorkbenchWarning, match="a worker was lost during training"):
            result = train_xgboost(train, test, params=PARAMS, num_boost_round=1500, memory="external",
                                   client=client)
        killer.join()
        assert killed
        assert result.attempts == 2 and result.memory == "external"
        assert result.num_boosted_rounds == 1500 and 0.8 < result.metrics.roc_auc < 1


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs: far too small for the cache pages of the pipeline below (needs root, as in CI)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_local_directory_too_small_for_the_pages_is_one_line(tmp_path, export, tiny_disk):
    profile = tmp_path / "tiny.yaml"
    profile.write_text(f"type: local\nn_workers: 2\nthreads_per_worker: 1\nlocal_directory: {tiny_disk}\n")
    pipeline = tmp_path / "external.yaml"
    pipeline.write_text(pipeline_text(export, name="external", ratio="1:3", model_extra="  memory: external\n")
                        .replace("cluster: local", f"cluster: {profile}"))
    proc = run_workbench("run", pipeline, "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    line = assert_one_line_error(proc)
    assert "external-memory training needs about" in line and f"of cache pages in {tiny_disk}" in line, line
    assert "free" in line and "local_directory" in line, line
    assert not glob.glob(str(tiny_disk / "**" / "xgboost-extmem-*"), recursive=True)


def test_workbench_run_trains_from_external_memory(tmp_path, export):
    pipeline = tmp_path / "external.yaml"
    pipeline.write_text(pipeline_text(export, name="external", model_extra="  memory: external\n"))
    proc = run_workbench("run", pipeline, "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "from external memory (cache pages in each worker's local directory)" in proc.stderr
    assert "from external memory" in proc.stdout  # the run's record, as `runs show` prints it
    assert Path(tmp_path / "runs").is_dir()


def _single_process_auc(parts, rounds: int) -> float:
    """``xgboost.train`` in this process on the same rows, scored on the same test rows."""
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    train, test = parts["train"], parts["test"]
    features = list(train.features)

    def arrays(data):
        frame = data.frame[[*features, data.target]].compute()
        return frame[features].to_numpy("float32", na_value=np.nan), frame[data.target].to_numpy("float32")

    X, y = arrays(train)
    booster = xgb.train({**DEFAULT_PARAMS, "seed": 0, **PARAMS, "nthread": 1},
                        xgb.QuantileDMatrix(X, y, max_bin=256, feature_names=features), rounds)
    X_test, y_test = arrays(test)
    return float(roc_auc_score(y_test, booster.inplace_predict(X_test)))


def test_external_training_has_the_cuts_and_the_model_of_one_process_on_any_number_of_workers(parts, client):
    """XGBoost's own distributed sketch gives other cuts on other worker counts (2 workers against 1
    on the benchmark export: ROC AUC 0.9037 against 0.9054); the workbench's does not."""
    rounds = 40
    expected = _single_process_auc(parts, rounds)
    aucs = {}
    for n in (1, 3):
        with LocalCluster(n_workers=n, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") \
                as cluster, Client(cluster) as other:
            aucs[n] = train_xgboost(parts["train"], parts["test"], params=PARAMS, num_boost_round=rounds,
                                    memory="external", client=other).metrics.roc_auc
    aucs[2] = train_xgboost(parts["train"], parts["test"], params=PARAMS, num_boost_round=rounds,
                            memory="external", client=client).metrics.roc_auc
    assert {n: round(auc, 6) for n, auc in aucs.items()} == dict.fromkeys((1, 2, 3), round(expected, 6)), (aucs, expected)
