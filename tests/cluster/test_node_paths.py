"""Data the nodes cannot see: an export, a synthetic export's directory or a Zarr cache on a path only
the client's host has is one line naming the nodes and the path, before any worker reads it.

On the emulated SLURM cluster (clusters/dev/slurm-up.sh) each node has a /tmp of its own, as real
nodes do, so anything under the host's /tmp is such a path. A local cluster's workers share the
client's host: the same check passes there, in a few milliseconds.
"""

from __future__ import annotations

import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from workbench.config import DataSpec
from workbench.data.ensure import ensure_export
from workbench.data.synth import synth_bitcoin_export
from workbench.pipeline import load_pipeline, run_pipeline
from workbench.stores.runs import RunStore

from ..cli.helpers import assert_one_line_error, workbench
from .conftest import NODES, squeue, wait_queue_empty, write_profile

SHARDS = "btc_addresses-*.parquet"
JOB_NAME = "wb-paths"  # other sessions share the queue: only these jobs are this module's


@pytest.fixture
def host_only():
    """A directory under the host's /tmp: the client sees it, no node does."""
    directory = Path(tempfile.mkdtemp(dir="/tmp", prefix="workbench-host-only-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def small_export(directory: Path) -> Path:
    synth_bitcoin_export(directory, 6_000, positive_rate=0.05, rows_per_shard=2_000, seed=0)  # threads, here
    return directory / SHARDS


def pipeline(directory: Path, data: dict, name: str = "node-paths") -> Path:
    spec = {
        "name": name,
        "data": {"target": "is_miner", "drop": ["address"], **data},
        "split": {"test_size": 0.2, "validation_size": 0.1, "seed": 0},
        "sampling": {"ratio": "1:4", "seed": 0},
        "model": {"params": {"max_depth": 3}, "num_boost_round": 10, "seed": 0},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_refused(tmp_path: Path, pipeline_file: Path, profile: Path, workers: int) -> str:
    """``workbench run`` on SLURM: its one error line, after checking it ended quickly and cleanly."""
    started = time.monotonic()
    proc = workbench("run", pipeline_file, "--cluster", profile, "--workers", workers,
                     "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    line = assert_one_line_error(proc)
    assert time.monotonic() - started < 150, "no hang: the check answers before any worker reads"
    assert "distributed." not in proc.stderr + proc.stdout, proc.stderr  # no worker log lines either
    [run] = RunStore(tmp_path / "runs").list()
    assert run.status == "failed" and run.error and run.error in line, (run.status, run.error)  # not left running
    assert wait_queue_empty(name=JOB_NAME), squeue(JOB_NAME)
    return line


@pytest.mark.usefixtures("slurm")
def test_an_export_only_this_host_has_names_every_node_that_cannot_read_it(tmp_path, host_only):
    shards = small_export(host_only)
    profile = write_profile(tmp_path, job_name=JOB_NAME, workers_per_node=1)  # three whole nodes: n1, n2 and n3
    line = run_refused(tmp_path, pipeline(tmp_path, {"path": str(shards)}), profile, workers=3)
    assert line == (f"error: nodes n1, n2 and n3 cannot read the export {shards} (it exists only on this host?); "
                    "put the export on a path every node shares (your home or project directory on the "
                    "cluster's shared file system, not /tmp: each node has its own)"), line


@pytest.mark.usefixtures("slurm")
@pytest.mark.parametrize("case", ["synthetic export", "Zarr cache"])
def test_a_directory_the_workers_would_write_into_only_here_is_refused_before_they_write(
        tmp_path, host_only, case, client):
    if case == "synthetic export":  # the workers would write the shards into their own /tmp
        target = host_only / "synth"
        data = {"path": str(target / SHARDS), "synth": {"rows": 4_000, "rows_per_shard": 2_000, "seed": 0}}
    else:  # the export is shared, the cache the workers would write is not
        export = tmp_path / "export"
        synth_bitcoin_export(export, 4_000, positive_rate=0.05, rows_per_shard=2_000, seed=0, client=client)
        target = host_only / "features.zarr"
        data = {"path": str(export / SHARDS), "cache": str(target)}
    line = run_refused(tmp_path, pipeline(tmp_path, data), write_profile(tmp_path, job_name=JOB_NAME), workers=1)
    node = re.match(r"error: node (n\d) ", line)
    assert node and node.group(1) in NODES, line
    assert f"cannot write the {case} into {target} (it exists only on this host?)" in line, line
    assert not [p for p in host_only.rglob("*") if p.is_file()], "nothing written here, no marker left behind"


def test_a_local_cluster_sees_the_hosts_tmp_and_the_check_costs_milliseconds(tmp_path, host_only, client):
    shards = small_export(host_only)
    data = DataSpec(path=str(shards), target="is_miner", cache=str(host_only / "features.zarr"))
    ensure_export(data, client)  # warm: the workers have imported the check
    costs = []
    for _ in range(7):
        started = time.perf_counter()
        ensure_export(data, client)  # the listing, one client.run on both workers, the cache directory's marker
        costs.append(time.perf_counter() - started)
    assert statistics.median(costs) < 0.1, costs
    assert not list(host_only.glob(".workbench-reach-*"))

    result = run_pipeline(load_pipeline(pipeline(tmp_path, {"path": str(shards)}, name="local-tmp")), client=client,
                          runs_dir=tmp_path / "runs")
    assert result.record.status == "succeeded" and 0.5 < result.record.metrics["roc_auc"] <= 1


@pytest.mark.usefixtures("slurm")
@pytest.mark.parametrize("case", ["the export", "the scores"])
def test_predict_on_nodes_that_cannot_see_the_data_or_the_output_is_one_line(tmp_path, host_only, case, client):
    export = tmp_path / "export"
    synth_bitcoin_export(export, 4_000, positive_rate=0.05, rows_per_shard=2_000, seed=0, client=client)
    trained = run_pipeline(load_pipeline(pipeline(tmp_path, {"path": str(export / SHARDS)})), client=client,
                           runs_dir=tmp_path / "runs")
    data = small_export(host_only / "export") if case == "the export" else export / SHARDS
    out = tmp_path / "scores" if case == "the export" else host_only / "scores"
    proc = workbench("predict", trained.record.id, str(data), "--out", str(out), "--runs-dir", tmp_path / "runs",
                     "--cluster", write_profile(tmp_path, job_name=JOB_NAME), "--workers", 1, cwd=tmp_path)
    line = assert_one_line_error(proc)
    node = re.match(r"error: node (n\d) ", line)
    assert node and node.group(1) in NODES, line
    shown = f"cannot read the export {data}" if case == "the export" else f"cannot write the scores into {out}"
    assert shown in line and "(it exists only on this host?)" in line, line
    assert not out.exists(), "refused before any score is written"
    assert wait_queue_empty(name=JOB_NAME), squeue(JOB_NAME)
