"""Scaling a cluster and waiting for its workers: the one path by which a cluster starts its
workers, a sweep resizes it, and training waits for lost workers to come back.

Workers are awaited with the client's (or cluster's) own ``wait_for_workers`` and a local cluster
is resized by its own ``scale``. What the workbench adds is what a batch system needs: its refusal
of a job raised in its own words, its view of the jobs when they do not come, and the replacement
of lost jobs kept at the size the cluster was scaled to.
"""

from __future__ import annotations

import time
from weakref import WeakKeyDictionary

from dask.utils import parse_timedelta

from ..errors import ClusterError
from . import _jobqueue

__all__ = ["scale", "wait_for_workers", "replace_lost_workers"]

BATCH_TIMEOUT = "300s"
LOCAL_TIMEOUT = "120s"
CHECK_EVERY = 3.0  # seconds between looks at the batch system's jobs while waiting

# The replacement policy (an Adaptive between n and n jobs) this module started on each cluster.
_REPLACING: WeakKeyDictionary = WeakKeyDictionary()


def scale(target, workers: int, *, timeout: str | float | None = None) -> None:
    """Scale the cluster behind ``target`` (a ``distributed.Client`` or a cluster) to exactly
    ``workers`` workers and wait until exactly that many are connected (scaling down waits for the
    retired workers to leave).

    A batch-system cluster submits or cancels jobs, and the batch system's refusal is raised in one
    line; if it replaces lost workers (:func:`replace_lost_workers`) it keeps doing so at the new
    size. ``timeout`` defaults to 300 s for batch systems (pass the profile's ``wait_timeout``) and
    120 s for local clusters. A client on a scheduler started elsewhere cannot be scaled: it must
    already have ``workers`` workers.
    """
    if workers < 1:
        raise ClusterError(f"cannot scale to {workers} workers", "ask for 1 or more workers")
    client, running = _parts(target)
    if running is None:
        have = _count(client, None)
        if have != workers:
            raise ClusterError(
                f"the cluster at {client.scheduler.address} has {have} workers and cannot be scaled from here",
                f"start it with {workers} workers, or let the workbench start the cluster (--cluster PROFILE)",
            )
        return
    batch = _jobqueue.is_jobqueue(running)
    if batch:
        processes = _jobqueue.worker_processes(running)
        if workers % processes:
            raise ClusterError(f"{workers} workers is not a whole number of jobs of {processes} worker processes",
                               "ask for a multiple of the profile's processes")
    replacing = _REPLACING.pop(running, None)
    if replacing is not None:
        replacing.stop()  # it would scale back to the old size; restarted at the new one below
    _resize(running, workers, batch)
    wait_for_workers(target, workers, timeout, exactly=True)
    if replacing is not None:
        replace_lost_workers(running, workers)


def wait_for_workers(target, n: int, timeout: str | float | None = None, *, exactly: bool = False,
                     minimum: int | None = None) -> int:
    """Wait until ``n`` workers are connected to the cluster of ``target`` (a ``distributed.Client``
    or a cluster) and return how many are.

    Arrivals are awaited with ``target.wait_for_workers``; with ``exactly``, workers beyond ``n``
    (retired by a scale-down) are awaited to leave. A batch system that can be asked cheaply
    (SLURM's ``squeue``) is asked about the jobs every few seconds, so jobs that ended without a
    worker fail the wait at once. If ``timeout`` (default 300 s for batch systems, 120 s otherwise)
    passes first, a :class:`ClusterError` says how many came and what the batch system says about
    the jobs; with ``minimum``, at least that many workers are enough to go on with instead.
    """
    client, running = _parts(target)
    batch = running is not None and _jobqueue.is_jobqueue(running)
    seconds = float(parse_timedelta(timeout or (BATCH_TIMEOUT if batch else LOCAL_TIMEOUT)))
    started = time.monotonic()
    deadline = started + seconds
    while True:
        left = deadline - time.monotonic()
        try:
            target.wait_for_workers(n, timeout=max(0.1, min(CHECK_EVERY, left)))
        except TimeoutError:
            pass
        else:
            if not exactly:
                return _count(client, running)
            while _count(client, running) > n and time.monotonic() < deadline:
                time.sleep(0.1)
            have = _count(client, running)
            if have == n:
                return have
        have = _count(client, running)
        waiting = time.monotonic() < deadline
        look = batch and (not waiting or _jobqueue.watches_jobs(running))
        state = _jobqueue.job_states(running) if look else ""
        if waiting and state != _jobqueue.ENDED:
            continue
        if minimum is not None and have >= minimum:
            return have
        raise ClusterError(
            f"{have} of {n} workers connected after {time.monotonic() - started:.0f}s"
            + (f"; the batch system says: {state}" if state else ""),
            "read the worker job logs (the profile's log_directory), ask for fewer resources, or raise wait_timeout"
            if batch else "read the worker logs, ask for fewer workers, or wait longer",
        )


def replace_lost_workers(running, workers: int) -> None:
    """Keep a batch-system cluster at ``workers``: a worker whose job dies (walltime, node failure)
    is replaced by a fresh job. :func:`scale` keeps this at the new size."""
    jobs = workers // _jobqueue.worker_processes(running)
    _REPLACING[running] = running.adapt(minimum_jobs=jobs, maximum_jobs=jobs, interval="2s", wait_count=3)


def _resize(running, workers: int, batch: bool) -> None:
    """Bring the cluster to ``workers``: through its own ``scale``, except for a batch system.

    A dask-jobqueue cluster's ``scale`` submits the jobs later on the event loop, where a refusal
    becomes a logged traceback and a wait that times out. So for a batch system the jobs are set in
    the cluster's spec here (``worker_spec`` and ``new_worker_spec``, as ``scale`` sets them) and the
    cluster is awaited, which submits or cancels them and raises the batch system's refusal.
    """
    if not batch:
        running.scale(workers)
        return
    jobs = workers // _jobqueue.worker_processes(running)

    async def resized():
        spec = running.worker_spec
        while len(spec) > jobs:
            spec.popitem()
        while len(spec) < jobs:
            spec.update(running.new_worker_spec())
        await running

    try:
        running.sync(resized)
    except RuntimeError as exc:  # dask-jobqueue's "Command exited with non-zero exit code"
        raise _jobqueue.refused(running, exc) from None


def _parts(target):
    """(client, cluster) of a client or a cluster; the cluster is None for a client on a scheduler
    started elsewhere, the client None for a cluster."""
    from distributed import Client

    if isinstance(target, Client):
        return target, target.cluster
    return None, target


def _count(client, running) -> int:
    if client is not None:
        return len(client.scheduler_info(n_workers=-1)["workers"])
    return len(running.scheduler_info.get("workers", {}))
