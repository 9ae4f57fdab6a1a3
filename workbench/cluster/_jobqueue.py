"""Starting dask-jobqueue clusters: submit, surface the batch system's refusals, wait, heal."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from dask.utils import parse_timedelta

from ..errors import ClusterError
from .profiles import JobqueueProfile

_STATUS = {
    "slurm": lambda ids: ["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T %R"],
    "pbs": lambda ids: ["qstat", *ids],
    "sge": lambda ids: ["qstat"],
    "lsf": lambda ids: ["bjobs", "-w", *ids],
}


def create(profile: JobqueueProfile, workers: int | None = None):
    """The dask-jobqueue cluster of ``profile`` with its scheduler running and no job submitted."""
    kwargs = profile.cluster_kwargs(workers)
    for key in ("shared_temp_directory", "log_directory"):
        if kwargs.get(key):
            os.makedirs(kwargs[key], mode=0o700, exist_ok=True)
    from distributed.utils import import_term

    try:
        cls = import_term(profile.cluster_class)
    except ImportError as exc:
        raise ClusterError(f"cannot load {profile.cluster_class}: {exc}", "pip install dask-jobqueue") from None
    try:
        return cls(**kwargs)
    except ImportError as exc:  # security=True without `cryptography`
        raise ClusterError(f"TLS credentials cannot be created: {exc}".replace("\n", " "),
                           "pip install cryptography, or set security: false in the profile") from None
    except (ValueError, TypeError, OSError) as exc:
        message = " ".join(str(exc).split())
        raise ClusterError(f"the {profile.type} cluster cannot be set up: {message}", "fix the profile's keys") from None


def start(profile: JobqueueProfile, workers: int | None = None):
    """Create the cluster, submit one job per ``processes`` workers, and wait for every worker.

    The batch system's refusal (unknown partition, too much memory, no account) is raised as a
    :class:`ClusterError` carrying its own message. Once the workers are up the cluster adapts
    between ``n_workers`` and ``n_workers``: a worker whose job dies is replaced by a new job.
    Whatever happens, a cluster that does not come up is closed, which cancels its jobs.
    """
    settings = profile.settings(workers)
    n = int(settings["n_workers"])
    timeout = parse_timedelta(settings.get("wait_timeout") or "300s")
    cluster = create(profile, workers)
    try:
        processes = max(1, int(cluster._dummy_job.worker_processes or 1))  # as dask-jobqueue resolved it
        jobs = -(-n // processes)
        # What SpecCluster.scale does, but awaited here rather than scheduled on the event loop,
        # so that the batch system's refusal is raised to the caller instead of being logged.
        while len(cluster.worker_spec) < jobs:
            cluster.worker_spec.update(cluster.new_worker_spec())
        try:
            cluster.sync(cluster._correct_state)
        except RuntimeError as exc:
            _forget_unsubmitted(cluster)
            raise ClusterError(
                f"{_submit_command(cluster)} refused the worker job: {_scheduler_message(exc)}",
                f"fix the profile ({profile.type}: queue, account, memory, walltime) and check with "
                "`workbench cluster script PROFILE`",
            ) from None
        _wait_for_workers(cluster, profile.type, n, timeout)
        if settings.get("replace_lost_workers", True):
            cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs, interval="2s", wait_count=3)
        return cluster
    except BaseException:
        cluster.close()
        raise


def _forget_unsubmitted(cluster) -> None:
    """Drop jobs the batch system refused, which SpecCluster.close() cannot close (they never started)."""
    from distributed.core import Status

    for name, job in list(cluster.workers.items()):
        if not getattr(job, "job_id", None):
            del cluster.workers[name]
            cluster.worker_spec.pop(name, None)
    for job in cluster._created:
        if not getattr(job, "job_id", None):
            job.status = Status.failed


def _wait_for_workers(cluster, kind: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 3
    while True:
        seen = len(cluster.scheduler_info.get("workers", {}))
        if seen >= n:
            return
        ids = job_ids(cluster)
        ended = False
        if kind == "slurm" and time.monotonic() > next_check:
            next_check = time.monotonic() + 3
            ended = bool(ids) and job_states(kind, ids) == "no such jobs (they ended)"
        if time.monotonic() > deadline or ended:
            state = job_states(kind, ids)
            raise ClusterError(
                f"{seen} of {n} workers connected after {timeout - (deadline - time.monotonic()):.0f}s"
                + (f"; the batch system says: {state}" if state else ""),
                "read the worker job logs (the profile's log_directory), ask for fewer resources, "
                "or raise wait_timeout",
            )
        time.sleep(0.2)


def job_ids(cluster) -> list[str]:
    """Batch job IDs of the cluster's workers."""
    return [str(job.job_id) for job in cluster.workers.values() if getattr(job, "job_id", None)]


def job_states(kind: str, ids: list[str]) -> str:
    """The batch system's one-line view of ``ids`` (state and reason), or ``""`` if unavailable."""
    if not ids or kind not in _STATUS:
        return ""
    command = _STATUS[kind](ids)
    if not shutil.which(command[0]):
        return ""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = [" ".join(line.split()) for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    return "; ".join(lines[:4]) or "no such jobs (they ended)"


def _submit_command(cluster) -> str:
    return str(getattr(cluster.job_cls, "submit_command", None) or "the batch system")


def _scheduler_message(exc: BaseException) -> str:
    """The batch system's own words from dask-jobqueue's "Command exited with non-zero exit code" error."""
    text = str(exc)
    if "stderr:" in text:
        text = text.split("stderr:", 1)[1]
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    unique = list(dict.fromkeys(lines))
    return " / ".join(unique) or "no message"
