"""PBS across nodes: a ``type: pbs`` profile through slurm-wlm-torque's qsub/qstat/qdel on the emulated
3-node cluster puts its 3 workers on 3 distinct nodes, and a pipeline on them gives the metrics of
the same pipeline on 3 local workers.

``#PBS -l nodes=1:ppn=4`` asks for 4 tasks on one node: the whole of a 4-CPU node, so no two worker
jobs share one. (``select=1:ncpus=4`` would only ask for a node *with* 4 CPUs: ``--mincpus=4``,
one CPU held.)
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

import workbench as wb
from workbench.cluster import job_ids
from workbench.data.synth import synth_bitcoin_export
from workbench.pipeline import load_pipeline, run_pipeline

from .conftest import INTERFACE, NODES, squeue, wait_queue_empty

pytestmark = pytest.mark.usefixtures("slurm")

JOB_NAME = "wb-pbs-nodes"  # other sessions share the queue: only these jobs are this module's
ADDRESSES = {"n1": "10.77.0.11", "n2": "10.77.0.12", "n3": "10.77.0.13"}  # clusters/dev/slurm-up.sh
CPUS_PER_NODE = 4


@pytest.fixture(scope="module")
def export(tmp_path_factory, client):
    path = tmp_path_factory.mktemp("pbs-export")
    synth_bitcoin_export(path, 40_000, positive_rate=0.02, rows_per_shard=10_000, seed=0, client=client)
    return path


def pbs_profile(directory: Path) -> Path:
    path = directory / "pbs.yaml"
    path.write_text(yaml.safe_dump({
        "type": "pbs", "queue": "debug", "cores": 1, "memory": "1500MB", "walltime": "00:10:00",
        "resource_spec": f"nodes=1:ppn={CPUS_PER_NODE},mem=1500MB", "workers_per_node": 1,
        "interface": INTERFACE, "job_name": JOB_NAME, "log_directory": str(directory / "logs"),
        "shared_temp_directory": str(directory / "tls"), "wait_timeout": "240s",
    }, sort_keys=False))
    return path


def pipeline(directory: Path, export: Path) -> Path:
    spec = {
        "name": "pbs-nodes",
        "data": {"path": str(export / "btc_addresses-*.parquet"), "target": "is_miner", "drop": ["address"]},
        "split": {"test_size": 0.2, "validation_size": 0.1, "seed": 0},
        "sampling": {"ratio": "1:5", "seed": 0},
        "model": {"params": {"max_depth": 4}, "num_boost_round": 30, "early_stopping_rounds": 10, "seed": 0},
    }
    path = directory / "pbs-nodes.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def job_fields(job: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job], check=False, capture_output=True, text=True, timeout=20).stdout
    return dict(re.findall(r"(\w+)=(\S+)", out))


def test_three_pbs_workers_on_three_nodes_give_the_metrics_of_three_local_workers(tmp_path, export, monkeypatch):
    monkeypatch.chdir(tmp_path)  # slurm-wlm-torque's qsub writes <script>.e<job>/.o<job> into the working directory
    spec = load_pipeline(pipeline(tmp_path, export))
    with wb.cluster(pbs_profile(tmp_path), workers=3) as client:
        hostnames = client.run(socket.gethostname)
        hosts = {address: worker["host"] for address, worker in client.scheduler_info(n_workers=-1)["workers"].items()}
        assert sorted(hostnames.values()) == list(NODES), hostnames
        assert hosts == {address: ADDRESSES[name] for address, name in hostnames.items()}, (hosts, hostnames)
        jobs = [job_fields(job) for job in job_ids(client.cluster)]
        assert sorted(job["NodeList"] for job in jobs) == list(NODES), jobs
        assert all(job["NumCPUs"] == str(CPUS_PER_NODE) for job in jobs), jobs  # nodes=1:ppn=4: the whole node
        on_pbs = run_pipeline(spec, client=client, runs_dir=tmp_path / "runs")
    assert wait_queue_empty(name=JOB_NAME), squeue(JOB_NAME)

    local = run_pipeline(spec, cluster={"type": "local", "n_workers": 3, "threads_per_worker": 1},
                         runs_dir=tmp_path / "runs")
    assert on_pbs.record.status == local.record.status == "succeeded"
    assert on_pbs.record.cluster["hosts"] == list(NODES), on_pbs.record.cluster  # recorded with the run
    assert on_pbs.record.cluster["workers"] == local.record.cluster["workers"] == 3
    for key in ("roc_auc", "pr_auc", "tn", "fp", "fn", "tp"):
        assert on_pbs.record.metrics[key] == local.record.metrics[key], key
    assert 0.8 < on_pbs.record.metrics["roc_auc"] < 1
