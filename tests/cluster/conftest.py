"""A real batch system for the cluster tests: the single-node SLURM of clusters/dev/slurm-up.sh.

Tests that need it fail (never skip) when it is not up: tests/run starts it as root, so CI can
never pass without having run them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

INTERFACE = "wb0"  # the emulated cluster's network, on the host and on every node
NODES = ("n1", "n2", "n3")


def slurm_problem() -> str | None:
    if not shutil.which("sinfo"):
        return "no SLURM client here (run clusters/dev/slurm-up.sh as root)"
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    if out.returncode != 0 or not any(s.strip() in ("idle", "mixed", "allocated") for s in out.stdout.split()):
        return f"SLURM is not up ({(out.stderr or out.stdout).strip()[:120]}); run clusters/dev/slurm-up.sh as root"
    return None


@pytest.fixture(scope="session")
def slurm():
    problem = slurm_problem()
    if problem:
        pytest.fail(problem)
    yield
    assert wait_queue_empty(), f"jobs left in the queue after the tests: {squeue()}"


def squeue(name: str | None = None) -> list[str]:
    """``JOBID NAME STATE NODE`` of the queue's jobs (only those called ``name``, if given)."""
    command = ["squeue", "-h", "-o", "%i %j %T %N"] + (["-n", name] if name else [])
    out = subprocess.run(command, capture_output=True, text=True, timeout=20)
    return [line for line in out.stdout.splitlines() if line.strip()]


def job_pids(job_id: str) -> list[int]:
    """The processes of a batch job, wherever its node is: those whose environment names the job.

    (``scontrol listpids`` only sees jobs of the node it runs on, and the nodes are namespaces.)
    """
    marker = f"SLURM_JOB_ID={job_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            pids.append(int(entry.name))
    return pids


def node_of(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%N"], capture_output=True, text=True, timeout=20)
    return out.stdout.strip()


def wait_queue_empty(timeout: float = 30, name: str | None = None) -> bool:
    """Cancelled jobs pass through COMPLETING for a moment before they leave the queue (only the
    jobs called ``name``, if given: other sessions may share the queue)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not squeue(name):
            return True
        time.sleep(0.3)
    return False


def write_profile(directory: Path, name: str = "slurm.yaml", **overrides) -> Path:
    """A SLURM profile for the dev cluster, everything it writes kept under ``directory``."""
    keys = {
        "type": "slurm", "queue": "debug", "cores": 1, "processes": 1, "memory": "1500MB", "walltime": "00:15:00",
        "log_directory": str(directory / "logs"), "local_directory": str(directory / "scratch"),
        "shared_temp_directory": str(directory / "tls"), "wait_timeout": "120s", "job_name": "wb-test",
        "interface": INTERFACE,
        **overrides,
    }
    if "workers_per_node" in overrides and "processes" not in overrides:
        del keys["processes"]  # one job per node runs workers_per_node worker processes
    import yaml

    path = directory / name
    path.write_text(yaml.safe_dump(keys, sort_keys=False))
    return path


@pytest.fixture
def slurm_profile(slurm, tmp_path) -> Path:
    return write_profile(tmp_path)
