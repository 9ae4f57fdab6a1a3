"""Many nodes: workers on the distinct nodes of the emulated cluster (clusters/dev/slurm-up.sh),
TLS between them, the nodes sweep axis, and a whole node dying mid-training and mid-sweep.

Each node is its own network, UTS and mount namespace: its own hostname (n1, n2, n3), its own
address on the `wb0` network (10.77.0.11-13) and its own /tmp. The scheduler runs here, on the
"login node" at 10.77.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask.config
import pytest
import yaml

import workbench as wb
from workbench.cluster import wait_for_workers, worker_hosts
from workbench.data.synth import synth_bitcoin_export
from workbench.errors import WorkbenchWarning
from workbench.pipeline import load_pipeline, run_pipeline
from workbench.stores.runs import RunStore
from workbench.sweep import sweep_table

from ..cli.helpers import assert_one_line_error
from ..cli.helpers import workbench as run_workbench
from .conftest import NODES, squeue, wait_queue_empty, write_profile

pytestmark = pytest.mark.usefixtures("slurm")

NODE_SCRIPT = Path(__file__).parents[2] / "clusters" / "dev" / "slurm-node.sh"


@pytest.fixture(scope="module")
def export(tmp_path_factory, client):
    path = tmp_path_factory.mktemp("nodes-export")
    synth_bitcoin_export(path, 60_000, positive_rate=0.02, rows_per_shard=15_000, seed=0, client=client)
    return path


def pipeline_spec(export: Path, *, name="on-nodes", rounds=30) -> dict:
    return {
        "name": name,
        "data": {"path": str(export / "btc_addresses-*.parquet"), "target": "is_miner", "drop": ["address"]},
        "split": {"test_size": 0.2, "validation_size": 0.1, "seed": 0},
        "sampling": {"ratio": "1:5", "seed": 0},
        "model": {"params": {"max_depth": 4}, "num_boost_round": rounds, "early_stopping_rounds": None},
    }


def write(directory: Path, name: str, data: dict) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def node_state(node: str) -> str:
    """SLURM's state of ``node`` without the ``*`` it adds while the node does not respond (``down*``)."""
    out = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True, timeout=20)
    return out.stdout.strip().rstrip("*")


def test_three_workers_on_three_nodes_over_tls(tmp_path):
    profile = write_profile(tmp_path, workers_per_node=1, job_name="wb-spread")
    with wb.cluster(profile, workers=3) as client:
        hosts = worker_hosts(client)
        assert sorted(hosts.values()) == list(NODES)
        workers = client.scheduler_info(n_workers=-1)["workers"]
        # the scheduler's view: each worker at its own node's address, over TLS
        by_host = {hosts[address]: info["host"] for address, info in workers.items()}
        assert by_host == {"n1": "10.77.0.11", "n2": "10.77.0.12", "n3": "10.77.0.13"}
        assert all(address.startswith("tls://") for address in workers)
        address = client.scheduler.address
        assert address.startswith("tls://10.77.0.1:")  # the interface the profile names: wb0
        assert sum("wb-spread RUNNING" in job for job in squeue("wb-spread")) == 3
        # A plain-TCP client on a node (n1's network) is refused by the TLS scheduler.
        plain = address.replace("tls://", "tcp://")
        probe = subprocess.run(
            ["nsenter", "--net=/run/netns/n1", sys.executable, "-c",
             f"from distributed import Client\nClient({plain!r}, timeout=5)"],
            capture_output=True, text=True, timeout=60,
        )
        assert probe.returncode == 1
        # The node reaches the scheduler's port (from its own address), and the TLS server resets the
        # plain handshake; the workers on the same nodes are connected over TLS.
        last = probe.stderr.strip().splitlines()[-1]
        assert last.startswith("distributed.comm.core.CommClosedError: in <TCP (closed)  local=tcp://10.77.0.11:"), last
        assert last.endswith("Connection reset by peer"), last
        assert client.submit(socket.gethostname, workers=[a for a, h in hosts.items() if h == "n2"]).result() == "n2"
    assert wait_queue_empty(), squeue()


def test_the_same_seeds_give_the_same_metrics_on_one_node_and_on_three(tmp_path, export):
    spec = load_pipeline(write(tmp_path, "p.yaml", pipeline_spec(export)))
    one_node = write_profile(tmp_path, "one.yaml", workers_per_node=3, cores=3, memory="4GB", job_name="wb-same")
    three_nodes = write_profile(tmp_path, "three.yaml", workers_per_node=1, job_name="wb-same")
    together = run_pipeline(spec, cluster=one_node, workers=3, runs_dir=tmp_path / "runs").record
    spread = run_pipeline(spec, cluster=three_nodes, workers=3, runs_dir=tmp_path / "runs").record
    assert len(together.cluster["hosts"]) == 1 and together.cluster["workers"] == 3
    assert spread.cluster["hosts"] == list(NODES) and spread.cluster["workers"] == 3
    # bit for bit: every metric, the confusion matrix and the curves
    assert spread.metrics == together.metrics
    assert spread.metrics["tp"] + spread.metrics["fn"] == spread.metrics["n_positive"] > 0
    assert wait_queue_empty(), squeue()


def test_external_memory_training_across_nodes_matches_in_memory_training(tmp_path, export):
    """Cache pages in each node's own /tmp (invisible to the other nodes and to this host)."""
    in_memory = pipeline_spec(export, name="in-memory")
    external = pipeline_spec(export, name="external")
    in_memory["model"]["memory"] = "in-memory"
    external["model"]["memory"] = "external"
    profile = write_profile(tmp_path, workers_per_node=1, job_name="wb-extmem", local_directory="/tmp/wb-extmem")
    with wb.cluster(profile, workers=3) as client:
        assert sorted(worker_hosts(client).values()) == list(NODES)
        runs = tmp_path / "runs"
        held = run_pipeline(load_pipeline(write(tmp_path, "in.yaml", in_memory)), client=client, runs_dir=runs).record
        streamed = run_pipeline(load_pipeline(write(tmp_path, "ex.yaml", external)), client=client, runs_dir=runs).record
        pages = client.run(lambda dask_worker: sorted(os.listdir(dask_worker.local_directory)))
    assert (held.data["memory"], streamed.data["memory"]) == ("in-memory", "external")
    assert 0.8 < held.metrics["roc_auc"] < 1
    assert abs(streamed.metrics["roc_auc"] - held.metrics["roc_auc"]) <= 0.002
    assert streamed.metrics["n"] == held.metrics["n"]
    assert not [name for names in pages.values() for name in names if name.startswith("xgboost-extmem-")]
    assert wait_queue_empty(), squeue()


def test_a_sweep_over_nodes_records_the_hostnames_of_every_cell(tmp_path, export):
    sweep = write(tmp_path, "sweep.yaml", {
        "name": "over-nodes", "pipeline": pipeline_spec(export, name="cell"),
        "axes": {"workers": [1], "sampling.ratio": ["1:5"]}, "trials": 2, "metrics": ["roc_auc"],
    })
    profile = write_profile(tmp_path, job_name="wb-nodes")
    proc = run_workbench("sweep", str(sweep), "--cluster", str(profile), "--nodes", "1,2,3",
                         "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6 succeeded and 0 failed" in proc.stdout
    table = sweep_table("over-nodes", tmp_path / "runs")
    assert table["workers"].tolist() == table["nodes"].tolist()  # one worker per node by default
    for row in table.itertuples():
        hosts = row.hosts.split(",")
        assert len(hosts) == len(set(hosts)) == row.nodes, row
        assert set(hosts) <= set(NODES)
    assert sorted(table["nodes"]) == [1, 1, 2, 2, 3, 3]
    assert table["roc_auc"].between(0.85, 1).all()  # a different worker count is a different model: no equality
    report = run_workbench("report", "over-nodes", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "rep"),
                           cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    markdown = (tmp_path / "rep" / "report.md").read_text()
    assert "node counts 1, 2, 3" in markdown and "Training time vs node count per data size" in markdown
    advice = run_workbench("recommend", "--rows", "20000", "--sweep", "over-nodes", "--runs-dir", str(tmp_path / "runs"),
                           cwd=tmp_path)
    assert advice.returncode == 0, advice.stderr
    assert "rows/nodes" in advice.stdout and "on 1, 2, 3 node(s)" in advice.stdout
    assert advice.stdout.strip().splitlines()[-1].startswith("recommend: ")
    assert " node(s) for 20,000 rows" in advice.stdout
    assert wait_queue_empty(), squeue()


@pytest.mark.parametrize("command", ["sweep", "run"])
def test_more_nodes_than_the_partition_has_is_one_line(tmp_path, export, command):
    profile = write_profile(tmp_path, workers_per_node=1, job_name="wb-toomany")
    if command == "sweep":
        sweep = write(tmp_path, "sweep.yaml", {"name": "too-many", "pipeline": pipeline_spec(export),
                                               "axes": {"sampling.ratio": ["1:5"]}, "trials": 1})
        args = ["sweep", str(sweep), "--cluster", str(profile), "--nodes", "2,4"]
    else:
        args = ["run", str(write(tmp_path, "p.yaml", pipeline_spec(export))), "--cluster", str(profile), "--workers", "4"]
    proc = run_workbench(*args, "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    line = assert_one_line_error(proc)
    assert line.startswith("error: 4 nodes asked for (1 worker(s) per node), but partition debug has 3; "
                           "ask for at most 3 nodes"), line
    assert squeue("wb-toomany") == []
    assert not (tmp_path / "runs" / "runs.sqlite").exists()  # refused before the run store is opened


@pytest.fixture
def node_back():
    """Whatever a test does to a node, it is back in service afterwards for the tests that follow."""
    yield
    for node in NODES:
        if node_state(node) not in ("idle", "mixed", "allocated"):
            subprocess.run([str(NODE_SCRIPT), "resume", node], check=True, timeout=120)


def kill_node(node: str) -> None:
    subprocess.run([str(NODE_SCRIPT), "kill", node], check=True, timeout=60)


def test_a_node_dying_mid_training_is_survived_and_the_node_used_again(tmp_path, export, node_back):
    spec = load_pipeline(write(tmp_path, "p.yaml", pipeline_spec(export, name="node-dies", rounds=3000)))
    profile = write_profile(tmp_path, workers_per_node=1, job_name="wb-die")
    killed = threading.Event()

    def progress(message: str) -> None:
        if message.startswith("train: xgboost") and not killed.is_set():
            killed.set()
            threading.Timer(1.0, kill_node, args=("n2",)).start()

    # The survivors give up waiting for n2 in XGBoost's allreduce after 20 s (default 120 s).
    with wb.cluster(profile, workers=3) as client, dask.config.set({"workbench.train.collective_timeout": "20s"}):
        with pytest.warns(WorkbenchWarning, match="a worker was lost during training"):
            result = run_pipeline(spec, client=client, runs_dir=tmp_path / "runs", progress=progress)
        assert killed.is_set()
        record = RunStore(tmp_path / "runs").get(result.record.id)
        assert record.status == "succeeded" and 0.8 < record.metrics["roc_auc"] < 1
        assert record.data["training_attempts"] == 2
        # The node comes back (slurmd restarted, returned to service): the job that replaces its
        # worker runs there again.
        deadline = time.monotonic() + 60
        while node_state("n2") != "down" and time.monotonic() < deadline:
            time.sleep(0.5)
        subprocess.run([str(NODE_SCRIPT), "resume", "n2"], check=True, timeout=120)
        wait_for_workers(client, 3, timeout=120)
        assert sorted(worker_hosts(client).values()) == list(NODES)
    assert wait_queue_empty(), squeue()


def test_a_node_dying_mid_sweep_is_recorded_once_with_its_name(tmp_path, export, node_back):
    sweep = write(tmp_path, "sweep.yaml", {
        "name": "node-dies", "pipeline": pipeline_spec(export, name="cell", rounds=400),
        "axes": {"nodes": [3], "sampling.ratio": ["1:5", "1:10"]}, "trials": 2, "metrics": ["roc_auc"],
    })
    profile = write_profile(tmp_path, job_name="wb-sweepdie")
    out = (tmp_path / "sweep.out").open("w")
    env = {**os.environ, "DASK_WORKBENCH__TRAIN__COLLECTIVE_TIMEOUT": "20s"}  # the survivors stop waiting for n2
    proc = subprocess.Popen(["workbench", "sweep", str(sweep), "--cluster", str(profile),
                             "--runs-dir", str(tmp_path / "runs")], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                            env=env)
    try:
        deadline = time.monotonic() + 240
        while "cell 2/4" not in (tmp_path / "sweep.out").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "sweep.out").read_text()
            time.sleep(0.2)
        time.sleep(1.5)  # into the cell's training
        kill_node("n2")
        while node_state("n2") != "down" and time.monotonic() < deadline:
            time.sleep(0.5)
        subprocess.run([str(NODE_SCRIPT), "resume", "n2"], check=True, timeout=120)
        assert proc.wait(timeout=300) == 0, (tmp_path / "sweep.out").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (tmp_path / "sweep.out").read_text()
    assert "Traceback" not in text
    table = sweep_table("node-dies", tmp_path / "runs")
    assert len(table) == 4 and table["cell_key"].is_unique and (table["status"] == "succeeded").all()
    faulty = table[table["faults"] != ""]
    assert len(faulty) == 1 and "(node n2)" in faulty.iloc[0]["faults"], table[["cell_key", "faults"]]
    assert faulty.index[0] == 1  # the second cell, during which n2 died
    # the cells after it ran on all three nodes again: n2 came back and was used
    assert table.iloc[-1]["hosts"] == "n1,n2,n3"
    assert wait_queue_empty(), squeue()
