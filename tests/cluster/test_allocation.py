"""One allocation (`type: slurm-allocation`): the scheduler, the client and the workers in one SLURM
job, submitted to the emulated 3-node cluster (clusters/dev/slurm-up.sh) and waited for.

The script and refusal tests need no SLURM; the others fail (never skip) without it (see conftest.py).
Everything a job reads or writes is under tmp_path, which is on the shared /var/tmp.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from workbench.pipeline import load_pipeline, run_pipeline
from workbench.stores.runs import RunStore
from workbench.stores.sweeps import SweepStore

from ..cli.helpers import assert_one_line_error, in_process, small_pipeline_text
from .conftest import INTERFACE, NODES, squeue, write_profile

JOB = "wb-alloc"


def allocation_profile(directory: Path, **overrides) -> Path:
    keys = {"type": "slurm-allocation", "nodes": 2, "workers_per_node": 1, "cores": 1, "memory": "1000MB",
            "queue": "debug", "walltime": "00:10:00", "job_name": JOB, "interface": INTERFACE,
            "log_directory": "logs", "wait_timeout": "120s", **overrides}
    path = directory / "alloc.yaml"
    path.write_text(yaml.safe_dump(keys, sort_keys=False))
    return path


@pytest.fixture
def work(tmp_path) -> Path:
    """A submission directory on the shared path: a small pipeline (its export is written by the
    job's client on the first run) and a 2-node allocation profile."""
    (tmp_path / "small.yaml").write_text(small_pipeline_text("small"))
    allocation_profile(tmp_path)
    return tmp_path


@pytest.fixture
def cli(capsys, monkeypatch, work):
    return in_process(capsys, monkeypatch, work)


def outside_slurm() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


def sbatch_wait(script: Path, cwd: Path, timeout: float = 600) -> str:
    """Submit ``script`` with plain sbatch, wait for the job to leave the queue, and return its id
    (a job still queued at ``timeout`` is cancelled, and the test fails)."""
    proc = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]
    deadline = time.monotonic() + timeout
    while [line for line in squeue() if line.split()[0] == job]:
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job], timeout=30)
            pytest.fail(f"job {job} still queued after {timeout:.0f}s: {squeue()}")
        time.sleep(1)
    return job


def submit_wait(*args, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`workbench cluster submit … --wait …` as a user runs it; stopped like Ctrl-C (which cancels
    the job) if it has not ended by ``timeout``."""
    proc = subprocess.Popen(["workbench", "cluster", "submit", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"the job had not ended after {timeout:.0f}s and was cancelled:\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def job_logs(cwd: Path, job: str) -> str:
    return "".join(p.read_text()[-3000:] for p in sorted((cwd / "logs").glob(f"{JOB}-{job}.*")))


# ---------------------------------------------------------------- the script, and refusals (no SLURM)


def test_the_script_asks_for_the_nodes_and_runs_the_command_in_every_task(cli, work):
    proc = cli("cluster", "script", "alloc.yaml", "--", "run", "small.yaml")
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    assert script.startswith("#!/usr/bin/env bash\n")
    for directive in ("-J wb-alloc", "-p debug", "-N 2", "--ntasks-per-node=1", "--cpus-per-task=1",
                      "--mem=954M", "-t 00:10:00", f"-D {work}", "-o logs/wb-alloc-%j.out", "-e logs/wb-alloc-%j.err"):
        assert f"#SBATCH {directive}\n" in script, directive
    assert "export OMP_NUM_THREADS=1\n" in script
    # one srun step: the scheduler and the client on the first node, then one worker per node
    assert 'echo "$first"; echo "$first"; for node in $nodes; do for _ in $(seq 1)' in script
    srun = script.rstrip().splitlines()[-2:]
    assert srun[0].startswith("srun --distribution=arbitrary --overcommit --kill-on-bad-exit=1 ")
    # the profile is added to the command, which runs with this Python
    assert srun[1].split()[1:] == ["-m", "workbench", "run", "small.yaml", "--cluster", "alloc.yaml"]
    assert Path(srun[1].split()[0]).name.startswith("python")

    bigger = cli("cluster", "script", "alloc.yaml", "--nodes", "3", "--", "workbench", "sweep", "s.yaml", "-c", "alloc.yaml")
    assert "#SBATCH -N 3\n" in bigger.stdout
    assert bigger.stdout.rstrip().endswith("-m workbench sweep s.yaml -c alloc.yaml")

    allocation_profile(work, workers_per_node=2, memory="700MB", command="run small.yaml --workers 3")
    from_profile = cli("cluster", "script", "alloc.yaml").stdout
    assert "#SBATCH --ntasks-per-node=2\n" in from_profile and "#SBATCH --mem=1336M\n" in from_profile
    assert "for _ in $(seq 2)" in from_profile
    assert from_profile.rstrip().endswith("-m workbench run small.yaml --workers 3 --cluster alloc.yaml")


@pytest.mark.parametrize("args, words", [
    (["cluster", "script", "alloc.yaml"], "the job has no workbench command to run; give it after `--`"),
    (["cluster", "script", "alloc.yaml", "--", "runs"], "`workbench runs` starts no cluster"),
    (["cluster", "script", "alloc.yaml", "--workers", "2", "--", "run", "small.yaml"], "give --nodes instead of --workers"),
    (["cluster", "script", "alloc.yaml", "--", "run", "small.yaml", "--cluster", "slurm.yaml"],
     "--cluster slurm.yaml, which is not a slurm-allocation profile"),
    (["cluster", "script", "alloc.yaml", "--", "run", "small.yaml", "--connect", "tcp://x:1"], "drop --connect"),
    (["cluster", "script", "slurm.yaml", "--", "run", "small.yaml"], "a slurm profile's job script starts workers only"),
    (["cluster", "submit", "slurm.yaml", "--", "run", "small.yaml"],
     "slurm.yaml is a slurm profile; `cluster submit` submits slurm-allocation jobs"),
    (["cluster", "show", "alloc.yaml", "--workers", "3"],
     "3 workers asked for, but the allocation has 2 (2 node(s) with 1 worker(s) each) and cannot grow"),
])
def test_a_bad_request_is_one_line(cli, work, args, words):
    write_profile(work)
    error = assert_one_line_error(cli(*args))
    assert words in error, error


def test_a_job_cannot_run_from_a_directory_only_this_host_sees(cli, work):
    private = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        error = assert_one_line_error(cli("cluster", "script", work / "alloc.yaml", "--", "run", "small.yaml",
                                          cwd=private))
        assert f"{private} is on a path each node has its own copy of" in error
    finally:
        private.rmdir()


@pytest.mark.parametrize("command", [["run", "small.yaml"], ["sweep", "sweep.yaml"]])
def test_outside_its_job_the_command_refuses_and_says_how_to_submit_it(work, command):
    (work / "sweep.yaml").write_text("name: s\npipeline: small.yaml\naxes:\n  workers: [2, 1]\ntrials: 1\n")
    proc = subprocess.run(["workbench", *command, "--cluster", "alloc.yaml"], capture_output=True, text=True,
                          timeout=120, cwd=work, env=outside_slurm())
    error = assert_one_line_error(proc)
    assert error == (
        "error: a slurm-allocation profile runs inside its own SLURM job, and this is not one "
        "(no SLURM_JOB_ID/SLURM_PROCID); submit it: workbench cluster submit alloc.yaml -- "
        f"{' '.join(command)} --cluster alloc.yaml"), error
    assert not list(work.glob("logs/*.scheduler.json"))
    if command[0] == "run":
        assert not (work / "runs").exists() or not RunStore(work / "runs").list()


# ---------------------------------------------------------------- on the emulated cluster


@pytest.mark.usefixtures("slurm")
def test_the_rendered_script_runs_a_pipeline_across_two_nodes_into_the_shared_run_store(work, cli, monkeypatch):
    script = cli("cluster", "script", "alloc.yaml", "--", "run", "small.yaml").stdout
    (work / "job.sh").write_text(script)
    (work / "logs").mkdir()
    job = sbatch_wait(work / "job.sh", work)

    out = (work / "logs" / f"{JOB}-{job}.out").read_text()
    records = RunStore(work / "runs").list() if (work / "runs").exists() else []
    assert len(records) == 1, job_logs(work, job)
    [record] = records
    assert f"run {record.id} (small) succeeded" in out
    assert record.status == "succeeded" and record.cluster["workers"] == 2
    hosts = record.cluster["hosts"]
    assert len(hosts) == 2 and set(hosts) <= set(NODES)  # one worker per node
    assert re.fullmatch(r"tcp://10\.77\.0\.1[1-9]:\d+", record.cluster["scheduler"])  # on a node, on the wb0 network
    assert not list((work / "logs").glob("*.scheduler.json"))  # removed when the client closed the cluster
    assert not [line for line in squeue() if line.startswith(f"{job} ")]

    # the same pipeline, seeds and worker count on the local cluster give the same metrics
    monkeypatch.chdir(work)
    local = run_pipeline(load_pipeline(work / "small.yaml"),
                         cluster={"type": "local", "n_workers": 2, "threads_per_worker": 1},
                         runs_dir=work / "local-runs")
    for key in ("roc_auc", "pr_auc", "tn", "fp", "fn", "tp"):
        assert record.metrics[key] == local.record.metrics[key], key


@pytest.mark.usefixtures("slurm")
def test_a_sweep_in_one_allocation_runs_its_worker_counts_on_subsets_of_it(work):
    # asked smallest first: an allocation cannot grow, so the sweep runs its largest count first
    (work / "sweep.yaml").write_text("name: in-one-job\npipeline: small.yaml\naxes:\n  workers: [1, 2]\ntrials: 1\n")
    proc = submit_wait("alloc.yaml", "--wait", "--", "sweep", "sweep.yaml", cwd=work)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert proc.stdout.startswith("submitted job ")
    assert "sweep in-one-job: 2 cells; 2 succeeded and 0 failed in this run" in proc.stdout  # the job's output
    assert re.search(r"job \d+: RUNNING on n\[\d[-,]\d\]", proc.stderr), proc.stderr
    assert re.search(r"job \d+: COMPLETED on n", proc.stderr), proc.stderr

    cells = SweepStore(work / "runs").cells("in-one-job")  # in the order they were recorded
    assert [(c["workers"], c["status"], len(c["hosts"])) for c in cells] == [(2, "succeeded", 2), (1, "succeeded", 1)]
    assert set(cells[0]["hosts"]) <= set(NODES)
    job = proc.stdout.split()[2].rstrip(":")
    err = (work / "logs" / f"{JOB}-{job}.err").read_text()
    assert "cluster: 1 worker(s), 1 thread(s)" in err  # the surplus worker was retired, not a new cluster


@pytest.mark.usefixtures("slurm")
def test_more_workers_than_the_allocation_has_end_the_job_with_one_line(work):
    proc = submit_wait("alloc.yaml", "--wait", "--", "run", "small.yaml", "--workers", "3", cwd=work)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    error = assert_one_line_error(proc)
    assert "failed: 3 workers asked for, but the allocation has 2 (4 tasks on 2 node(s), " \
           "less the scheduler and the client) and cannot grow" in error, error
    assert not (work / "runs").exists() or not RunStore(work / "runs").list()


@pytest.mark.usefixtures("slurm")
def test_in_its_job_but_not_in_an_srun_step_of_three_tasks_the_command_refuses(work):
    command = f"{sys.executable} -m workbench run small.yaml --cluster alloc.yaml"
    (work / "logs").mkdir()
    (work / "bare.sh").write_text(
        f"#!/usr/bin/env bash\n#SBATCH -J {JOB}\n#SBATCH -p debug\n#SBATCH -N 1\n#SBATCH -n 2\n#SBATCH --mem=500M\n"
        f"#SBATCH -t 00:05:00\n#SBATCH -o logs/{JOB}-%j.out\n#SBATCH -e logs/{JOB}-%j.err\n"
        f"{command}\necho batch=$?\nsrun -n 2 {command}\necho step=$?\n")
    job = sbatch_wait(work / "bare.sh", work)
    assert (work / "logs" / f"{JOB}-{job}.out").read_text().split() == ["batch=2", "step=2"], job_logs(work, job)
    errors = [line for line in (work / "logs" / f"{JOB}-{job}.err").read_text().splitlines() if line.startswith("error:")]
    assert errors[0].startswith(f"error: a slurm-allocation profile runs in every task of an srun step, and this is "
                                f"job {job}'s batch script itself"), errors
    too_few = ("error: this srun step has 2 task(s), and one allocation needs at least 3 (the scheduler, the client "
               "and a worker); run the script `workbench cluster script` writes, which starts nodes × workers_per_node "
               "+ 2 tasks")
    assert errors[1:] == [too_few, too_few], errors
    assert not (work / "runs").exists() or not RunStore(work / "runs").list()


@pytest.mark.usefixtures("slurm")
def test_ctrl_c_while_waiting_cancels_the_job(work):
    proc = subprocess.Popen(["workbench", "cluster", "submit", "alloc.yaml", "--wait", "--", "run", "small.yaml"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work)
    try:
        first = proc.stdout.readline()
        assert first.startswith("submitted job "), first
        job = first.split()[2].rstrip(":")
        assert [line for line in squeue() if line.split()[0] == job]
        time.sleep(2)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"job {job}: cancelled" in err, err
    deadline = time.monotonic() + 30  # a cancelled job passes through COMPLETING
    while [line for line in squeue() if line.split()[0] == job]:
        assert time.monotonic() < deadline, squeue()
        time.sleep(0.5)
