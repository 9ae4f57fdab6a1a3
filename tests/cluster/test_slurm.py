"""Pipelines on a real SLURM: workers as batch jobs over TLS, refusals, Ctrl-C, killed workers.

Needs the single-node SLURM of clusters/dev/slurm-up.sh, which tests/run starts as root (see
conftest.py: without it these tests fail; they never skip).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from distributed import Client
from distributed.comm.core import CommClosedError, FatalCommClosedError
from distributed.security import Security

import workbench as wb
from workbench.data.synth import synth_bitcoin_export
from workbench.errors import WorkbenchWarning
from workbench.pipeline import load_pipeline, run_pipeline
from workbench.stores.runs import RunStore

from ..cli.helpers import assert_one_line_error
from .conftest import job_pids, squeue, wait_queue_empty, write_profile

pytestmark = pytest.mark.usefixtures("slurm")


@pytest.fixture(scope="module")
def export(tmp_path_factory, client):
    path = tmp_path_factory.mktemp("slurm-export")
    synth_bitcoin_export(path, 80_000, positive_rate=0.02, rows_per_shard=20_000, seed=0, client=client)
    return path


def pipeline(directory: Path, export: Path, *, rounds=40, early_stopping=10, name="on-slurm") -> Path:
    spec = {
        "name": name,
        "data": {"path": str(export / "btc_addresses-*.parquet"), "target": "is_miner", "drop": ["address"]},
        "split": {"test_size": 0.2, "validation_size": 0.1, "seed": 0},
        "sampling": {"ratio": "1:5", "seed": 0},
        "model": {"params": {"max_depth": 4}, "num_boost_round": rounds, "early_stopping_rounds": early_stopping},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_pipeline_on_two_slurm_workers_matches_the_local_cluster(tmp_path, export):
    spec = load_pipeline(pipeline(tmp_path, export))
    profile = write_profile(tmp_path)
    seen: list[list[str]] = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.append(squeue())
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        on_slurm = run_pipeline(spec, cluster=profile, workers=2, runs_dir=tmp_path / "runs")
    finally:
        done.set()
        watcher.join()
    assert max(sum("wb-test RUNNING" in job for job in jobs) for jobs in seen) == 2
    assert wait_queue_empty(), squeue()
    record = on_slurm.record
    assert record.status == "succeeded" and record.cluster["workers"] == 2
    assert record.cluster["scheduler"].startswith("tls://")

    local = run_pipeline(spec, cluster={"type": "local", "n_workers": 2, "threads_per_worker": 1},
                         runs_dir=tmp_path / "runs")
    for key in ("roc_auc", "pr_auc", "tn", "fp", "fn", "tp"):
        assert record.metrics[key] == local.record.metrics[key], key


def test_tls_by_default_and_plain_clients_are_refused(tmp_path):
    running = wb.make_cluster(write_profile(tmp_path), workers=1)
    try:
        address = running.scheduler_address
        assert address.startswith("tls://")
        # The scheduler ends a plain-TCP handshake at once (not a timeout on the client's side) ...
        started = time.monotonic()
        with pytest.raises(CommClosedError, match="Connection reset by peer"):
            Client(address.replace("tls://", "tcp://"), timeout="10s")
        assert time.monotonic() - started < 5
        # ... and TLS credentials other than the cluster's own do not pass either.
        with pytest.raises(FatalCommClosedError, match="TLS certificate does not match"):
            Client(address, timeout="10s", security=Security.temporary())
        with Client(running) as client:
            assert client.submit(sum, [1, 2]).result() == 3
            [worker] = client.scheduler_info()["workers"]
            assert worker.startswith("tls://")
        tls_files = list((tmp_path / "tls").iterdir())
        assert tls_files and all(f.stat().st_mode & 0o077 == 0 for f in tls_files), "credentials readable by others"
    finally:
        running.close()
    assert wait_queue_empty(), squeue()


@pytest.mark.parametrize(
    "overrides, words",
    [({"queue": "no-such-partition"}, "invalid partition specified: no-such-partition"),
     ({"memory": "900GB"}, "Memory specification can not be satisfied")],
)
def test_a_refused_submission_is_slurms_own_words_in_one_line(tmp_path, export, overrides, words):
    profile = write_profile(tmp_path, "refused.yaml", **overrides)
    path = pipeline(tmp_path, export)
    started = time.monotonic()
    proc = subprocess.run(["workbench", "run", str(path), "--cluster", str(profile), "--runs-dir", str(tmp_path / "R")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "sbatch refused the worker job" in errors[0] and words in errors[0], errors[0]
    assert time.monotonic() - started < 60  # SLURM's refusal, not the wait timeout
    assert all(r.status != "succeeded" for r in RunStore(tmp_path / "R").list())
    assert wait_queue_empty(), squeue()


def test_workers_that_never_come_end_the_wait_timeout_in_one_line(tmp_path, export):
    """A job SLURM holds back (``--begin`` an hour from now) never brings its worker: after the profile's
    wait_timeout the run ends in one line with SLURM's own view of the job, which is then cancelled, and no
    run is recorded (the store is opened only once the cluster is up)."""
    profile = write_profile(tmp_path, "held.yaml", wait_timeout="6s", job_name="wb-held",
                            job_extra_directives=["--begin=now+1hour"])
    path = pipeline(tmp_path, export)
    started = time.monotonic()
    proc = subprocess.run(["workbench", "run", str(path), "--cluster", str(profile), "--runs-dir", str(tmp_path / "R")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    line = assert_one_line_error(proc)
    assert re.fullmatch(r"error: 0 of 1 workers connected after [67]s; the batch system says: \d+ PENDING \(BeginTime\); "
                        r"read the worker job logs \(the profile's log_directory\), ask for fewer resources, "
                        r"or raise wait_timeout", line), line
    assert time.monotonic() - started < 60
    assert wait_queue_empty(name="wb-held"), squeue("wb-held")
    assert RunStore(tmp_path / "R").list() == []


def test_a_worker_killed_mid_training_does_not_lose_the_run(tmp_path, export):
    spec = load_pipeline(pipeline(tmp_path, export, rounds=2500, early_stopping=2500, name="killed"))
    killed: list[str] = []

    def kill_one_job():
        job = squeue("wb-killed")[0].split()[0]
        for pid in job_pids(job):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed.append(job)

    def progress(message: str) -> None:
        if message.startswith("train: xgboost") and not killed:
            threading.Timer(1.5, kill_one_job).start()

    with pytest.warns(WorkbenchWarning, match="a worker was lost during training"):
        result = run_pipeline(spec, cluster=write_profile(tmp_path, job_name="wb-killed"), workers=2,
                              runs_dir=tmp_path / "runs", progress=progress)
    assert killed
    record = RunStore(tmp_path / "runs").get(result.record.id)
    assert record.status == "succeeded" and 0.8 < record.metrics["roc_auc"] < 1
    assert record.data["training_attempts"] == 2
    assert wait_queue_empty(), squeue()


def test_ctrl_c_on_serve_cancels_every_job(tmp_path):
    profile = write_profile(tmp_path)
    out = (tmp_path / "serve.out").open("w")
    proc = subprocess.Popen(["workbench", "serve", "--cluster", str(profile), "--workers", "2",
                             "--runs-dir", str(tmp_path / "runs")], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while "press Ctrl-C" not in (tmp_path / "serve.out").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.out").read_text()
            time.sleep(0.3)
        text = (tmp_path / "serve.out").read_text()
        assert sum("wb-test" in job for job in squeue()) == 2
        info = json.loads((tmp_path / "workbench-connection.json").read_text())
        assert info["address"].startswith("tls://") and info["tls"] and len(info["jobs"]) == 2
        assert (tmp_path / "workbench-connection.json").stat().st_mode & 0o077 == 0
        assert "ssh -N -L" in text and "/workbench/runs" in text
        with wb.cluster(address=tmp_path / "workbench-connection.json") as client:
            assert client.submit(sum, [2, 3]).result() == 5
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_queue_empty(), squeue()
    assert not (tmp_path / "workbench-connection.json").exists()


def test_pbs_profile_submits_through_the_torque_wrappers(tmp_path, monkeypatch):
    # slurm-wlm-torque's qsub ignores a directory in `#PBS -e/-o` and writes <script>.e<job> into
    # the working directory; a real PBS server writes into the directory.
    monkeypatch.chdir(tmp_path)
    profile = tmp_path / "pbs.yaml"
    profile.write_text(yaml.safe_dump({
        "type": "pbs", "queue": "debug", "cores": 1, "memory": "1500MB", "walltime": "00:10:00",
        "resource_spec": "select=1:ncpus=1:mem=1500MB", "job_name": "wb-pbs", "log_directory": str(tmp_path / "logs"),
        "shared_temp_directory": str(tmp_path / "tls"), "wait_timeout": "120s",
    }))
    with wb.cluster(profile, workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        assert sum("wb-pbs" in job for job in squeue()) == 2
        assert client.submit(sum, [1, 2]).result() == 3
    assert wait_queue_empty(), squeue()
