"""dask-jobqueue clusters: creating one from a profile, and what the batch system says about its jobs.

Jobs are submitted and cancelled only by the cluster's own ``scale`` (see :mod:`.scaling`); this
module reads the outcome: the job ids, the batch system's view of them, and its refusal.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ..errors import ClusterError
from .profiles import CLUSTER_TYPES, JobqueueProfile

ENDED = "no such jobs (they ended)"


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


def is_jobqueue(running) -> bool:
    """Whether ``running`` is a dask-jobqueue cluster (its workers are batch jobs)."""
    return getattr(running, "job_cls", None) is not None


def kind(running) -> str:
    """The batch system of a dask-jobqueue cluster: ``slurm``, ``pbs``, ``sge``, ``lsf``..."""
    return str(getattr(running.job_cls, "config_name", None) or "batch")


def worker_processes(running) -> int:
    """Worker processes per job: the cluster's worker spec groups them (one group member each)."""
    return len(running.new_spec.get("group") or [None])


def job_ids(running) -> list[str]:
    """Batch job IDs of the cluster's workers (jobs the batch system accepted)."""
    return [str(job.job_id) for job in running.workers.values() if getattr(job, "job_id", None)]


def watches_jobs(running) -> bool:
    """Whether the batch system is asked about the jobs while waiting for them, not only at the end."""
    profile = _profile_class(running)
    return profile is not None and profile.watch_jobs


def job_states(running) -> str:
    """The batch system's one-line view of the cluster's jobs (state and reason), or ``""`` if unavailable."""
    ids = job_ids(running)
    profile = _profile_class(running)
    command = profile.status_command(ids) if ids and profile is not None else None
    if not command or not shutil.which(command[0]):
        return ""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = [" ".join(line.split()) for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    return "; ".join(lines[:4]) or ENDED


def _profile_class(running) -> type[JobqueueProfile] | None:
    profile = CLUSTER_TYPES.get(kind(running))
    return profile if isinstance(profile, type) and issubclass(profile, JobqueueProfile) else None


def refused(running, exc: BaseException) -> ClusterError:
    """The batch system's refusal of a job, in its own words, with the refused jobs dropped from the
    cluster (they never started, so closing the cluster has nothing to cancel for them)."""
    from distributed.core import Status

    for name, job in list(running.workers.items()):
        if not getattr(job, "job_id", None):
            job.status = Status.failed
            del running.workers[name]
            running.worker_spec.pop(name, None)
    command = getattr(running.job_cls, "submit_command", None) or "the batch system"
    return ClusterError(
        f"{command} refused the worker job: {_own_words(exc)}",
        f"fix the profile ({kind(running)}: queue, account, memory, walltime) and check with "
        "`workbench cluster script PROFILE`",
    )


def _own_words(exc: BaseException) -> str:
    """The batch system's stderr from dask-jobqueue's "Command exited with non-zero exit code" error."""
    text = str(exc)
    if "stderr:" in text:
        text = text.split("stderr:", 1)[1]
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    unique = list(dict.fromkeys(lines))
    return " / ".join(unique) or "no message"
